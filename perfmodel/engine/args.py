"""vLLM engine settings that change performance, resolved with the defaults of the vLLM release being modelled
(``perfmodel.engine.releases`` holds every release's defaults and their sources)."""

from __future__ import annotations

from dataclasses import dataclass

from perfmodel.errors import UserError
from perfmodel.engine.releases import EngineGeneration, release_defaults

DEFAULT_VLLM_VERSION = "0.26"  # the release modelled when neither the user nor the cluster names one


@dataclass(frozen=True, kw_only=True)
class EngineArgs:
    """The engine arguments perfmodel models, named as vLLM names them (``--max-num-seqs`` ...)."""

    max_num_seqs: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float = 0.92
    max_model_len: int | None = None  # None: the model's max_position_embeddings
    block_size: int = 16
    enforce_eager: bool = False
    enable_chunked_prefill: bool = True
    enable_prefix_caching: bool = False  # the simulator reuses a shared prompt prefix's KV (simulator.scheduler)
    vllm_version: str = DEFAULT_VLLM_VERSION  # the release whose defaults and engine are modelled
    engine_generation: EngineGeneration = EngineGeneration.V1  # V1: vLLM >= 0.8 on Ampere+; V0: 0.7, Volta later
    cuda_graph_batch_sizes: tuple[int, ...] = ()  # V0: decode batch sizes captured (a batch runs padded up)

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise UserError(f"--max-num-seqs must be at least 1, got {self.max_num_seqs}")
        if self.max_num_batched_tokens < 1:
            raise UserError(f"--max-num-batched-tokens must be at least 1, got {self.max_num_batched_tokens}")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise UserError(f"--gpu-memory-utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise UserError(f"--max-model-len must be positive, got {self.max_model_len}")
        if self.block_size not in (8, 16, 32, 64, 128):
            raise UserError(f"--block-size must be one of 8, 16, 32, 64, 128, got {self.block_size}")
        try:
            object.__setattr__(self, "engine_generation", EngineGeneration(self.engine_generation))
        except ValueError:
            raise UserError(f"engine generation must be v0 or v1, got {self.engine_generation!r}") from None
        if (self.engine_generation is EngineGeneration.V0 and not self.enable_chunked_prefill
                and self.max_model_len is not None and self.max_num_batched_tokens < self.max_model_len):
            raise UserError(f"--max-num-batched-tokens {self.max_num_batched_tokens} is below --max-model-len "
                            f"{self.max_model_len}; vLLM {self.vllm_version} refuses that with chunked prefill off "
                            "(raise it or lower --max-model-len)")

    @property
    def async_output_processing(self) -> bool:
        """Whether a V0 engine turns a step's tokens into outputs only during its next step (vLLM 0.7.0:
        EngineArgs.disable_async_output_proc False by default; ModelConfig.verify_async_output_proc keeps it on a
        CUDA GPU unless enforce_eager, CudaPlatform.is_async_output_supported, and turns it off with pipeline
        parallelism, which `perfmodel.scenario.Scenario.engine_config` checks per layout)."""
        return self.engine_generation is EngineGeneration.V0 and not self.enforce_eager

    @property
    def async_scheduling(self) -> bool:
        """Whether the engine schedules the next step while the current one runs. vLLM 0.26 turns it on unless
        an option is incompatible (vllm/config/vllm.py VllmConfig.__post_init__: async_scheduling None -> True;
        none of the incompatible options is modelled here), and its logs say "Asynchronous scheduling is
        enabled" (data/h200-sweep2 logs). Earlier V1 releases were not read: off."""
        from perfmodel.engine.releases import parse_release

        return self.engine_generation is EngineGeneration.V1 and parse_release(self.vllm_version) >= (0, 26, 0)


def default_engine_args(gpu_memory_bytes: float, *, entry_point: str = "offline",
                        vllm_version: str = DEFAULT_VLLM_VERSION, model_max_len: int | None = None,
                        gpu_name: str | None = None, compute_capability: float | None = None,
                        **overrides: object) -> EngineArgs:
    """The engine ``vllm_version`` runs with these overrides: the release's defaults for this GPU and entry
    point (``perfmodel.engine.releases.release_defaults``; ``gpu_name`` is the CUDA device name, which vLLM 0.8.0
    and 0.10.0 test), the given values on top, and what depends on them derived after (V0's CUDA-graph
    sizes from ``max_num_seqs``), as ``EngineArgs.create_engine_config`` does.
    Overrides that are None are ignored, so CLI flags can be passed straight through.
    """
    from perfmodel.engine.releases import _v0_graph_sizes

    given = {k: v for k, v in overrides.items() if v is not None}
    max_model_len = int(given.get("max_model_len") or model_max_len or 2048)  # type: ignore[call-overload]
    release = release_defaults(vllm_version, gpu_memory_bytes=gpu_memory_bytes, entry_point=entry_point,
                               max_model_len=max_model_len, gpu_name=gpu_name, compute_capability=compute_capability)
    values: dict[str, object] = {
        "max_num_seqs": release.max_num_seqs, "max_num_batched_tokens": release.max_num_batched_tokens,
        "gpu_memory_utilization": release.gpu_memory_utilization, "block_size": release.block_size,
        "enable_chunked_prefill": release.enable_chunked_prefill}
    values.update(given)
    graphs: tuple[int, ...] = ()  # V1: not listed (its piecewise graphs are not modelled per size)
    if release.engine_generation is EngineGeneration.V0:
        graphs = _v0_graph_sizes(int(values["max_num_seqs"]))  # type: ignore[call-overload]
    return EngineArgs(**values, vllm_version=vllm_version,  # type: ignore[arg-type]
                      engine_generation=release.engine_generation, cuda_graph_batch_sizes=graphs)
