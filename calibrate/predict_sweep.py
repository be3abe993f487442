"""Predict every run of a sweep before it is measured: ``perfmodel calibrate predict SWEEP --hardware H``.

Each run is turned into the record the runner would write, minus what only the engine knows (its KV cache
size: the memory model's is used), then simulated end to end with the chosen profile. The predictions are
written as JSON lines keyed by ``run_id``, so that ``calibrate check`` on the later measurements can be matched
against what was said beforehand.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from calibrate.observations import observation_from_record, predicted_memory, predicted_metrics, simulate_observation
from calibrate.sweep import RunConfig, load_sweep
from hardware import load_hardware
from perfmodel.coefficients import Profile
from perfmodel.engine import DEFAULT_VLLM_VERSION, default_engine_args
from perfmodel.model import load_model


def planned_record(run: RunConfig, gpu_memory_bytes: float, vllm_version: str) -> dict[str, Any]:
    """The parts of a results record a prediction needs, with vLLM's defaults where the sweep leaves them."""
    engine, workload = run.engine.to_dict(), run.workload.to_dict()
    entry = "offline" if engine.get("mode", "offline") == "offline" else "serve"
    defaults = default_engine_args(gpu_memory_bytes, entry_point=entry, vllm_version=vllm_version,
                                   max_num_seqs=engine.get("max_num_seqs"),
                                   max_num_batched_tokens=engine.get("max_num_batched_tokens"))
    input_lens, output_lens = run.workload.lengths()
    return {
        "run_id": run.run_id, "status": "ok", "config": {"engine": engine, "workload": workload},
        "model": {"spec": engine["model"]},
        "engine_info": {"max_num_seqs": defaults.max_num_seqs, "max_num_batched_tokens": defaults.max_num_batched_tokens},
        "provenance": {"vllm_version": vllm_version},
        "requests": {"input_lens": list(input_lens), "output_lens": list(output_lens)},
    }


def predict_sweep(sweep_path: str | Path, hardware: str, profile: Profile, *,
                  vllm_version: str = DEFAULT_VLLM_VERSION) -> list[dict[str, Any]]:
    """One prediction per run of the sweep (offline runs; online runs use their arrival settings' lengths)."""
    sweep = load_sweep(sweep_path)
    cluster = load_hardware(hardware)
    out = []
    for run in sweep.runs:
        load_model(run.engine.model)  # a clear error for a model the catalog does not know
        obs = observation_from_record(planned_record(run, cluster.gpu.memory_bytes, vllm_version), cluster)
        memory = predicted_memory(obs, cluster, profile.coefficients)
        metrics = predicted_metrics(obs, simulate_observation(obs, cluster, profile.coefficients, kv_from="model"))
        out.append({"run_id": run.run_id, "description": run.describe(), "hardware": hardware,
                    "profile": profile.name, "profile_source": profile.source, "vllm_version": vllm_version,
                    "predicted_utc": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
                    "kv_cache_tokens": memory.kv_cache_tokens, **metrics})
    return out


def write_predictions(predictions: list[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(p, sort_keys=True) + "\n" for p in predictions))
    tmp.replace(path)
    return path
