"""calibrate.report.coverage: intervals judged against measurements, including intervals committed before the runs."""
import json
from pathlib import Path

import pytest

from calibrate.report.coverage import preregistered

ROOT = Path(__file__).resolve().parents[2]
PREREGISTERED = (ROOT / "data" / "h200-holdout2", ROOT / "data" / "h200-holdout3")  # scripts/intervals_report.py's


def _write(folder: Path, predictions: list[dict], results: list[dict]) -> None:
    folder.mkdir()
    (folder / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in predictions))
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))


def test_committed_bounds_are_used_as_they_are(tmp_path):
    interval = {"level": 0.9, "source": "k-fold", "tokens_per_second": [90.0, 110.0]}
    predictions = [{"run_id": "a", "description": "run a", "tokens_per_second": 100.0, "interval": interval},
                   {"run_id": "b", "description": "run b", "tokens_per_second": 100.0, "interval": interval},
                   {"run_id": "c", "description": "no interval", "tokens_per_second": 100.0}]
    results = [{"run_id": "a", "status": "ok", "metrics": {"tokens_per_second": 109.0}},
               {"run_id": "b", "status": "ok", "metrics": {"tokens_per_second": 111.0}},
               {"run_id": "c", "status": "ok", "metrics": {"tokens_per_second": 100.0}},
               {"run_id": "b", "status": "error", "metrics": None}]  # the newest record of b decides
    _write(tmp_path / "set", predictions, results[:3])
    h = preregistered(tmp_path / "set")
    assert list(h["inside"]) == [True, False] and list(h["half_width"]) == [0.1, 0.1]
    _write(tmp_path / "later", predictions, results)
    assert list(preregistered(tmp_path / "later")["run"]) == ["run a"]


@pytest.mark.parametrize("folder, count", list(zip(PREREGISTERED, (12, 10))), ids=lambda v: getattr(v, "name", v))
def test_every_run_of_the_committed_sets_is_judged(folder, count):
    h = preregistered(folder)
    runs = (folder / "results.jsonl").read_text().splitlines()
    assert len(h[h["metric"] == "tokens_per_second"]) == len(runs) == count


def test_the_coefficient_reference_is_per_regime_with_enough_runs():
    import pandas as pd

    from calibrate.report.uncertainty import coefficient_sd_reference

    rows = pd.DataFrame([{"run_id": f"g{i}", "regime": "offline/graphs/1gpu", "coef_sd_wave": 0.03} for i in range(8)]
                        + [{"run_id": f"e{i}", "regime": "offline/eager/1gpu", "coef_sd_wave": 0.05} for i in range(3)])
    ref = coefficient_sd_reference(rows)
    assert ref["offline/graphs/1gpu"] == {"wave": 0.03}
    assert "offline/eager/1gpu" not in ref  # 3 runs: the regime borrows all runs' median
    assert ref["all"] == {"wave": 0.03}


def test_each_stored_residual_keeps_its_own_coefficient_term_in_order():
    import pandas as pd

    from calibrate.report.coverage import _pool, _scale_pool
    from calibrate.report.uncertainty import grouped, grouped_scales

    rows = [{"regime": "offline/graphs/1gpu", "metric": "tokens_per_second", "log_residual": 0.01 * i,
             "coef_sd_wave": 0.02 + 0.001 * i, "coef_sd_prefill": 0.5, "coef_sd_decode": 0.7} for i in range(4)]
    rows += [{"regime": "online/graphs/1gpu", "metric": m, "log_residual": 0.1, "coef_sd_wave": 0.02,
              "coef_sd_prefill": 0.05, "coef_sd_decode": 0.07} for m in ("ttft_s_mean", "tpot_s_p99")]
    scales = grouped_scales(rows)
    assert scales["offline/graphs/1gpu"]["tokens_per_second"] == [0.02, 0.021, 0.022, 0.023]
    assert scales["online/graphs/1gpu"] == {"ttft_s_mean": [0.05], "tpot_s_p99": [0.07]}  # the metric's step kind
    assert {r: list(m) for r, m in scales.items()} == {r: list(m) for r, m in grouped(rows).items()}
    # the coverage report's pools line up the same way
    frame = pd.DataFrame(rows)
    pool, weights = _pool(frame, by_regime=True), _scale_pool(frame)
    assert {(r, m): len(v) for r, by in pool.items() for m, v in by.items()} == \
        {(r, m): len(v) for r, by in weights.items() for m, v in by.items()}
