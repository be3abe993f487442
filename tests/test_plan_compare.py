"""plan --hardware a,b: the fewest GPUs of each hardware, ranked by cost or GPU-hours per million output tokens."""

import csv
import io
import json
import math

import pytest

from perfmodel.cli import main
from perfmodel.errors import UserError
from perfmodel.analysis.plan_compare import HardwareChoice, parse_costs, rank

ARGS = ["plan", "--model", "qwen2.5-7b", "--hardware", "h100-sxm,h200-sxm", "--request-rate", "4", "--ttft-p99", "2",
        "--tpot-p99", "0.05", "--num-prompts", "60", "--workers", "1", "--gpus-max", "4"]


def _choice(name, gpus, gpu_hours, price=None):
    return HardwareChoice(hardware=name, gpu=name, gpus=gpus, layout="TP1 PP1 DP1" if gpus else None, tp=1, pp=1, dp=1,
                          output_tokens_per_second=1.0, output_tokens_per_second_per_gpu=1.0, ttft_s_p99=0.1,
                          tpot_s_p99=0.01, gpu_hours_per_million_output_tokens=gpu_hours, gpu_hour_cost=price,
                          cost_per_million_output_tokens=None if price is None else gpu_hours * price, message="")


def test_parse_costs():
    assert parse_costs(["a=2.5,b=3", "c=1"]) == {"a": 2.5, "b": 3.0, "c": 1.0}
    for bad in ("a", "a=", "a=-1", "=2", "a=nan"):
        with pytest.raises(UserError, match="name=price"):
            parse_costs(bad)


def test_rank_by_cost_when_all_priced_else_by_gpu_hours_and_unserved_last():
    cheap_per_hour = _choice("x", 4, 0.10, price=1.0)  # 0.10 per Mtok
    fast = _choice("y", 2, 0.05, price=3.0)  # 0.15 per Mtok
    none = _choice("z", None, math.nan)
    assert [c.hardware for c in rank([fast, none, cheap_per_hour])] == ["x", "y", "z"]
    unpriced = [_choice("x", 4, 0.10), _choice("y", 2, 0.05, price=3.0)]
    assert [c.hardware for c in rank(unpriced)] == ["y", "x"]


def test_plan_compare_json_has_gpus_layout_and_cost(capsys):
    assert main([*ARGS, "--gpu-hour-cost", "h100-sxm=2,h200-sxm=3", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["hardware"]
    assert {r["hardware"] for r in rows} == {"h100-sxm", "h200-sxm"}
    for r in rows:
        assert r["gpus"] >= 1 and r["layout"].startswith("TP")
        assert r["cost_per_million_output_tokens"] == pytest.approx(
            r["gpu_hours_per_million_output_tokens"] * r["gpu_hour_cost"])
        assert r["output_tokens_per_second_per_gpu"] == pytest.approx(r["output_tokens_per_second"] / r["gpus"])
    costs = [r["cost_per_million_output_tokens"] for r in rows]
    assert costs == sorted(costs) and [r["rank"] for r in rows] == [1, 2]


def test_plan_compare_csv_and_table(capsys):
    assert main([*ARGS, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 2 and {"hardware", "gpus", "layout", "gpu_hours_per_million_output_tokens"} <= set(rows[0])
    assert main(ARGS) == 0
    text = capsys.readouterr().out
    assert "ranked by GPU-hours" in text and "--gpu-hour-cost" in text


def test_plan_compare_refuses_a_price_for_unlisted_hardware(capsys):
    assert main([*ARGS, "--gpu-hour-cost", "a100-sxm4-80gb=1"]) == 2
    assert "not among --hardware" in capsys.readouterr().err


def test_plan_compare_plot(tmp_path, capsys):
    from perfmodel.analysis.plots import have_matplotlib

    path = tmp_path / "cmp.png"
    assert main([*ARGS, "--plot", str(path)]) == 0
    out = capsys.readouterr().out
    if have_matplotlib():
        assert path.stat().st_size > 1000 and f"wrote {path}" in out
    else:  # the optional dependency is missing: said, not silently passed
        assert "plot skipped" in out and not path.exists()
