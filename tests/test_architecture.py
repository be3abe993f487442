"""The package rules of DESIGN.md, checked on the source: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("perfmodel", "simulator", "calibrate", "hardware")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["simulator", "hardware"])
def test_leaf_packages_import_nothing_of_ours(package):
    for path in _modules(package):
        ours = {n for n in _imports(path) if n.split(".")[0] in OURS and n.split(".")[0] != package}
        assert not ours, f"{path.relative_to(ROOT)} imports {sorted(ours)}"


def test_perfmodel_library_imports_neither_calibrate_nor_argparse():
    for path in _modules("perfmodel"):
        if "cli" in path.relative_to(ROOT / "perfmodel").parts:
            continue
        bad = {n for n in _imports(path) if n.split(".")[0] in ("calibrate", "argparse")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_help_imports_no_numerical_stack():
    import subprocess
    import sys

    code = ("import sys, contextlib, io\nfrom perfmodel.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: main(['--help'])\n    except SystemExit: pass\n"
            "print(sorted(m for m in ('numpy', 'scipy', 'simpy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_the_calibration_client_runs_without_simpy():
    """calibrate/client.py runs beside vLLM on a GPU machine that has numpy but not the simulator's simpy (an
    H200 sweep's online runs failed on it): drawing the arrivals must not import simpy."""
    import subprocess
    import sys

    code = ("import sys\nsys.modules['simpy'] = None  # importing it now raises ImportError\n"
            "from calibrate.client import arrival_times\nprint(len(arrival_times(5, 2.0, 1.0, 0)))\n"
            "import simulator\nprint(sorted(n for n in ('simulate', 'SimResult') if n in dir(simulator.run)) "
            "if 'simulator.run' in sys.modules else 'no simulator.run')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5", "no", "simulator.run"]
