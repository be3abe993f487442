"""One test per class of bad input of issue 11: each is refused with exit 2 and one line saying what is wrong.

Classes: binary/non-UTF-8 files; a folder for a file and the reverse; unreadable inputs and unwritable outputs;
non-finite and out-of-range numbers; limits on work (refused up front, no hang); cross-field rules vLLM enforces;
file syntax with file and line; argparse's own errors. The fuzz test (tests/test_fuzz.py) covers the rest.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pytest

from perfmodel.cli import main
from perfmodel.cli.validate import check_text, integer, real
from perfmodel.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--hardware", "h200-sxm", "--model", "llama-3.1-8b", "--num-prompts", "10", "--input-len", "16",
         "--output-len", "8"]
SWEEP = """name: v
defaults: {dummy_weights: true, max_model_len: 512, hardware: h200-sxm}
groups:
  - {name: g, model: MODEL, input_len: 16, output_len: 8, num_prompts: 4}
"""
RESULTS = str(ROOT / "data/cpu/results.jsonl")


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    """Run ``argv``; assert exit 2 and exactly one stderr line holding every needle; return it."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfmodel: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def sweep(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.replace("MODEL", "llama-3.1-8b"))
    return path


# 1. binary and non-UTF-8 files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, needle", [(bytes(range(256)), "binary file"),
                                             ("name: caf\xe9\n".encode("latin-1"), "not UTF-8")])
@pytest.mark.parametrize("argv", [
    ["predict", "--model", "{f}"], ["predict", "--hardware", "{f}"], ["predict", "--calibration", "{f}"],
    ["simulate", *SMALL, "--trace", "{f}"], ["calibrate", "fit", RESULTS, "--hardware", "cpu-host", "--prior", "{f}"],
    ["calibrate", "fit", "{f}", "--hardware", "cpu-host"], ["calibrate", "predict", "{f}", "--hardware", "h200-sxm",
                                                             "--out", "{out}"],
    ["calibrate", "run", "{f}", "--results", "{out}", "--dry-run"], ["calibrate", "import", "{f}", "--results", "{out}"],
    ["calibrate", "slurm", "{f}", "--cluster", "taiwania2", "--account", "a", "--partition", "p", "--out", "{dir}"],
    ["calibrate", "check", RESULTS, "--hardware", "cpu-host", "--notes", "{f}"],
], ids=lambda a: " ".join(x for x in a[:3] if not x.startswith("/")))
def test_binary_or_non_utf8_file_is_one_line(capsys, tmp_path, argv, content, needle):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(content)
    names = {"f": str(bad), "out": str(tmp_path / "o.jsonl"), "dir": str(tmp_path / "d")}
    one_line_error(capsys, [a.format(**names) for a in argv], str(bad), needle)


# 2. a folder where a file goes, and a file where a folder goes ------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["predict", "--calibration", "{dir}"], "is a folder"),
    (["calibrate", "run", "{dir}", "--results", "{out}"], "is a folder"),
    (["calibrate", "run", "{sweep}", "--results", "{dir}"], "is a folder"),
    (["calibrate", "fit", RESULTS, "--hardware", "cpu-host", "--out", "{dir}"], "is a folder"),
    (["calibrate", "predict", "{sweep}", "--hardware", "h200-sxm", "--out", "{dir}"], "is a folder"),
    (["calibrate", "slurm", "{sweep}", "--cluster", "taiwania2", "--account", "a", "--partition", "p",
      "--out", "{file}"], "is a file"),
    (["simulate", *SMALL, "--trace", "{dir}"], "is a folder"),
    (["simulate", *SMALL, "--timeline", "{dir}"], "is a folder"),
])
def test_folder_for_file_and_file_for_folder(capsys, tmp_path, sweep, argv, needle):
    names = {"dir": str(tmp_path), "file": str(sweep), "sweep": str(sweep), "out": str(tmp_path / "r.jsonl")}
    one_line_error(capsys, [a.format(**names) for a in argv], needle)


# 3. unreadable inputs, unwritable outputs (os.access as a non-root user would answer it) --------------------------
@pytest.mark.parametrize("argv, needle", [
    (["predict", "--calibration", str(ROOT / "perfmodel/profiles/h200-sxm.yaml")], "not readable"),
    (["calibrate", "fit", RESULTS, "--hardware", "cpu-host", "--out", "{tmp}/p.yaml"], "not writable"),
    (["calibrate", "run", "{tmp}/s.yaml", "--results", "{tmp}/new/r.jsonl"], "does not exist"),
    (["calibrate", "slurm", "{tmp}/s.yaml", "--cluster", "taiwania2", "--account", "a", "--partition", "p",
      "--out", "{tmp}/jobs"], "not writable"),
])
def test_unreadable_input_or_unwritable_output(capsys, monkeypatch, tmp_path, argv, needle):
    (tmp_path / "s.yaml").write_text(SWEEP.replace("MODEL", "llama-3.1-8b"))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).endswith(("h200-sxm.yaml", str(tmp_path)))
                        else real_access(p, mode))
    one_line_error(capsys, [a.format(tmp=tmp_path) for a in argv], needle)


