"""How far the H200 fit transfers to models it never saw (issue 22): the Taiwania situation on the project's own data.

Two kinds of case, each a fit (``calibrate.fit.CoefficientFitter`` with its default prior, as ``perfmodel
calibrate fit`` runs it) on some models' runs and a prediction of every offline run of the others:

* **one model**: fit on the runs of ONE model (each model with at least ``--min-runs`` offline runs), predict the
  offline runs of every other model;
* **small to large**: fit on the models of at most 14B parameters, predict those of 27B to 70B.

A prediction is end to end (the memory model's KV cache, as a user gets it before booking); the error is the
offline throughput's (tokens/s) absolute percentage error. Offline schedules do not depend on step times, so
each fit re-costs recorded schedules (calibrate/fit.py) and the cases run in forked workers (``--workers``).

    python benchmarks/bench_transfer.py                  # the shipped H200 profile's data, 2 workers
    python benchmarks/bench_transfer.py --workers 1 --min-runs 8

Prints one line per case and per target model, each part's median, the intervals' coverage where the profile
can give intervals for an unseen model (``--coverage``), and as its last line ``transfer median APE: X%`` (the
median over every prediction of both parts).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SMALL_MAX_PARAMS = 14.9e9  # "models <= 14B": Qwen2.5-14B has 14.8e9 parameters
LARGE_RANGE_PARAMS = (26e9, 71e9)  # "27B-70B": Gemma-2-27B (27.2e9) to Llama-3.1-70B (70.6e9), Mixtral 8x7B (46.7e9)
METRIC = "tokens_per_second"


@dataclass(frozen=True)
class Case:
    part: str  # "one model" or "small to large"
    name: str
    train_models: tuple[str, ...]
    test_models: tuple[str, ...]


@dataclass(frozen=True)
class Prediction:
    case: str
    part: str
    model: str
    run_id: str
    measured: float
    predicted: float

    @property
    def ape(self) -> float:
        return abs(self.predicted - self.measured) / self.measured

    @property
    def log_error(self) -> float:
        return math.log(self.predicted / self.measured)


def profile_sources(profile_path: Path) -> tuple[str, list[str]]:
    """(gpu, results files) the profile was fitted on, from its ``gpu:`` and ``source:`` fields."""
    import yaml

    doc = yaml.safe_load(profile_path.read_text())
    return doc["gpu"], [s.strip() for s in str(doc["source"]).split(",") if s.strip()]


def load(profile_path: Path):
    from calibrate.observations import load_observations
    from calibrate.store import load_records

    gpu, files = profile_sources(profile_path)
    records = []
    for path in files:
        records += load_records(ROOT / path, latest_only=True)
    return load_observations(records, gpu)


def offline_runs(observations) -> list:
    return [o for o in observations if o.mode == "offline" and o.measured.get(METRIC, 0) > 0]


def cases(observations, min_runs: int) -> list[Case]:
    offline = offline_runs(observations)
    models = sorted({o.model_name for o in observations})
    counts = {m: sum(o.model_name == m for o in offline) for m in models}
    params = {o.model_name: o.model.num_params() for o in observations}
    out = [Case(part="one model", name=f"fit {m}", train_models=(m,), test_models=tuple(x for x in models if x != m))
           for m in models if counts[m] >= min_runs]
    small = tuple(m for m in models if params[m] <= SMALL_MAX_PARAMS)
    large = tuple(m for m in models if LARGE_RANGE_PARAMS[0] <= params[m] <= LARGE_RANGE_PARAMS[1])
    out.append(Case(part="small to large", name="fit <=14B", train_models=small, test_models=large))
    return out


_STATE: tuple | None = None  # (cluster, observations) for the forked workers


def run_case(case: Case) -> list[Prediction]:
    from calibrate.fit import CoefficientFitter
    from calibrate.observations import predicted_metrics

    cluster, observations = _STATE
    train = [o for o in observations if o.model_name in case.train_models]
    fitted = CoefficientFitter(cluster).fit(train).coefficients_
    out = []
    for o in offline_runs(observations):
        if o.model_name not in case.test_models or o.memory(fitted).num_gpu_blocks <= 0:
            continue
        predicted = predicted_metrics(o, o.simulate(fitted, kv_from="model", record_timeline=False)).get(METRIC)
        if predicted:
            out.append(Prediction(case=case.name, part=case.part, model=o.model_name, run_id=o.run_id,
                                  measured=o.measured[METRIC], predicted=predicted))
    return out


def run_all(all_cases: list[Case], workers: int) -> list[list[Prediction]]:
    from perfmodel.pool import executor

    with executor(workers) as pool:
        return [f.result() for f in [pool.submit(run_case, c) for c in all_cases]]


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main(argv: list[str] | None = None) -> int:
    global _STATE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", type=Path, default=ROOT / "perfmodel" / "profiles" / "h200-sxm.yaml",
                        help="profile whose source runs to use (default: the shipped H200 profile)")
    parser.add_argument("--min-runs", type=int, default=6, help="offline runs a model needs to be fitted alone")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    _STATE = load(args.profile)
    all_cases = cases(_STATE[1], args.min_runs)
    results = run_all(all_cases, args.workers)
    everything: list[Prediction] = []
    for case, predictions in zip(all_cases, results):
        everything += predictions
        apes = [p.ape for p in predictions]
        bias = float(np.median([p.log_error for p in predictions]))
        print(f"{case.part:15s} {case.name:24s} {len(apes):3d} runs  median APE {pct(np.median(apes)):>6s}  "
              f"p90 {pct(np.quantile(apes, 0.9)):>6s}  median bias {100 * bias:+.1f}%")
        for model in sorted({p.model for p in predictions}):
            mine = [p.ape for p in predictions if p.model == model]
            print(f"    {model:22s} {len(mine):3d} runs  median APE {pct(np.median(mine)):>6s}  max {pct(max(mine))}")
    for part in ("one model", "small to large"):
        apes = [p.ape for p in everything if p.part == part]
        print(f"{part}: {len(apes)} predictions, median APE {pct(np.median(apes))}, p90 {pct(np.quantile(apes, 0.9))}")
    print(f"transfer median APE: {pct(np.median([p.ape for p in everything]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
