"""Predict every run of a sweep before it is measured: ``perfmodel calibrate predict SWEEP --hardware H``.

Each run becomes the ``Scenario`` its engine will be (``ScenarioOptions`` from the sweep's engine arguments,
vLLM's defaults for the rest, exactly as ``perfmodel predict`` resolves them) and the requests its runner will
send: the same per-request lengths, the same send times (``calibrate.run.client.arrival_times``) and concurrency
limit. It is simulated end to end, with the memory model's KV cache. The predictions are written as JSON lines
keyed by ``run_id``, so that ``calibrate check`` on the later measurements can be matched against what was said
beforehand; each carries the profile's interval of its figures (``perfmodel.uncertainty.intervals``), so that coverage can
be judged on runs measured after it was committed.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.run.client import arrival_times
from calibrate.fit.observations import Observation, predicted_metrics, run_workload
from calibrate.records.sweep import RunConfig, load_sweep
from perfmodel.atomic import write_text_atomic
from perfmodel.cost.coefficients import Profile
from perfmodel.errors import UserError
from perfmodel.layout import Layout
from perfmodel.progress import Progress
from perfmodel.scenario import Scenario
from perfmodel.uncertainty.intervals import DEFAULT_LEVEL, interval_for

MAX_PREDICTED_RUNS = 10_000  # runs one calibrate predict simulates (~20 ms a run: a few minutes, with progress)


def planned_observation(run: RunConfig, hardware: str, profile: Profile, vllm_version: str | None,
                        base_dir: Path) -> Observation:
    """The run as it will be measured, with nothing measured yet (``vllm_version`` None: the cluster's)."""
    e, w = run.engine, run.workload
    model = str(base_dir / e.model) if (base_dir / e.model).exists() else e.model  # as the runner resolves it
    input_lens, output_lens = (np.asarray(v, dtype=int) for v in w.lengths())
    # the run's own workload, as a measured run's observation has it (the interval's coefficient term costs it)
    workload = run_workload(input_lens, output_lens)
    options = e.scenario_options(hardware=hardware, model=model, vllm_version=vllm_version,
                                 input_len=workload.input_len, output_len=workload.output_len,
                                 num_prompts=workload.num_prompts)
    scenario = Scenario.from_options(options).with_coefficients(profile.coefficients)
    online = e.mode == "online"
    sent = arrival_times(len(input_lens), w.request_rate, w.burstiness, w.seed) if online else [0.0] * len(input_lens)
    return Observation(run_id=run.run_id, scenario=scenario,
                       layout=Layout(tp=e.tensor_parallel_size, pp=e.pipeline_parallel_size), mode=e.mode,
                       input_lens=input_lens, output_lens=output_lens, arrival_s=np.asarray(sent, dtype=float),
                       max_concurrency=w.max_concurrency if online else None, measured={},
                       shared_prefix_len=w.shared_prefix_len,
                       measured_kv_cache_tokens=None, measured_num_gpu_blocks=None, measured_kv_cache_bytes=None)


def predict_sweep(sweep_path: str | Path, hardware: str, profile: Profile, *,
                  vllm_version: str | None = None, level: float = DEFAULT_LEVEL) -> list[dict[str, Any]]:
    """One prediction per run of the sweep, offline and online, each with its ``level`` interval when the
    profile has an ``uncertainty:`` section; ``vllm_version`` None: the hardware's release, as ``predict``."""
    sweep = load_sweep(sweep_path)
    if len(sweep.runs) > MAX_PREDICTED_RUNS:
        raise UserError(f"{sweep_path}: {len(sweep.runs):,} runs; calibrate predict simulates at most "
                        f"{MAX_PREDICTED_RUNS:,} (~20 ms each); split the sweep or narrow its grid")
    out = []
    progress = Progress(label="runs predicted")
    for i, run in enumerate(sweep.runs, 1):
        progress(i - 1, len(sweep.runs))
        obs = planned_observation(run, hardware, profile, vllm_version, sweep.base_dir)
        memory = obs.memory(profile.coefficients)
        where = f"run {run.run_id} ({run.describe()}): {obs.layout} of {obs.scenario.model.name} on {hardware}"
        if not memory.fits:
            raise UserError(f"{where} does not fit: {memory.reason}")
        try:
            metrics = predicted_metrics(obs, obs.simulate(profile.coefficients, kv_from="model"))
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
        record = {"run_id": run.run_id, "description": run.describe(), "hardware": hardware,
                  "profile": profile.name, "profile_source": profile.source,
                  "vllm_version": obs.engine.vllm_version,
                  "predicted_utc": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
                  "kv_cache_tokens": memory.kv_cache_tokens, **metrics}
        interval = interval_for(obs.scenario.with_(profile=profile), obs.layout, metrics, mode=obs.mode,
                                level=level)
        if interval is not None:  # the profile's calibrated range, committed with the point (issue 13)
            record["interval"] = {**interval.to_dict(), "source": interval.source}
        out.append(record)
    progress.close()
    return out


def write_predictions(predictions: list[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, "".join(json.dumps(p, sort_keys=True) + "\n" for p in predictions))
