"""Time vLLM 0.7.0's V0 engine-step bookkeeping on this CPU against the number of running decode sequences: the
scheduler's ``Scheduler.schedule()`` (vllm/core/scheduler.py) and what ``LLMEngine._process_model_outputs``
(vllm/engine/llm_engine.py) does per scheduled group after the model ran: ``update_num_computed_tokens``, the
``SingleStepOutputProcessor`` (vllm/engine/output_processor/single_step.py: append the sampled token, stop check)
and ``RequestOutputFactory.create`` (vllm/outputs.py), then ``free_finished_seq_groups``. The CPU anchor of the V0
profile's ``step_overhead_s`` and ``per_seq_overhead_s`` (the V100 / Taiwania 2 runs use vLLM 0.7.0).

vLLM 0.7.0 is not importable as a package here (its ``vllm/__init__`` pulls in the engine, CUDA ops and the
model executor, which need its pinned torch/transformers); the wheel is installed without dependencies into a
scratch directory and its ``vllm`` package is entered without running ``vllm/__init__.py``: a bare module named
``vllm`` whose ``__path__`` is the wheel's package. Only pure-Python modules are imported (config, core,
sequence, outputs, engine.output_processor); no stub replaces any of vLLM's code. The model runner's input
preparation (``ModelInputForGPUBuilder``) ends in CUDA tensors and the sampler runs on the GPU: not timed.

    pip download --no-deps --only-binary :all: --python-version 3.12 --platform manylinux1_x86_64 vllm==0.7.0 -d W
    pip install --no-deps --target /tmp/tr/v070 W/vllm-0.7.0-cp38-abi3-manylinux1_x86_64.whl
    PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/anchors/v0_scheduler.py --vllm070 /tmp/tr/v070 \\
        --out data/anchors/v0-scheduler.jsonl
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from v1_scheduler import BATCH_SIZES, line_fit, provenance, write_rows  # noqa: E402

BLOCK_SIZE = 16


def enter_wheel(target: Path) -> None:
    package = types.ModuleType("vllm")
    package.__path__ = [str(target / "vllm")]
    sys.modules["vllm"] = package


def time_batch(num_running: int, steps: int, prompt_len: int) -> dict:
    from vllm.config import CacheConfig, SchedulerConfig
    from vllm.core.scheduler import Scheduler
    from vllm.engine.output_processor.single_step import SingleStepOutputProcessor
    from vllm.engine.output_processor.stop_checker import StopChecker
    from vllm.inputs import token_inputs
    from vllm.outputs import RequestOutputFactory
    from vllm.sampling_params import SamplingParams
    from vllm.sequence import CompletionSequenceGroupOutput, Logprob, Sequence, SequenceGroup, SequenceOutput
    from vllm.utils import Counter

    # vLLM 0.7.0's defaults for an offline LLM on a GPU: chunked prefill off below 32k context, so
    # max_num_batched_tokens = max(max_model_len, 2048) (EngineArgs / SchedulerConfig.__post_init__)
    scheduler_config = SchedulerConfig(runner_type="generate", max_num_batched_tokens=4096,
                                       max_num_seqs=max(num_running, 1), max_model_len=4096)
    cache = CacheConfig(block_size=BLOCK_SIZE, gpu_memory_utilization=0.9, swap_space=0, cache_dtype="auto")
    cache.num_gpu_blocks = num_running * (prompt_len + 10 * steps) // BLOCK_SIZE + 64
    cache.num_cpu_blocks = 0
    scheduler = Scheduler(scheduler_config, cache, None)
    processor = SingleStepOutputProcessor(scheduler_config, None, [scheduler], Counter(),
                                          StopChecker(4096, lambda seq: None))
    params = SamplingParams(max_tokens=10 * steps + 100, ignore_eos=True, detokenize=False)
    for i in range(num_running):
        seq = Sequence(i, token_inputs([(i * 31 + j) % 30000 for j in range(prompt_len)]), BLOCK_SIZE)
        scheduler.add_seq_group(SequenceGroup(request_id=str(i), seqs=[seq], arrival_time=time.time(),
                                              sampling_params=params))
    seq_id_to_group: dict = {}
    timings = []
    for _ in range(steps + 5):
        t0 = time.perf_counter()
        metadata, outputs, _ = scheduler.schedule()
        decode = outputs.num_prefill_groups == 0
        for meta, scheduled in zip(metadata, outputs.scheduled_seq_groups):
            group = scheduled.seq_group
            group.update_num_computed_tokens(meta.token_chunk_size or 0)
            if meta.do_sample:
                seq = group.seqs[0]
                token = 1000 + seq.seq_id % 7
                sample = CompletionSequenceGroupOutput([SequenceOutput(seq.seq_id, token, {token: Logprob(0.0)})], None)
                processor.process_outputs(group, [sample], False)
            RequestOutputFactory.create(group, seq_id_to_group)
        scheduler.free_finished_seq_groups()
        dt = time.perf_counter() - t0
        if decode and len(metadata) == num_running:
            timings.append(dt)
    return {"num_running": num_running, "decode_steps_timed": len(timings), "median_s": statistics.median(timings),
            "p10_s": sorted(timings)[len(timings) // 10], "p90_s": sorted(timings)[9 * len(timings) // 10]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vllm070", type=Path, required=True, help="vllm 0.7.0 wheel installed with --target here")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    enter_wheel(args.vllm070)
    from vllm.version import __version__

    prov = {**provenance(__version__), "vllm_source": "wheel vllm-0.7.0-cp38-abi3-manylinux1_x86_64.whl, --no-deps"}
    rows = []
    for n in BATCH_SIZES:
        row = {"anchor": "v0_engine_step", **time_batch(n, args.steps, args.prompt_len), **prov}
        rows.append(row)
        print(f"{n:4d} running: {1e6 * row['median_s']:8.1f} us/step (p10 {1e6 * row['p10_s']:.1f}, "
              f"p90 {1e6 * row['p90_s']:.1f}) over {row['decode_steps_timed']} steps", flush=True)
    a, b = line_fit(rows)
    a_median, b_median = line_fit(rows, "median_s")
    rows.append({"anchor": "v0_engine_step_fit", "per_step_s": a, "per_seq_s": b, "statistic": "p10",
                 "per_step_s_from_medians": a_median, "per_seq_s_from_medians": b_median, **prov})
    print(f"fit: {1e6 * a:.1f} us per step + {1e6 * b:.2f} us per running sequence")
    write_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
