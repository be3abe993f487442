"""Inputs that expand, hang, overwrite their own input or were silently wrong: each is refused in one line (exit 2)
or gives a correct result, and the valid vLLM spellings are accepted (issue 23)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from perfmodel.cli import main

ROOT = Path(__file__).resolve().parents[1]
H200 = ["--hardware", "h200-sxm", "--model", "llama-3.1-8b", "--gpus", "1", "--simulate-top", "0"]


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def refused(argv: list[str], says: str) -> None:
    code, _, err = cli(argv)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("perfmodel: error: "), err
    assert says in err, err


LAUGHS = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
                 for p, c in zip([""] + list("abcdefgh"), "abcdefghi"))


@pytest.mark.parametrize("name, content, says", [
    ("laughs.yaml", LAUGHS, "aliases expand to more than 1,000,000"),
    ("deep.yaml", "[" * 20_000 + "]" * 20_000, "nested deeper than 64"),
    ("latin1.yaml", "model: caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("list.yaml", "- 1\n- 2\n", "expected a mapping"),
])
def test_config_files_that_expand_or_break_are_refused(tmp_path, name, content, says):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    refused(["predict", "--config", str(path), *H200], says)


def test_config_devices_and_pipes_are_refused_without_reading(tmp_path):
    refused(["predict", "--config", "/dev/zero", *H200], "not a regular file")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    refused(["predict", "--config", str(fifo), *H200], "not a regular file")  # no writer: would block forever


@pytest.mark.parametrize("flag", ["--hardware", "--model", "--calibration", "--trace"])
def test_every_file_flag_refuses_a_pipe(tmp_path, flag):
    fifo = tmp_path / ("f.json" if flag == "--model" else "f.yaml")
    os.mkfifo(fifo)
    command = "simulate" if flag == "--trace" else "predict"
    refused([command, flag, str(fifo)], "not a regular file")


def test_config_forms_vllm_users_write(tmp_path):
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("model: llama-3.1-8b\nenable-chunked-prefill: false\nmax-num-seqs: 64\n")
    base = ["--hardware", "h200-sxm", "--gpus", "1", "--simulate-top", "0", "--format", "json"]
    for argv in (["predict", f"--config={cfg}", *base], ["predict", "vllm", "serve", "--config", str(cfg), *base],
                 ["predict", "vllm", "serve", "--model", "llama-3.1-8b", "--config", str(cfg), *base]):
        code, out, err = cli(argv)
        assert code == 0, (argv, err)
        doc = json.loads(out)
        assert doc["model"] == "llama-3.1-8b" and doc["engine"]["max_num_seqs"] == 64
        assert doc["engine"]["enable_chunked_prefill"] is False
    code, out, _ = cli(["predict", "vllm", "serve", "--model", "qwen2.5-7b", *base])
    assert code == 0 and json.loads(out)["model"] == "qwen2.5-7b"
    refused(["predict", "vllm", "serve", *base], "vllm serve needs a model")
    refused(["predict", "vllm", "serve"], "vllm serve needs a model")


def test_outputs_never_overwrite_inputs(tmp_path):
    trace = tmp_path / "T.csv"
    trace.write_text("arrival_s,input_len,output_len\n0,16,8\n")
    before = trace.read_text()
    refused(["simulate", "--hardware", "h200-sxm", "--model", "llama-3.1-8b", "--trace", str(trace),
             "--timeline", str(trace)], "would overwrite the input --trace")
    refused(["simulate", "--hardware", "h200-sxm", "--model", "llama-3.1-8b", "--trace", str(trace),
             "--timeline", str(tmp_path / "T.csv").replace("T.csv", "./T.csv")], "would overwrite")
    bench = tmp_path / "X.json"
    shutil.copy(ROOT / "tests/fixtures/vllm_results/bench_serve_tiny-llama_cpu_conc2.json", bench)
    copy = bench.read_bytes()
    refused(["calibrate", "import", str(bench), "--results", str(bench), "--model", "tiny-llama"],
            "would overwrite the input")
    assert trace.read_text() == before and bench.read_bytes() == copy


@pytest.mark.parametrize("target, says", [("{tmp}/missing/x.sbatch", "does not exist"), ("{tmp}", "is a folder"),
                                          ("/proc/self/x", "/proc/"), ("/dev/full", "/dev/"), ("", "expected a file")])
def test_emit_sbatch_output_paths_are_checked(tmp_path, target, says):
    refused(["predict", *H200[:4], "--hardware", "taiwania2", "--gpus", "8", "--emit-sbatch",
             target.format(tmp=tmp_path)], says)


@pytest.mark.parametrize("argv, says", [
    (["simulate", *H200[:4], "--request-rate", "1e-300"], "--request-rate"),
    (["simulate", *H200[:4], "--batching", "static", "--kv-offload", "-pp", "2"], "--batching static"),
    (["predict", *H200, "--vllm-version", "99.0"], "newer than 0.30"),
    (["predict", *H200, "--time", "nan", "--emit-sbatch", "x.sbatch"], "--time"),
    (["plan", *H200[:4], "--request-rate", "1", "--num-prompts", "2000000"], "more than 100,000"),
], ids=["rate-1e-300", "static-offload", "vllm-99", "time-nan", "plan-2M-prompts"])
def test_silently_wrong_inputs_are_refused(argv, says):
    refused(argv, says)


@pytest.mark.parametrize("arrival", ["1e308", "-1e308"])  # the trace starts at its first arrival
def test_trace_arrival_past_the_limit(tmp_path, arrival):
    trace = tmp_path / "t.csv"
    trace.write_text(f"arrival_s,input_len,output_len\n0,16,8\n{arrival},16,8\n")
    refused(["simulate", *H200[:4], "--trace", str(trace)], "arrivals are limited to 0 to 1e+09 s")


def test_config_files_cannot_chain_or_repeat(tmp_path):
    inner, outer = tmp_path / "inner.yaml", tmp_path / "outer.yaml"
    inner.write_text("max-num-seqs: 8\n")
    outer.write_text(f"config: {inner}\n")
    refused(["predict", "--config", str(outer), *H200], "cannot name another")
    refused(["predict", "--config", str(inner), "--config", str(inner), *H200], "more than once")


def test_mixtral_with_no_experts_is_not_predicted_as_dense(tmp_path):
    config = json.loads((ROOT / "perfmodel/catalog/mixtral-8x7b.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_local_experts": 0}))
    refused(["predict", "--model", str(tmp_path), "--hardware", "h200-sxm", "--gpus", "8"], "num_local_experts")


def test_hf_cache_ref_that_is_not_text(tmp_path, monkeypatch):
    repo = tmp_path / "models--org--m"
    (repo / "refs").mkdir(parents=True)
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "refs" / "main").write_bytes(b"\xff\xfe\x00garbage")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    refused(["predict", "--model", "org/m", "--hardware", "h200-sxm", "--gpus", "1"], "not a revision")


def test_plan_exits_1_when_no_layout_sustains_the_load():
    code, out, err = cli(["plan", "--hardware", "h200-sxm", "--model", "llama-3.1-8b", "--request-rate", "1000",
                          "--gpus-max", "1", "--num-prompts", "200", "--input-len", "16", "--output-len", "8",
                          "--workers", "1", "--ttft-p99", "0.001"])
    assert code == 1, (out, err)
    assert "status (decides)" in out and "status decides:" in out


def test_calibrate_dry_run_refuses_impossible_engines(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\ndefaults: {hardware: h200-sxm}\ngroups:\n  - {name: g, model: llama-3.1-70b, "
                     "tensor_parallel_size: 3, input_len: 16, output_len: 8, num_prompts: 4}\n")
    refused(["calibrate", "run", str(sweep), "--results", str(tmp_path / "r.jsonl"), "--dry-run"],
            "does not divide")
    sweep.write_text(sweep.read_text().replace("llama-3.1-70b", "no-such-model").replace(
        "tensor_parallel_size: 3", "tensor_parallel_size: 1"))
    refused(["calibrate", "run", str(sweep), "--results", str(tmp_path / "r.jsonl"), "--dry-run"],
            "unknown model")


@pytest.mark.parametrize("lengths, says", [(128, "calibrate predict simulates at most 10,000"),
                                           (2450, "a sweep holds at most 100,000")], ids=["16k runs", "6M runs"])
def test_calibrate_predict_refuses_huge_grids_up_front(tmp_path, lengths, says):
    import time

    sweep = tmp_path / "grid.yaml"
    values = list(range(1, lengths + 1))
    sweep.write_text(f"name: g\ndefaults: {{hardware: h200-sxm}}\ngroups:\n  - name: g\n    model: llama-3.1-8b\n"
                     f"    num_prompts: 4\n    grid: {{input_len: {values}, output_len: {values}}}\n")
    start = time.monotonic()
    refused(["calibrate", "predict", str(sweep), "--hardware", "h200-sxm", "--out", str(tmp_path / "p.jsonl")],
            says)
    assert time.monotonic() - start < 30  # refused before simulating (16k runs took ~5 minutes)


def test_a_write_that_fails_after_the_checks_is_one_line(tmp_path, monkeypatch):
    """A read-only filesystem or a full disk (root passes every permission check): one line, not a traceback."""
    import errno

    import perfmodel.atomic

    def read_only(path, text):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(perfmodel.atomic, "write_text_atomic", read_only)
    refused(["predict", "--hardware", "taiwania2", "--model", "llama-3.1-8b", "--gpus", "8", "-tp", "8",
             "--simulate-top", "0", "--emit-sbatch", str(tmp_path / "x.sbatch")], "Read-only file system")


def test_calibrate_predict_refuses_an_unknown_vllm_release(tmp_path):
    refused(["calibrate", "predict", str(ROOT / "sweeps/cpu-tiny.yaml"), "--hardware", "h200-sxm", "--out",
             str(tmp_path / "p.jsonl"), "--vllm-version", "99.0"], "newer than 0.30")


def test_a_model_folder_whose_config_is_a_pipe(tmp_path):
    os.mkfifo(tmp_path / "config.json")
    refused(["predict", "--model", str(tmp_path), "--hardware", "h200-sxm", "--gpus", "1"], "no config.json")


@pytest.mark.parametrize("argv", [["simulate", "-tp", "2", "--request-rate", "8"], ["compare"]],
                         ids=["simulate-tp2", "bare-compare"])
def test_a_layout_that_does_not_fit_names_the_smallest_that_does(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(argv, "the smallest layout that fits is -tp 8 -pp 1")  # the 70B default on one V100 node


def test_predict_help_shows_config_and_the_pasted_serve_form():
    code, out, _ = cli(["predict", "--help"])
    assert code == 0 and "--config FILE.yaml" in out and "perfmodel predict vllm serve MODEL" in out
    code, out, _ = cli(["--version"])
    assert code == 0 and out.startswith("perfmodel ")