# 4. numbers: non-finite, negative, out of range, not integral ------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["simulate", *SMALL, "--output-sigma", "nan"], "--output-sigma: expected a finite number"),
    (["simulate", *SMALL, "--output-dist", "lognormal", "--output-sigma", "50"], "from 0 to 2"),
    (["simulate", *SMALL, "--output-dist", "normal", "--output-sigma", "1.5"], "from 0 to 1 for normal"),
    (["simulate", *SMALL, "--seed", "-1"], "--seed: expected an integer from 0"),
    (["simulate", *SMALL, "--request-rate", "nan"], "--request-rate"),
    (["predict", "--gpu-memory-utilization", "inf"], "--gpu-memory-utilization"),
    (["predict", "--input-len", "1.5"], "--input-len: expected an integer"),
    (["calibrate", "fit", RESULTS, "--hardware", "cpu-host", "--regularization", "nan"], "--regularization"),
    (["calibrate", "fit", RESULTS, "--hardware", "cpu-host", "--regularization", "-1"], "from 0"),
    (["calibrate", "run", "{sweep}", "--results", "{out}", "--engine-timeout", "-5"], "--engine-timeout"),
    (["calibrate", "import", "{sweep}", "--results", "{out}", "-tp", "-1"], "-tp: expected an integer from 1"),
    (["calibrate", "slurm", "{sweep}", "--cluster", "taiwania2", "--account", "a b", "--partition", "p",
      "--out", "{dir}"], "SLURM account/partition names"),
])
def test_bad_number_names_the_flag_and_the_limit(capsys, tmp_path, sweep, argv, needle):
    names = {"sweep": str(sweep), "out": str(tmp_path / "r.jsonl"), "dir": str(tmp_path / "jobs")}
    one_line_error(capsys, [a.format(**names) for a in argv], needle)


def test_validators_state_their_limits():
    with pytest.raises(argparse.ArgumentTypeError, match="from 1 to 8, got '9'"):
        integer(1, 8)("9")
    with pytest.raises(argparse.ArgumentTypeError, match=r"> 0 and <= 1"):
        real(0, 1, low_open=True)("0")
    assert real(0, allow_inf=True, low_open=True)("inf") == float("inf")
    assert integer(0)("12") == 12


# 5. work that would not fit in memory or time is refused up front --------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["predict", "--gpus", "99999999999999999999"], "from 1 to 65,536"),
    (["predict", "--num-prompts", "1000000000"], "from 1 to 2,000,000"),
    (["simulate", *SMALL, "--num-prompts", "1000000000"], "2,000,000"),
    (["plan", *SMALL, "--request-rate", "1", "--workers", "100000"], "--workers"),
    (["predict", "--hardware", "h200-sxm", "--model", "llama-3.1-8b", "--gpus", "1000000"], "65,536"),
    (["predict", "--hardware", "h200-sxm", "--model", "llama-3.1-8b", "--gpus", "64"], "has 8 GPUs"),
    (["predict", "--max-model-len", "99999999999"], "--max-model-len"),
])
def test_limits_are_refused_up_front(capsys, argv, needle):
    start = time.monotonic()
    one_line_error(capsys, argv, needle)
    assert time.monotonic() - start < 10


def test_plan_library_refuses_too_many_workers():
    from perfmodel.analysis.plan import plan_capacity

    with pytest.raises(UserError, match="--workers must be from 1 to"):
        plan_capacity(request_rate=1.0, gpus_max=1, workers=100_000, num_prompts=10, model="llama-3.1-8b",
                      hardware="h200-sxm", input_len=16, output_len=8)


# 6. cross-field rules vLLM enforces ------------------------------------------------------------------------------
def test_prompt_plus_output_longer_than_max_model_len(capsys):
    for command in (["predict", "--gpus", "1"], ["simulate"], ["plan", "--request-rate", "1", "--workers", "1"]):
        one_line_error(capsys, [*command, "--hardware", "h200-sxm", "--model", "llama-3.1-8b", "--max-model-len",
                                "512", "--input-len", "1000", "--output-len", "10"], "exceeds max_model_len 512")


