"""vLLM's vocabulary: sizes, performance-neutral flags, a pasted `vllm serve` line and `--config` files."""

from __future__ import annotations

import argparse
import contextlib
import io
import json

import pytest

from perfmodel.cli import main
from perfmodel.cli.vllm_flags import config_flags, expand_vllm_argv, human_readable_int


@pytest.mark.parametrize("text, value", [("4096", 4096), ("32k", 32000), ("32K", 32768), ("25.6k", 25600),
                                         ("1M", 2**20), ("2m", 2_000_000)])
def test_sizes_read_as_vllm_reads_them(text, value):
    assert human_readable_int(text) == value


@pytest.mark.parametrize("text", ["", "k", "1.5", "3.3k7", "-4k", "12 tokens"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        human_readable_int(text)


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_a_pasted_vllm_serve_command_is_understood_and_neutral_flags_listed_once():
    code, out, err = _run(["predict", "vllm", "serve", "qwen2.5-72b", "-q", "gptq", "-tp", "8", "-pp", "2",
                           "--max-model-len", "2K", "--max-num-seqs", "32", "--trust-remote-code",
                           "--served-model-name", "q", "--port", "8001", "--kv-cache-dtype", "auto",
                           "--simulate-top", "0", "--format", "json"])
    assert code == 0
    assert err.count("ignored: no effect on performance") == 1
    assert "--trust-remote-code" in err and "--served-model-name" in err and "--port" in err
    result = json.loads(out)
    assert result["model"] == "qwen2.5-72b" and result["engine"]["max_model_len"] == 2048
    assert [(p["tp"], p["pp"]) for p in result["layouts"]] == [(8, 2)]


def test_a_config_file_stands_for_its_flags_and_the_command_line_wins(tmp_path):
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("model: llama-3.1-8b\nmax-num-seqs: 64\nmax_model_len: 8k\nenforce_eager: true\n"
                   "enable-chunked-prefill: false\n")
    assert config_flags(str(cfg)) == ["--model", "llama-3.1-8b", "--max-num-seqs", "64", "--max-model-len", "8k",
                                      "--enforce-eager", "--no-enable-chunked-prefill"]
    assert expand_vllm_argv(["predict", "--config", str(cfg), "--max-num-seqs", "16"])[-2:] == ["--max-num-seqs",
                                                                                                 "16"]
    code, out, _ = _run(["predict", "--config", str(cfg), "--max-num-seqs", "16", "--hardware", "hgx-h200",
                         "--gpus", "1", "--simulate-top", "0", "--format", "json"])
    engine = json.loads(out)["engine"]
    assert code == 0 and engine["max_num_seqs"] == 16 and engine["max_model_len"] == 8000 and engine["enforce_eager"]
    assert engine["enable_chunked_prefill"] is False  # `false` in the file is honoured like the flag


def test_chunked_prefill_flags_reach_the_engine():
    base = ["predict", "--hardware", "hgx-h200", "--model", "llama-3.1-8b", "--gpus", "1", "--simulate-top", "0",
            "--format", "json"]
    on = json.loads(_run(base)[1])["engine"]
    off = json.loads(_run([*base, "--no-enable-chunked-prefill", "--max-num-batched-tokens", "128k"])[1])["engine"]
    assert on["enable_chunked_prefill"] is True and off["enable_chunked_prefill"] is False


@pytest.mark.parametrize("flags", [["--kv-cache-dtype", "fp8_e4m3"], ["--dtype", "float32"], ["--dtype", "half"],
                                   ["-q", "awq_marlin"], ["--enable-prefix-caching"]])
def test_vllm_spellings_are_accepted_or_refused_in_one_line(flags):
    code, _, err = _run(["predict", "--hardware", "hgx-h200", "--model", "llama-3.1-8b", "--gpus", "1",
                         "--simulate-top", "0", *flags])
    assert code in (0, 2)
    assert code == 0 or len(err.strip().splitlines()) == 1


def test_a_missing_config_file_is_one_line():
    code, _, err = _run(["predict", "--config", "/no/such/serve.yaml"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no such file" in err
