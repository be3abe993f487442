"""Time, on this CPU, the Ray actor call that vLLM 0.7.0 makes on every engine step of a pipeline-parallel V0
engine to the last pipeline stage: the CPU anchor of the V100 profile's ``pp_step_overhead_s``.

What vLLM 0.7.0 does (PP > 1 needs ``AsyncLLMEngine``: vllm/engine/llm_engine.py ``LLMEngine.step`` refuses it
and vllm/engine/multiprocessing/client.py ``MQLLMEngineClient.is_unsupported_config`` keeps ``vllm serve`` off
the multiprocessing engine). vllm/engine/async_llm_engine.py ``_AsyncLLMEngine.step_async`` builds an
``ExecuteModelRequest`` (vllm/sequence.py) from ``Scheduler.schedule()``'s metadata list; ``async_callback`` stays
None because ``ModelConfig.verify_async_output_proc`` (vllm/config.py) turns async output processing off under
PP, and ``SchedulerConfig.send_delta_data`` is off, so every step sends full ``SequenceGroupMetadata`` (token
arrays included). vllm/executor/ray_distributed_executor.py ``RayDistributedExecutor._driver_execute_model_async``
(``VLLM_USE_RAY_SPMD_WORKER`` off, the default) wraps each stage's driver call in an asyncio task running
``_run_task_with_lock`` (vllm/utils.py) under that stage's ``asyncio.Lock`` and gathers them; for stage 1 the
call is ``driver_worker.execute_method.remote("execute_model", execute_model_req)`` on a ``RayWorkerWrapper``
actor created with ``num_cpus=0`` (its ``_init_workers_ray``), and the awaited value is the last stage's list of
one ``SamplerOutput`` (vllm/model_executor/layers/sampler.py; no GPU tensors unless spec decode asks for them;
the sampled token's ``Logprob(inf)`` when no logprobs are requested, ``_get_sampled_logprob_if_needed``).

What is timed: the same asyncio task, with vLLM's own ``_run_task_with_lock`` and a fresh stage lock, around
``execute_method.remote`` of a ``num_cpus=0`` actor whose ``execute_method`` returns a prepared SamplerOutput list
and does nothing else; one wall time per call from ``create_task`` to ``gather`` returning. That covers task
submission, the request's serialisation (Ray's pickle; above Ray's inline limit it goes through the object
store), the actor's deserialisation, the result's serialisation and transfer back, and the awaiting coroutine
waking. Not in it: the worker's own ``execute_model`` (input preparation, the broadcast to its TP workers, the
GPU), timed elsewhere. The request is what vLLM 0.7.0's own Scheduler (wheel entered as ``v0_scheduler.py``
does; no stand-ins) schedules on the ``--generated``-th decode step of N sequences with ``--prompt-len``-token
prompts, with the sampling parameters of an OpenAI completion request with ignore_eos
(``CompletionRequest.to_sampling_params``, as ``v0_model_input.py``), the output tokens appended by the wheel's
``SingleStepOutputProcessor``. A row with num_running 0 sends None and returns None: the floor.

Ray sends a task argument inside the call when its serialised size is at most ``max_direct_call_object_size``
(100 KiB by default, env ``RAY_max_direct_call_object_size``) and puts it in the object store otherwise; these
requests cross it between 12 and 13 sequences (the rows' ``request_inline``), where the time steps up. Raising the
limit to 10 MB removed the step in a check run (not recorded). The last lines fit ``a + b * num_running`` to the
medians (and p10s) of all sizes, of the inline ones and of the object-store ones. The sizes are timed round-robin,
``--calls / --rounds`` calls each per round, so load from the machine's other users falls on all of them.

Both ends run on this machine (``ray.init(num_cpus=2)``, one node): the network hop between the two Taiwania
nodes in each direction is not in these numbers.

Environment: a scratch venv with Ray, reading the project venv's packages (torch, msgspec, transformers for the
wheel's modules) through a .pth file appended after its own:

    python3 -m venv /tmp/rayenv && /tmp/rayenv/bin/pip install ray numpy
    echo /work/main/.venv/lib/python3.11/site-packages > /tmp/rayenv/lib/python3.11/site-packages/zz_main_venv.pth
    pip install --no-deps --target /tmp/v070 vllm-0.7.0-cp38-abi3-manylinux1_x86_64.whl
    /tmp/rayenv/bin/python benchmarks/anchors/ray_call.py --vllm070 /tmp/v070 --calls 2000 --rounds 20 \\
        --out data/anchors/ray-call.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from pathlib import Path

ANCHORS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(ANCHORS_DIR))
from v0_model_input import MAX_MODEL_LEN, apply_samples, running_scheduler, sampled, stats  # noqa: E402
from v0_scheduler import BLOCK_SIZE, enter_wheel  # noqa: E402
from v1_scheduler import line_fit, provenance, write_rows  # noqa: E402

NUM_RUNNING = (1, 2, 4, 8, 12, 13, 16, 32, 64)  # 12 -> 13 crosses Ray's inline limit here


def decode_step(num_running: int, prompt_len: int, num_generated: int):
    """The ExecuteModelRequest of the ``num_generated``-th decode step of ``num_running`` sequences, as
    ``step_async`` builds it, and the last stage's answer to it (one SamplerOutput, one sample per group)."""
    from vllm.config import CacheConfig, SchedulerConfig
    from vllm.model_executor.layers.sampler import SamplerOutput
    from vllm.sequence import ExecuteModelRequest

    # the Taiwania configuration of v0_model_input.make_runner: chunked prefill off, budget = max_model_len
    config = SchedulerConfig(runner_type="generate", max_num_batched_tokens=MAX_MODEL_LEN, max_num_seqs=256,
                             max_model_len=MAX_MODEL_LEN)
    cache = CacheConfig(block_size=BLOCK_SIZE, gpu_memory_utilization=0.9, swap_space=0, cache_dtype="auto")
    cache.num_gpu_blocks = num_running * (prompt_len + num_generated + 64) // BLOCK_SIZE + 64
    cache.num_cpu_blocks = 0
    scheduler, processor = running_scheduler(num_running, prompt_len, num_generated + 64, config, cache)
    decodes = 0
    while True:
        metadata, outputs, _ = scheduler.schedule()
        if outputs.num_prefill_groups == 0 and len(metadata) == num_running:
            decodes += 1
            if decodes == num_generated:
                request = ExecuteModelRequest(
                    seq_group_metadata_list=metadata, blocks_to_swap_in=outputs.blocks_to_swap_in,
                    blocks_to_swap_out=outputs.blocks_to_swap_out, blocks_to_copy=outputs.blocks_to_copy,
                    virtual_engine=0, num_lookahead_slots=outputs.num_lookahead_slots,
                    running_queue_size=outputs.running_queue_size, finished_requests_ids=[],
                    last_sampled_token_ids=None)
                return request, [SamplerOutput(outputs=[sampled(next(iter(m.seq_data)), math.inf)
                                                        for m in metadata])]
        apply_samples(processor, metadata, outputs, math.inf)


