"""benchmarks/anchors/engine_loop_spin.py runs and says how much the engine loop's spin slows a thread's torch ops."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "anchors" / "engine_loop_spin.py"


def test_the_spin_benchmark_runs_and_reports_both_workloads(capsys):
    spec = importlib.util.spec_from_file_location("engine_loop_spin", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--ops", "50", "--reps", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == ["torch ops", "pure Python"]
    assert "us more per op" in out[0] and "with the spin" in out[1]
