"""How far a fit transfers to models it never saw: fit on some models' runs, predict the others' (issue 22).

Two kinds of case, each a fit (``calibrate.fit.offline.CoefficientFitter``) on some models' runs and an end-to-end
prediction (the memory model's KV cache, as a user gets it before booking) of every offline run of the others:

* **one model**: fit on the runs of ONE model (each model with at least ``min_runs`` offline runs), predict the
  offline runs of every other model (the Taiwania 2 situation: one model in the fit);
* **small to large**: fit on the models of at most 14B parameters, predict those of 27B to 70B.

benchmarks/bench_transfer.py prints the errors; ``calibrate uncertainty`` stores the log residuals in a profile
(``residuals.model_transfer``), the spread an interval of a model or kernel path the profile never saw carries
(perfmodel.uncertainty.intervals). Offline schedules do not depend on step times, so each fit re-costs recorded schedules
and the cases run in forked worker processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from calibrate.fit.observations import Observation

SMALL_MAX_PARAMS = 14.9e9  # "models <= 14B": Qwen2.5-14B has 14.8e9 parameters
LARGE_RANGE_PARAMS = (26e9, 71e9)  # "27B-70B": Gemma-2-27B (27.2e9) to Llama-3.1-70B (70.6e9), Mixtral 8x7B (46.7e9)
METRICS = ("tokens_per_second", "output_tokens_per_second", "requests_per_second")
MIN_RUNS = 6


@dataclass(frozen=True)
class Case:
    part: str  # "one model" or "small to large"
    name: str
    train_models: tuple[str, ...]
    test_models: tuple[str, ...]


def offline_runs(observations: Sequence[Observation]) -> list[Observation]:
    return [o for o in observations if o.mode == "offline" and o.measured.get(METRICS[0], 0) > 0]


def transfer_cases(observations: Sequence[Observation], min_runs: int = MIN_RUNS) -> list[Case]:
    offline = offline_runs(observations)
    models = sorted({o.model_name for o in observations})
    counts = {m: sum(o.model_name == m for o in offline) for m in models}
    params = {o.model_name: o.model.num_params() for o in observations}
    out = [Case(part="one model", name=f"fit {m}", train_models=(m,), test_models=tuple(x for x in models if x != m))
           for m in models if counts[m] >= min_runs]
    small = tuple(m for m in models if params[m] <= SMALL_MAX_PARAMS)
    large = tuple(m for m in models if LARGE_RANGE_PARAMS[0] <= params[m] <= LARGE_RANGE_PARAMS[1])
    if small and large:
        out.append(Case(part="small to large", name="fit <=14B", train_models=small, test_models=large))
    return out


_STATE: tuple | None = None  # (cluster, observations, fit options) while transfer_rows runs, for forked workers


def _run_case(case: Case) -> list[dict]:
    from calibrate.fit.offline import CoefficientFitter
    from calibrate.fit.observations import predicted_metrics
    from perfmodel.uncertainty.intervals import regime

    cluster, observations, options = _STATE
    train = [o for o in observations if o.model_name in case.train_models]
    fitted = CoefficientFitter(cluster, **options).fit(train).coefficients_
    rows = []
    for o in offline_runs(observations):
        if o.model_name not in case.test_models or o.memory(fitted).num_gpu_blocks <= 0:
            continue
        predicted = predicted_metrics(o, o.simulate(fitted, kv_from="model", record_timeline=False))
        base = dict(case=case.name, part=case.part, model=o.model_name, run_id=o.run_id, layout=o.layout_name,
                    regime=regime(mode=o.mode, eager=o.eager, gpus=o.layout.tp * o.layout.pp))
        for metric in METRICS:
            measured, pred = o.measured.get(metric, 0.0), predicted.get(metric, math.nan)
            if measured > 0 and pred > 0 and math.isfinite(pred):
                rows.append({**base, "metric": metric, "measured": measured, "predicted": pred,
                             "log_residual": math.log(measured / pred)})
    return rows


def transfer_rows(observations: Sequence[Observation], cluster, *, cases: Sequence[Case] | None = None,
                  workers: int = 1, **fit_options) -> list[list[dict]]:
    """Per case (``transfer_cases`` by default), one row per (predicted run, metric): measured, predicted and
    ``log_residual = log(measured / predicted)``; ``fit_options`` go to every fit (prior, anchors)."""
    from perfmodel.pool import executor

    global _STATE
    cases = list(cases if cases is not None else transfer_cases(observations))
    _STATE = (cluster, list(observations), fit_options)
    try:
        with executor(workers) as pool:
            return [f.result() for f in [pool.submit(_run_case, c) for c in cases]]
    finally:
        _STATE = None
