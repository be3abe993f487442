"""Run H200 sweep 2 (issue 14) on one lent H200 within a deadline, one engine configuration at a time.

    python3 benchmarks/device/h200_sweep2.py DEADLINE_S ENGINE... [--results DIR] [--out DIR] [--predictions F]

Each ENGINE is `SWEEP#N`: the N-th engine configuration (1-based, in the order `calibrate.run.runner --dry-run`
lists them) of `sweeps/SWEEP.yaml`, taken in the order given (the priority order). An engine is started only
when its estimated time fits before the deadline; one that does not fit is skipped and the next is tried, so
that no engine is killed half-way. The estimate is `overhead_s(engine)` (process start, vLLM import, weight
init, torch.compile, CUDA graphs, warm-up, teardown) plus `SAFETY` times the predicted elapsed time of its
runs (--predictions, by default data/h200-sweep2/predictions.jsonl: output tokens / predicted output tokens
per second). The H200 hold-out 2 sweep (data/h200-holdout2/) runs through it too.

Results accumulate in DIR/<sweep>.jsonl (append-only; calibrate.run.runner skips finished runs, so a re-run with
the same DIR resumes); after every engine the JSON lines are copied to --out, and at the end every vLLM log is
packed into --out/logs-<time>.tgz.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from calibrate.records.store import completed_run_ids  # noqa: E402
from calibrate.records.sweep import load_sweep  # noqa: E402

PREDICTIONS = ROOT / "data" / "h200-sweep2" / "predictions.jsonl"
SAFETY = 1.4  # predicted elapsed time x this: the shipped profile has never seen these kernels


def overhead_s(engine) -> float:
    """Seconds an engine costs besides its runs, as measured in this sweep on one H200 (2026-12-01: engine start
    to first result minus the run, 85-110 s for 8B, ~140 s for 32B, ~180 s for 70B FP8, torch.compile alone
    18-89 s; the OpenAI server about the same as offline). Gemma-2-27B and Mixtral-8x7B are taken as 32B."""
    name = Path(engine.model).name
    mid = any(size in name for size in ("27b", "32b", "8x7b"))
    return 100.0 + (45.0 if mid else 0.0) + (90.0 if "70b" in name else 0.0)


def predicted_elapsed_s(runs, predictions: dict[str, dict]) -> float:
    total = 0.0
    for run in runs:
        p = predictions.get(run.run_id)
        out_tokens = sum(run.workload.lengths()[1])
        total += out_tokens / p["output_tokens_per_second"] if p else 60.0
    return total


def plan(engines: list[str], results_dir: Path, predictions_path: Path = PREDICTIONS
         ) -> list[tuple[str, object, list, float]]:
    """(sweep name, engine, its unfinished runs, estimated seconds) for each ENGINE, in the given order."""
    predictions = {}
    if predictions_path.exists():
        predictions = {json.loads(line)["run_id"]: json.loads(line)
                       for line in predictions_path.read_text().splitlines() if line.strip()}
    out = []
    for item in engines:
        name, _, index = item.partition("#")
        sweep = load_sweep(ROOT / "sweeps" / f"{name}.yaml")
        engine, runs = list(sweep.by_engine().items())[int(index) - 1]
        done = completed_run_ids(results_dir / f"{name}.jsonl")
        pending = [r for r in runs if r.run_id not in done]
        if pending:
            est = overhead_s(engine) + SAFETY * predicted_elapsed_s(pending, predictions)
            out.append((name, engine, pending, est))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("deadline_s", type=float)
    ap.add_argument("engines", nargs="+", metavar="SWEEP#N")
    ap.add_argument("--results", default="/tmp/runs/sweep2")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/out"))
    ap.add_argument("--predictions", type=Path, default=PREDICTIONS,
                    help="pre-registered predictions the time estimates use (default: sweep 2's)")
    args = ap.parse_args(argv)
    t_end = time.monotonic() + args.deadline_s
    results_dir, out_dir = Path(args.results), Path(args.out)
    results_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = plan(args.engines, results_dir, args.predictions)
    print(f"plan: {len(todo)} engines, {sum(e for *_, e in todo):.0f} s estimated, "
          f"{args.deadline_s:.0f} s available", flush=True)
    for name, engine, runs, est in todo:
        left = t_end - time.monotonic()
        label = f"{name} {engine.engine_id} {Path(engine.model).name} q={engine.quantization} " \
                f"kv={engine.kv_cache_dtype} pc={engine.enable_prefix_caching} ({len(runs)} runs, est {est:.0f} s)"
        if est > left:
            print(f"skip {label}: {left:.0f} s left", flush=True)
            continue
        print(f"start {label}", flush=True)
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "perfmodel.cli", "calibrate", "run", str(ROOT / "sweeps" / f"{name}.yaml"),
               "--results", str(results_dir / f"{name}.jsonl"), "--engine", engine.engine_id,
               "--engine-timeout", f"{max(left - 5, 30):.0f}"]  # only the deadline stops an engine: a tighter
        # limit (1.6 x the estimate) killed five engines mid-run in this sweep's first calls
        subprocess.run(cmd, cwd=ROOT)
        print(f"done {name} {engine.engine_id} in {time.monotonic() - t0:.0f} s (est {est:.0f} s)", flush=True)
        for f in results_dir.glob("*.jsonl"):
            shutil.copy(f, out_dir / f.name)
    stamp = time.strftime("%H%M%S", time.gmtime())
    with tarfile.open(out_dir / f"logs-{stamp}.tgz", "w:gz") as tar:
        for logs in [*results_dir.glob("*.logs"), results_dir / "models"]:
            if logs.exists():
                tar.add(logs, arcname=logs.name)  # vLLM logs, worker specs, the config.json each engine loaded
    for f in results_dir.glob("*.jsonl"):
        shutil.copy(f, out_dir / f.name)
        lines = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        ok = sum(r.get("status") == "ok" for r in lines)
        print(f"{f.name}: {ok} ok, {len(lines) - ok} errors", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