def test_more_gpus_than_the_hardware_has(capsys):
    one_line_error(capsys, ["predict", "--hardware", "hgx-h200", "--model", "llama-3.1-8b"], "hgx-h200 has 8 GPUs")
    one_line_error(capsys, ["simulate", *SMALL, "-dp", "16"], "h200-sxm has 8 GPUs")
    one_line_error(capsys, ["simulate", "-tp", "8", "-dp", "4"], "at most 16 GPUs")


def test_slurm_jobs_only_for_clusters_with_limits(capsys, tmp_path, sweep):
    one_line_error(capsys, ["calibrate", "slurm", sweep, "--cluster", "h200-sxm", "--account", "a", "--partition",
                            "p", "--out", tmp_path / "jobs"], "no SLURM limits")
    assert not (tmp_path / "jobs").exists()


def test_calibrate_predict_names_the_layout_that_does_not_fit(capsys, tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(SWEEP.replace("MODEL", "llama-2-70b").replace("512", "4096"))
    one_line_error(capsys, ["calibrate", "predict", path, "--hardware", "h200-sxm", "--out", tmp_path / "p.jsonl"],
                   "TP1 PP1 DP1 of llama-2-70b on h200-sxm does not fit", "weights")


def test_check_report_creates_no_folders(capsys, tmp_path):
    report = tmp_path / "no" / "such" / "r.md"
    one_line_error(capsys, ["calibrate", "check", RESULTS, "--hardware", "cpu-host", "--report", report],
                   "does not exist")
    one_line_error(capsys, ["calibrate", "check", RESULTS, "--hardware", "cpu-host", "--report", tmp_path / "nodir"],
                   "folders are not created")
    assert not (tmp_path / "no").exists() and not (tmp_path / "nodir").exists()


# 7. file syntax and schema, with file and line ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt, text, needle", [
    ("yaml", "name: x\ngroups:\n  - [unclosed\n", "malformed YAML at line 4"),
    ("yaml", "[" * 100 + "]" * 100, "nested deeper than 64"),
    ("json", '{\n"a": 1,\n"b": }', "malformed JSON at line 3"),
    ("json", '{"a": ' * 5000 + "1" + "}" * 5000, "nested deeper"),
    ("jsonl", '{"a": 1}\n{"b": oops}\n{"c": 3}\n', "malformed JSON at line 2"),
    ("csv", "a,b,c\n1,2,3\n4,5\n", "malformed CSV at line 3"),
])
def test_file_syntax_errors_say_where(fmt, text, needle):
    assert needle in check_text(text.encode(), fmt)


def test_jsonl_tolerates_a_torn_last_line():
    assert check_text(b'{"a": 1}\n{"b": 2', "jsonl") is None


@pytest.mark.parametrize("argv, content, needle", [
    (["predict", "--hardware", "{f}.yaml"], "gpu: [\n", "malformed YAML at line 2"),
    (["predict", "--model", "{f}.json"], '{"hidden_size": 1,\n}', "malformed JSON at line 2"),
    (["predict", "--model", "{f}.json"], "[1, 2]", "expected a JSON object"),
    (["calibrate", "run", "{f}.yaml", "--results", "{f}.jsonl", "--dry-run"], "groups: 3\n", "groups"),
    (["calibrate", "import", "{f}.json", "--results", "{f}.jsonl"], '{"a": ' * 2000 + "1" + "}" * 2000, "nested"),
    (["simulate", *SMALL, "--trace", "{f}.csv"], "arrival_s,input_len,output_len\n1e999,3,4\n", "finite"),
])
def test_file_contents_refused_with_the_file(capsys, tmp_path, argv, content, needle):
    f = tmp_path / "in"
    for suffix in (".yaml", ".json", ".csv"):
        Path(f"{f}{suffix}").write_text(content)
    one_line_error(capsys, [a.format(f=f) for a in argv], str(f), needle)


# 8. argparse's own errors are one line too -----------------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["predict", "--gpus", "sixteen"], "--gpus: expected an integer"),
    (["predict", "--dtype", "float64"], "invalid choice"),
    (["plan"], "required: --request-rate"),
    (["calibrate", "fit", RESULTS], "required: --hardware"),
    (["calibrate"], "required"),
    (["nosuchcommand"], "invalid choice"),
    (["simulate", "--no-such-flag"], "unrecognized arguments"),
    ([], "required"),
])
def test_argparse_errors_are_one_line(capsys, argv, needle):
    line = one_line_error(capsys, argv, needle)
    assert "--help" in line and "usage:" not in line
