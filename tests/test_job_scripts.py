"""Job scripts are code: hostile values given to every script writer (``predict --emit-sbatch`` and ``calibrate
slurm``) are refused in one line or written so that ``bash -n`` accepts the script and nothing in them runs.

"Nothing runs" is proven by running each written script under bash with stub ``srun``, ``ray``, ``vllm``,
``scontrol``, ``ip``, ``module``, ``python`` and ``sleep`` on PATH (no SLURM, Ray or vLLM needed): every hostile
value carries a payload that would create a marker file through ``$(...)`` or backticks, and no marker appears.
``--env-setup`` is shell by intent (``source venv/bin/activate``): it must parse (``bash -n``) or is refused.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from perfmodel.cli import main

ROOT = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")  # bash is on every CI image we use

STUBS = {  # enough of each tool for the scripts to run to their end
    "srun": "exit 0", "vllm": "exit 0", "python": "exit 0", "module": "exit 0", "sleep": "exit 0",
    "sbatch": "exit 0", "ray": 'if [ "$1" = status ]; then echo " 0.0/64.0 GPU"; fi; exit 0',
    "scontrol": 'echo node1; echo node2', "ip": 'echo "2: ib0    inet 10.0.0.1/24 brd 10.0.0.255"',
}


def hostile(marker: Path) -> list[str]:
    """Values a user might paste by mistake or an attacker on purpose: newline, quotes, $(...), backticks. The
    payload touches "$PWN" (the marker's path, set when the script runs), so it also fits in a file name."""
    del marker  # the payload names it through $PWN
    touch = 'touch "$PWN"'
    return [f"a$({touch})", f"a`{touch}`", f"a'$({touch})'", f'a"$({touch})"', f"a\n#SBATCH --mem=1\n{touch}",
            'ib0$(touch${IFS}"$PWN")', 'ib0`touch${IFS}"$PWN"`', "a b", "'", '"', f"a;{touch}", f"${{x:-$({touch})}}", "", "a\tb", "a\\"]


def cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


@pytest.fixture
def stubs(tmp_path) -> Path:
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def run_script(script: Path, stub_dir: Path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{stub_dir}:/usr/bin:/bin", "PWN": str(stub_dir.parent / "PWNED"), "SLURM_CPUS_PER_TASK": "32", "SLURM_JOB_NODELIST": "node[1-2]",
           "SLURM_ARRAY_TASK_ID": "0", "HOME": str(script.parent)}
    return subprocess.run([BASH, str(script)], env=env, capture_output=True, timeout=60, cwd=script.parent)


def assert_safe(code: int, err: str, scripts: list[Path], marker: Path, stub_dir: Path, what: str) -> str:
    """Refused in one line, or every script passes ``bash -n`` and runs without creating the marker."""
    if code == 2:
        assert len(err.splitlines()) == 1 and err.startswith("perfmodel: error: "), (what, err)
        return "refused"
    assert code == 0, (what, code, err)
    assert scripts, what
    for script in scripts:
        syntax = subprocess.run([BASH, "-n", str(script)], capture_output=True)
        assert syntax.returncode == 0, (what, script.read_text(), syntax.stderr)
        run = run_script(script, stub_dir)
        # a hostile --python is one quoted word: the job runs a program of that name, which does not exist
        missing_program = what.startswith("--python") and run.returncode == 127
        assert run.returncode == 0 or missing_program, (what, script.read_text(), run.stderr.decode())
        assert "#SBATCH --mem" not in script.read_text(), what
    assert not marker.exists(), (what, [s.read_text() for s in scripts])
    return "written"


PREDICT = ["predict", "--hardware", "taiwania2", "--model", "llama-3.1-8b", "--num-prompts", "10", "--input-len",
           "16", "--output-len", "8", "--simulate-top", "0"]
LAYOUTS = {"one node": ["--gpus", "8", "-tp", "8"], "two nodes, Ray": ["--gpus", "16", "-tp", "8", "-pp", "2"],
           "replicas over two nodes": ["--gpus", "16", "-tp", "4"]}
PREDICT_FLAGS = ("--account", "--partition", "--network-interface", "--module", "--env-setup")


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("flag", PREDICT_FLAGS)
def test_emit_sbatch_hostile_values_never_run(tmp_path, stubs, layout, flag):
    marker = tmp_path / "PWNED"
    outcomes = []
    for i, value in enumerate(hostile(marker)):
        out = tmp_path / f"job{i}.sbatch"
        code, err = cli([*PREDICT, *LAYOUTS[layout], "--emit-sbatch", str(out), flag, value])
        if flag == "--env-setup" and code == 0:  # shell by intent: it parses, and it is what the user asked to run
            assert subprocess.run([BASH, "-n", str(out)]).returncode == 0
            continue
        outcomes.append(assert_safe(code, err, [out] if out.exists() else [], marker, stubs, f"{flag}={value!r}"))
    assert "refused" in outcomes or flag == "--env-setup"


def test_emit_sbatch_hostile_paths_are_quoted(tmp_path, stubs):
    """A model folder and a job-script folder whose names hold every hostile character: written, quoted, inert."""
    marker = tmp_path / "PWNED"
    for i, name in enumerate(v for v in hostile(marker) if v and "\n" not in v and "\t" not in v):
        folder = tmp_path / f"d{i} {name}"
        folder.mkdir()
        shutil.copy(ROOT / "perfmodel/catalog/llama-3.1-8b.json", folder / "config.json")
        for layout in LAYOUTS.values():
            out = folder / "job.sbatch"
            argv = [*PREDICT, *layout, "--model", str(folder), "--emit-sbatch", str(out)]
            assert assert_safe(*cli(argv), [out], marker, stubs, f"folder {name!r}") == "written"


def test_emit_sbatch_refuses_a_newline_in_its_path(tmp_path):
    folder = tmp_path / "a\n#SBATCH --mem=1"
    folder.mkdir()
    code, err = cli([*PREDICT, "--gpus", "8", "--emit-sbatch", str(folder / "job.sbatch")])
    assert code == 2 and "control character" in err and not (folder / "job.sbatch").exists()


SWEEP = """name: hostile
defaults: {dummy_weights: true, max_model_len: 512, hardware: h200-sxm}
groups:
  - {name: one, model: llama-3.1-8b, grid: {tensor_parallel_size: [1, 8]}, input_len: 16, output_len: 8, num_prompts: 4}
  - {name: two, model: llama-3.1-8b, tensor_parallel_size: 8, pipeline_parallel_size: 2, input_len: 16,
     output_len: 8, num_prompts: 4}
"""
SLURM_FLAGS = ("--account", "--partition", "--network-interface", "--module", "--python", "--env-setup")


def _slurm(tmp_path: Path, out: Path, *extra: str) -> tuple[int, str, list[Path]]:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP)
    base = {"--account": "acct", "--partition": "gp4d"}
    for k, v in zip(extra[::2], extra[1::2]):
        base[k] = v
    argv = ["calibrate", "slurm", str(sweep), "--cluster", "taiwania2", "--out", str(out),
            *[x for kv in base.items() for x in kv], *(["--array"] if "array" in out.name else [])]
    code, err = cli(argv)
    scripts = sorted(out.glob("*.sbatch")) + ([out / "submit.sh"] if (out / "submit.sh").exists() else [])
    return code, err, scripts