class LastStageDriver:
    """Stands where vLLM's ``RayWorkerWrapper`` of the last stage stands; returns the prepared answer."""

    def __init__(self, wheel_dir: str):
        sys.path.insert(0, str(ANCHORS_DIR))
        from v0_scheduler import enter_wheel as enter  # the actor's process unpickles vLLM's classes too

        enter(Path(wheel_dir))
        self.answer = None

    def hold(self, answer) -> None:
        self.answer = answer

    def execute_method(self, method: str, *args):
        return self.answer


async def time_calls(actor, request, calls: int, warmup: int = 20) -> list[float]:
    from vllm.utils import _run_task_with_lock

    lock = asyncio.Lock()  # one per stage, created in the running loop as _driver_execute_model_async does
    timings = []
    for _ in range(warmup + calls):
        t0 = time.perf_counter()
        task = asyncio.create_task(_run_task_with_lock(actor.execute_method.remote, lock, "execute_model", request))
        await asyncio.gather(task)
        timings.append(time.perf_counter() - t0)
    return timings[warmup:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vllm070", type=Path, required=True, help="vllm 0.7.0 wheel installed with --target here")
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per batch size, over --rounds rounds")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--prompt-len", type=int, default=498)
    parser.add_argument("--generated", type=int, default=64, help="decode step whose request is sent")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    enter_wheel(args.vllm070)
    import ray
    from vllm.version import __version__

    payloads = {n: decode_step(n, args.prompt_len, args.generated) if n else (None, None) for n in (0, *NUM_RUNNING)}
    inline_limit_bytes = int(os.environ.get("RAY_max_direct_call_object_size", 100 * 1024))  # Ray's default
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        actor = ray.remote(num_cpus=0)(LastStageDriver).remote(str(args.vllm070))
        serializer = ray._private.worker.global_worker.get_serialization_context()
        prov = {**provenance(__version__), "vllm_source": "wheel vllm-0.7.0-cp38-abi3-manylinux1_x86_64.whl, --no-deps",
                "ray": ray.__version__, "ray_nodes": len(ray.nodes()), "prompt_len": args.prompt_len,
                "generated": args.generated}
        timings: dict[int, list[float]] = {n: [] for n in payloads}
        for _ in range(args.rounds):  # round-robin: load from the machine's other users spreads over every size
            for n, (request, answer) in payloads.items():
                ray.get(actor.hold.remote(answer))
                timings[n] += asyncio.run(time_calls(actor, request, args.calls // args.rounds))
        rows = []
        for n, (request, answer) in payloads.items():
            request_bytes = serializer.serialize(request).total_bytes
            row = {"anchor": "v0_pp_ray_call", "num_running": n, "request_ray_bytes": request_bytes,
                   "answer_ray_bytes": serializer.serialize(answer).total_bytes,
                   "request_inline": request_bytes <= inline_limit_bytes, **stats(timings[n]), **prov}
            rows.append(row)
            print(f"{n:3d} seqs ({request_bytes:7d} B out, {row['answer_ray_bytes']:6d} B back): "
                  f"{1e6 * row['median_s']:8.1f} us (p10 {1e6 * row['p10_s']:.1f}, p90 {1e6 * row['p90_s']:.1f})",
                  flush=True)
    finally:
        ray.shutdown()
    fits = {"all": [r for r in rows if r["num_running"]],
            "inline": [r for r in rows if r["num_running"] and r["request_inline"]],
            "object_store": [r for r in rows if not r["request_inline"]]}
    for which, sel in fits.items():
        a, b = line_fit(sel, "median_s")
        a_p10, b_p10 = line_fit(sel, "p10_s")
        rows.append({"anchor": "v0_pp_ray_call_fit", "requests": which, "num_running": [r["num_running"] for r in sel],
                     "per_call_s": a, "per_seq_s": b, "statistic": "median", "per_call_s_from_p10": a_p10,
                     "per_seq_s_from_p10": b_p10, **prov})
        print(f"fit {which} ({rows[-1]['num_running']}): {1e6 * a:.1f} us per call + {1e6 * b:.2f} us per sequence "
              f"(medians); p10 {1e6 * a_p10:.1f} + {1e6 * b_p10:.2f}")
    write_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
