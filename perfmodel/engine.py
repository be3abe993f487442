"""vLLM engine settings that change performance, with the defaults of the vLLM version being modelled."""

from __future__ import annotations

from dataclasses import dataclass

from perfmodel.errors import UserError

GIB = 1024**3


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
    vllm_version: str = "0.26"  # the release whose defaults and engine are modelled
    engine_generation: str = "v1"  # "v1" (vLLM >= 0.8 on Ampere+) or "v0" (0.7, and Volta on later releases)
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
        if self.engine_generation not in ("v0", "v1"):
            raise UserError(f"engine generation must be v0 or v1, got {self.engine_generation!r}")
        if (self.engine_generation == "v0" and not self.enable_chunked_prefill and self.max_model_len is not None
                and self.max_num_batched_tokens < self.max_model_len):
            raise UserError(f"--max-num-batched-tokens {self.max_num_batched_tokens} is below --max-model-len "
                            f"{self.max_model_len}; vLLM {self.vllm_version} refuses that with chunked prefill off "
                            "(raise it or lower --max-model-len)")

    @property
    def async_scheduling(self) -> bool:
        """Whether the engine schedules the next step while the current one runs. vLLM 0.26 turns it on unless
        an option is incompatible (vllm/config/vllm.py VllmConfig.__post_init__: async_scheduling None -> True;
        none of the incompatible options is modelled here), and its logs say "Asynchronous scheduling is
        enabled" (data/h200-sweep2 logs). Earlier V1 releases were not read: off."""
        return self.engine_generation == "v1" and parse_version(self.vllm_version) >= (0, 26)

    def padded_decode_batch(self, num_seqs: int) -> int:
        """The batch a V0 decode step runs as under CUDA graphs: the next captured size (itself when eager,
        V1, or past the largest size)."""
        if self.enforce_eager or self.engine_generation != "v0":
            return num_seqs
        for size in self.cuda_graph_batch_sizes:
            if size >= num_seqs:
                return size
        return num_seqs


# vLLM's default --gpu-memory-utilization by release: 0.9 for years (0.7 included); vLLM 0.26 logs "Desired GPU
# memory utilization is (0.92, ...)" (data/h200/logs.tar.gz). When it changed in between is not known here.
_GPU_MEMORY_UTILIZATION = ((0, 7, 0.90), (0, 26, 0.92))
DEFAULT_VLLM_VERSION = "0.26"


def parse_version(version: str) -> tuple[int, int]:
    """'0.26.0' -> (0, 26); one clear line when it is not a version."""
    try:
        major, minor = (int(part) for part in str(version).split(".")[:2])
    except ValueError:
        raise UserError(f"--vllm-version must look like 0.26 or 0.7.0, got {version!r}") from None
    return major, minor


def default_gpu_memory_utilization(vllm_version: str = DEFAULT_VLLM_VERSION) -> float:
    """The default of the latest known release at or before ``vllm_version`` (0.9 before 0.26)."""
    release = parse_version(vllm_version)
    known = [value for major, minor, value in _GPU_MEMORY_UTILIZATION if (major, minor) <= release]
    return known[-1] if known else _GPU_MEMORY_UTILIZATION[0][2]


def default_engine_args(gpu_memory_bytes: float, *, entry_point: str = "offline",
                        vllm_version: str = DEFAULT_VLLM_VERSION, model_max_len: int | None = None,
                        compute_capability: float | None = None, **overrides: object) -> EngineArgs:
    """vLLM V1's defaults (``EngineArgs._set_default_args`` of 0.8 and later, read for 0.26), by GPU size.

    On GPUs of at least 70 GiB the offline ``LLM`` class uses a token budget of 16384 and the server 8192;
    smaller GPUs get 8192 and 2048. ``max_num_seqs`` is 1024 on the large GPUs and 256 otherwise (vLLM 0.26
    on an H200 resolved exactly these: data/h200). Overrides that are None are ignored, so CLI flags can be
    passed straight through.
    """
    if entry_point not in ("offline", "serve"):
        raise UserError(f"entry point must be 'offline' or 'serve', got {entry_point!r}")
    from perfmodel.vllm_releases import engine_generation

    if engine_generation(vllm_version, compute_capability=compute_capability) == "v0":
        return _v0_engine_args(gpu_memory_bytes, entry_point, vllm_version, model_max_len, compute_capability,
                               overrides)
    large = gpu_memory_bytes >= 70 * GIB
    budget = {("offline", True): 16384, ("serve", True): 8192,
              ("offline", False): 8192, ("serve", False): 2048}[(entry_point, large)]
    values: dict[str, object] = {"max_num_seqs": 1024 if large else 256, "max_num_batched_tokens": budget,
                                 "gpu_memory_utilization": default_gpu_memory_utilization(vllm_version)}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return EngineArgs(**values, vllm_version=vllm_version)  # type: ignore[arg-type]


def _v0_engine_args(gpu_memory_bytes: float, entry_point: str, vllm_version: str, model_max_len: int | None,
                    compute_capability: float | None, overrides: dict) -> EngineArgs:
    """vLLM's V0 defaults (perfmodel.vllm_releases cites each): max_num_seqs 256; chunked prefill only past a
    32768-token context, the token budget then 2048, else max(max_model_len, 2048); utilisation 0.90; CUDA
    graphs for decode batches up to the first captured size >= max_num_seqs."""
    from perfmodel.vllm_releases import _v0_graph_sizes, release_defaults

    given = {k: v for k, v in overrides.items() if v is not None}
    max_model_len = int(given.get("max_model_len") or model_max_len or 2048)
    release = release_defaults(vllm_version, gpu_memory_bytes=gpu_memory_bytes, entry_point=entry_point,
                               max_model_len=max_model_len, compute_capability=compute_capability)
    values: dict[str, object] = {
        "max_num_seqs": release.max_num_seqs, "max_num_batched_tokens": release.max_num_batched_tokens,
        "gpu_memory_utilization": release.gpu_memory_utilization, "block_size": release.block_size,
        "enable_chunked_prefill": release.enable_chunked_prefill}
    values.update(given)
    graphs = _v0_graph_sizes(int(values["max_num_seqs"]))  # type: ignore[arg-type]
    return EngineArgs(**values, vllm_version=vllm_version, engine_generation="v0",  # type: ignore[arg-type]
                      cuda_graph_batch_sizes=graphs)