@pytest.mark.parametrize("array", [False, True], ids=["one job each", "job arrays"])
@pytest.mark.parametrize("flag", SLURM_FLAGS)
def test_calibrate_slurm_hostile_values_never_run(tmp_path, stubs, flag, array):
    marker = tmp_path / "PWNED"
    outcomes = []
    for i, value in enumerate(hostile(marker)):
        out = tmp_path / f"jobs{i}{'-array' if array else ''}"
        code, err, scripts = _slurm(tmp_path, out, flag, value)
        if flag == "--env-setup" and code == 0:  # shell by intent: it must parse
            assert all(subprocess.run([BASH, "-n", str(s)]).returncode == 0 for s in scripts)
            continue
        outcomes.append(assert_safe(code, err, scripts, marker, stubs, f"{flag}={value!r}"))
    assert "refused" in outcomes or flag == "--env-setup"


@pytest.mark.parametrize("array", [False, True], ids=["one job each", "job arrays"])
def test_calibrate_slurm_hostile_out_folder_is_quoted(tmp_path, stubs, array):
    marker = tmp_path / "PWNED"
    for i, name in enumerate(v for v in hostile(marker) if v and "\n" not in v and "\t" not in v):
        out = tmp_path / f"o{i} {name}{'-array' if array else ''}"
        code, err, scripts = _slurm(tmp_path, out)
        assert code == 0, err
        assert assert_safe(code, err, scripts, marker, stubs, f"--out {name!r}") == "written"
        assert len(scripts) == (3 if array else 4)  # 2 node counts (array) or 3 engines, and submit.sh


def test_the_ray_block_refuses_an_interface_that_would_need_quoting():
    from perfmodel.deploy.sbatch import ray_block

    with pytest.raises(ValueError, match="interface name"):
        ray_block(gpus_per_node=8, total_gpus=16, network_interface="ib0$(id)")


def test_a_job_spec_refuses_hostile_names_in_the_library_too():
    from perfmodel.deploy.sbatch import JobSpec

    for bad in ({"account": "a\nb"}, {"partition": "p q"}, {"modules": ("x;y",)}, {"output": "a\nb"},
                {"time_s": float("nan")}, {"env": {"A B": "1"}}):
        with pytest.raises(ValueError):
            JobSpec(**{"name": "j", "nodes": 1, "gpus_per_node": 1, "cpus_per_task": 1, "time_s": 60.0,
                       "output": "x.out", **bad})


def test_a_percent_in_the_log_folder_is_literal_for_sbatch(tmp_path):
    folder = tmp_path / "50%x"
    folder.mkdir()
    out = folder / "job.sbatch"
    assert cli([*PREDICT, "--gpus", "8", "-tp", "8", "--emit-sbatch", str(out)])[0] == 0
    assert f'#SBATCH --output="{tmp_path}/50%%x/%x-%j.out"' in out.read_text()


def test_a_sweep_name_of_any_text_makes_plain_job_names(tmp_path, stubs):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP.replace("name: hostile", 'name: "café $(touch \\"$PWN\\")\\n`x`"'))
    out = tmp_path / "jobs"
    code, err = cli(["calibrate", "slurm", str(sweep), "--cluster", "taiwania2", "--account", "a", "--partition",
                     "p", "--out", str(out)])
    scripts = sorted(out.glob("*.sbatch")) + [out / "submit.sh"]
    assert assert_safe(code, err, scripts, tmp_path / "PWNED", stubs, "sweep name") == "written"
