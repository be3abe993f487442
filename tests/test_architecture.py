"""The package rules of DESIGN.md, checked on the source: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("perfmodel", "simulator", "calibrate", "hardware")


def _imports(path: Path, *, members: bool = False) -> set[str]:
    """The absolute imports of ``path`` anywhere in it; ``members``: ``from a import b`` also as ``a.b``."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if members:
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
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
    """calibrate/run/client.py runs beside vLLM on a GPU machine that has numpy but not the simulator's simpy (an
    H200 sweep's online runs failed on it): drawing the arrivals must not import simpy."""
    import subprocess
    import sys

    code = ("import sys\nsys.modules['simpy'] = None  # importing it now raises ImportError\n"
            "from calibrate.run.client import arrival_times\nprint(len(arrival_times(5, 2.0, 1.0, 0)))\n"
            "import simulator\nprint(sorted(n for n in ('simulate', 'SimResult') if n in dir(simulator.run)) "
            "if 'simulator.run' in sys.modules else 'no simulator.run')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5", "no", "simulator.run"]


# -- the import graph: no cycles, the CLI at the edge, one composition root ------------------------------------
def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in OURS for p in _modules(package)}


def _our_imports(path: Path) -> set[str]:
    """The modules of ours that ``path`` imports anywhere (function-level imports too: a lazy import still
    couples the two files), ``from package import module`` resolved to the module."""
    return {name for name in _imports(path, members=True) if name in MODULES} - {_module_name(path)}


GRAPH = {name: _our_imports(path) for name, path in MODULES.items()}


def _is_cli(name: str) -> bool:
    return name == "perfmodel.cli" or name.startswith("perfmodel.cli.")


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (a list of nodes, the first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _package(name: str) -> str:
    return "perfmodel.cli" if _is_cli(name) else name.split(".")[0]


def test_no_import_cycle_between_files():
    # a package's __init__ re-exporting its modules is not a dependency of those modules on each other
    graph = {name: {n for n in deps if not (name == n.split(".")[0] or MODULES[name].name == "__init__.py"
                                            and n.startswith(name + "."))}
             for name, deps in GRAPH.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or ())


def test_no_import_cycle_between_packages():
    """perfmodel's CLI counts as a package of its own: the edge that imports the library and calibrate."""
    graph: dict[str, set[str]] = {}
    for name, deps in GRAPH.items():
        graph.setdefault(_package(name), set()).update(_package(d) for d in deps if _package(d) != _package(name))
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or ())
    assert "perfmodel.cli" not in set().union(*graph.values())


def test_no_library_module_imports_a_cli_module():
    for name, deps in GRAPH.items():
        if not _is_cli(name):
            assert not {d for d in deps if _is_cli(d)}, f"{name} imports {sorted(d for d in deps if _is_cli(d))}"
    for path in _modules("calibrate"):
        assert not any(n == "perfmodel.cli" or n.startswith("perfmodel.cli.") for n in _imports(path)), path


def test_only_from_options_constructs_a_scenario():
    """Every path resolves its scenario through ``Scenario.from_options`` (copies via ``dataclasses.replace``
    are the same resolution)."""
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                callee = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                assert callee != "Scenario", f"{name} line {node.lineno} constructs a Scenario"
    scenario = ast.parse(MODULES["perfmodel.scenario"].read_text())
    for cls in (n for n in scenario.body if isinstance(n, ast.ClassDef) and n.name == "Scenario"):
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                     and n.func.id == "cls"]
            assert not calls or fn.name == "from_options", f"Scenario.{fn.name} constructs a Scenario"


def test_every_user_error_is_a_user_error():
    from calibrate.records.importers import ImportFormatError
    from calibrate.run.modeldir import ModelDirError
    from calibrate.records.record_fields import RecordError
    from calibrate.run.slurm import SlurmError
    from calibrate.records.sweep import SweepError
    from hardware import HardwareError
    from hardware.spec import SpecError
    from perfmodel.errors import UserError

    for error in (HardwareError, SpecError, SweepError, ModelDirError, ImportFormatError, SlurmError, RecordError):
        assert issubclass(error, UserError), error
    names = {n.name for p in (p for pkg in OURS for p in _modules(pkg)) for n in ast.walk(ast.parse(p.read_text()))
             if isinstance(n, ast.ClassDef) and n.name.endswith("Error")}
    assert names == {"UserError", "HardwareError", "SpecError", "SweepError", "ModelDirError", "ImportFormatError",
                     "SlurmError", "RecordError"}, "a new error class: make it a UserError and list it here"
