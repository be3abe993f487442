"""Pre-registered predictions for H200 sweep 2 (issue 14): data/h200-sweep2/predictions.jsonl.

    PYTHONPATH=. python benchmarks/device/predict_sweep2.py

Offline runs: exactly `perfmodel calibrate predict SWEEP --hardware h200-sxm` (calibrate.report.predict_sweep). Online
runs: the same, except that each request's send time is the one calibrate.run.client will use (`arrival_times`
with the workload's rate, burstiness and seed), because `calibrate predict` replays online runs as a burst
at t=0 (its planned record has no send times) and so cannot say what Poisson arrivals do to TTFT.
"""
from __future__ import annotations

import sys
from pathlib import Path

from calibrate.report import predict_sweep as ps
from calibrate.run.client import arrival_times
from calibrate.fit.observations import observation_from_record, predicted_memory, predicted_metrics, simulate_observation
from calibrate.records.sweep import load_sweep
from hardware import load_hardware
from perfmodel.cost.coefficients import default_profile

ROOT = Path(__file__).resolve().parents[2]
HARDWARE = "h200-sxm"
SWEEPS = ("h200-sweep2-offline", "h200-sweep2-online", "h200-sweep2-prefix")


def online_predictions(sweep_path: Path, profile) -> list[dict]:
    """`predict_sweep`'s records for an online sweep, simulated with the client's arrival times."""
    cluster = load_hardware(HARDWARE)
    by_id = {p["run_id"]: p for p in ps.predict_sweep(sweep_path, HARDWARE, profile)}
    for run in load_sweep(sweep_path).runs:
        w = run.workload
        record = ps.planned_record(run, cluster.gpu.memory_bytes, by_id[run.run_id]["vllm_version"])
        record["requests"]["send_s"] = arrival_times(w.num_prompts, w.request_rate, w.burstiness, w.seed)
        obs = observation_from_record(record, cluster)
        sim = simulate_observation(obs, cluster, profile.coefficients, kv_from="model")
        by_id[run.run_id].update(predicted_metrics(obs, sim), arrivals="calibrate.run.client.arrival_times",
                                 kv_cache_tokens=predicted_memory(obs, cluster, profile.coefficients).kv_cache_tokens)
    return list(by_id.values())


def main() -> int:
    profile = default_profile(load_hardware(HARDWARE).gpu.name)  # as `calibrate predict` without --calibration
    preds = []
    for name in SWEEPS:
        path = ROOT / "sweeps" / f"{name}.yaml"
        rows = online_predictions(path, profile) if "online" in name else ps.predict_sweep(path, HARDWARE, profile)
        preds += [{**p, "sweep": name} for p in rows]
    out = ps.write_predictions(preds, ROOT / "data" / "h200-sweep2" / "predictions.jsonl")
    print(f"{len(preds)} predictions -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
