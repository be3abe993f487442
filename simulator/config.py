"""Engine configuration: the scheduler limits of one replica (vLLM's names where vLLM has one)."""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULER_GENERATIONS = ("v1", "v0")
"""Engine generations of continuous batching the simulator models (`simulator.schedulers.SCHEDULERS`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Limits of one engine replica. No defaults are guessed for the limits: vLLM's depend on the GPU and the
    mode (offline `LLM` vs `vllm serve`), so the caller passes what its vLLM would use.

    max_num_seqs: most sequences in the running set (`--max-num-seqs`).
    max_num_batched_tokens: token budget of one step, prefill chunks + decodes (`--max-num-batched-tokens`).
    num_kv_blocks: KV-cache blocks of the replica (vLLM's `num_gpu_blocks`).
    block_size: tokens per KV block (`--block-size`, 16 on GPUs).
    enable_chunked_prefill: split a prompt across steps at the token budget (vLLM V1 default True). When False
        a prompt must fit the remaining budget whole or waits, and later shorter ones may go first (as vLLM).
    batching: "continuous" (vLLM V1) or "static" (fixed batches padded to the longest prompt and output).
    static_batch_size: requests per static batch (None = max_num_seqs); only for batching="static".
    long_prefill_token_threshold: cap on one prompt's chunk per step, 0 = no cap (vLLM's option of this name).
    scheduler: engine generation of the continuous scheduler: "v1" (vLLM >= 0.8, `simulator.scheduler`) or
        "v0" (vLLM <= 0.7, `simulator.scheduler_v0`: prefill-only or decode-only steps, a scheduler per
        pipeline stage). "v0" models V0 with chunked prefill off only (its default at max_model_len <= 32768).
    enable_prefix_caching: reuse the KV blocks of the requests' shared prefix once computed
        (`--enable-prefix-caching`; see `simulator.scheduler`). Continuous batching with scheduler "v1" only.
    async_scheduling: the engine schedules step k+1 while step k runs (vLLM V1's `--async-scheduling`), so a
        request that arrives during step k joins step k+2 at the earliest, or the next step when the step in
        flight has nothing else to run (`simulator.engine.Replica`). Continuous batching with scheduler "v1";
        with pipeline stages the pipelined loop already schedules ahead and adds no lag.
    async_output_processing: vLLM V0's asynchronous output processing: a step's sampled tokens become request
        outputs only while the engine's next step runs (vLLM 0.7.0 `LLMEngine.step` queues them in the context's
        `output_queue` for the next step's `async_callback`, which `ModelRunner.execute_model` calls once that
        step's forward is launched), so every token, the first and the last included, reaches the client after
        the next step's CPU part (`StepCost.cpu_time_s`), and a request is handed back then; when only finished
        sequences are left the engine still runs that step for them (its "extra decode run"). One stage,
        continuous batching (`simulator.engine.Replica._lag`); inter-token gaps are recorded as sampled.
    idle_stop_s, idle_restart_s: vLLM V0's distributed executors stop their workers' execution loop whenever the
        engine has no unfinished request, and start it again with the next step (vLLM 0.7.0
        `LLMEngine.step` / `AsyncLLMEngine.run_engine_loop` -> `stop_remote_worker_execution_loop(_async)`;
        `DistributedExecutorBase.execute_model(_async)` -> `start_worker_execution_loop` on every non-driver
        worker). The engine takes no request for `idle_stop_s` after its last step, and the first step after a
        stop (the very first step included) lasts `idle_restart_s` longer. 0: no such workers (one GPU, V1). With
        one stage (either scheduler: V0 with chunked prefill runs the "v1" one) or V0's virtual engines.
    """

    max_num_seqs: int
    max_num_batched_tokens: int
    num_kv_blocks: int
    block_size: int = 16
    enable_chunked_prefill: bool = True
    batching: str = "continuous"
    static_batch_size: int | None = None
    long_prefill_token_threshold: int = 0
    scheduler: str = "v1"
    enable_prefix_caching: bool = False
    async_scheduling: bool = False
    async_output_processing: bool = False
    idle_stop_s: float = 0.0
    idle_restart_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "num_kv_blocks", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"EngineConfig.{name} must be a positive integer, got {value!r}")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= max_num_seqs "
                             f"({self.max_num_seqs}), as vLLM requires; raise --max-num-batched-tokens")
        if self.batching not in ("continuous", "static"):
            raise ValueError(f"EngineConfig.batching must be 'continuous' or 'static', got {self.batching!r}")
        if self.static_batch_size is not None:
            if self.batching != "static":
                raise ValueError("static_batch_size is only used with batching='static'")
            if not isinstance(self.static_batch_size, int) or self.static_batch_size < 1:
                raise ValueError(f"static_batch_size must be a positive integer, got {self.static_batch_size!r}")
            if self.static_batch_size > self.max_num_seqs:
                raise ValueError(f"static_batch_size ({self.static_batch_size}) must be <= max_num_seqs "
                                 f"({self.max_num_seqs})")
        if not isinstance(self.long_prefill_token_threshold, int) or self.long_prefill_token_threshold < 0:
            raise ValueError("long_prefill_token_threshold must be an integer >= 0")
        if self.scheduler not in SCHEDULER_GENERATIONS:
            raise ValueError(f"EngineConfig.scheduler must be one of {', '.join(map(repr, SCHEDULER_GENERATIONS))}, "
                             f"got {self.scheduler!r}")
        if self.enable_prefix_caching and (self.batching != "continuous" or self.scheduler != "v1"):
            raise ValueError("prefix caching is modelled for continuous batching with the V1 scheduler only "
                             "(vLLM >= 0.8); turn it off for static batching or V0")
        if self.async_scheduling and (self.batching != "continuous" or self.scheduler != "v1"):
            raise ValueError("async_scheduling is modelled for continuous batching with the V1 scheduler only")
        if self.async_output_processing and (self.batching != "continuous" or self.async_scheduling):
            raise ValueError("async_output_processing (vLLM V0) is modelled for continuous batching without "
                             "async_scheduling (vLLM V1) only")
        for name in ("idle_stop_s", "idle_restart_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value < float("inf")):
                raise ValueError(f"EngineConfig.{name} must be a finite number of seconds >= 0, got {value!r}")
        if self.stops_worker_loops and (self.batching != "continuous" or self.async_scheduling):
            raise ValueError("idle_stop_s / idle_restart_s model vLLM V0's worker loops: continuous batching without "
                             "async_scheduling (vLLM V1) only")
        if self.scheduler == "v0":
            self._check_v0()

    def _check_v0(self) -> None:
        """The options the V0 model covers (see simulator.scheduler_v0)."""
        if self.batching != "continuous":
            raise ValueError("scheduler='v0' is a continuous-batching scheduler; use batching='continuous'")
        if self.enable_chunked_prefill:
            raise ValueError("scheduler='v0' models vLLM 0.7's V0 with chunked prefill off only; pass "
                             "enable_chunked_prefill=False (V0's default for max_model_len <= 32768)")
        if self.long_prefill_token_threshold:
            raise ValueError("long_prefill_token_threshold is a V1 option; leave it 0 with scheduler='v0'")

    @property
    def stops_worker_loops(self) -> bool:
        """Whether the engine stops and restarts V0's workers' loops (`idle_stop_s`, `idle_restart_s`)."""
        return bool(self.idle_stop_s or self.idle_restart_s)

    @property
    def kv_capacity_tokens(self) -> int:
        return self.num_kv_blocks * self.block_size

    @property
    def effective_static_batch_size(self) -> int:
        return self.static_batch_size if self.static_batch_size is not None else self.max_num_seqs
