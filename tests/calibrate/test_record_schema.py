"""``calibrate import`` refuses bad numbers and engine facts per record (file and line in the one-line error), and
``calibrate fit|check`` refuse the same records through the same schema (calibrate.records.record_schema)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from calibrate.records.record_schema import record_problem
from perfmodel.cli import main

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "vllm_results"
SERVE = json.loads((FIX / "bench_serve_tiny-llama_cpu_conc2.json").read_text())
THROUGHPUT = json.loads((FIX / "bench_throughput_tiny-llama_cpu.json").read_text())
GOOD = json.loads((ROOT / "data/cpu/results.jsonl").read_text().splitlines()[0])


def cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        return main(argv), err.getvalue()


def _import(tmp_path: Path, doc: dict, *extra: str) -> tuple[int, str, Path]:
    src = tmp_path / "bench.json"
    src.write_text("\n" + json.dumps(doc))  # the object starts on line 2
    results = tmp_path / "r.jsonl"
    code, err = cli(["calibrate", "import", str(src), "--results", str(results), "--model", "llama-3.1-8b",
                     "--input-len", "32", "--output-len", "16", *extra])
    return code, err, results


# vllm bench serve / throughput fields -> bad values (the 10 kinds of bad data and its tracebacks)
BAD_SERVE = [("duration", 0), ("duration", -3.0), ("duration", "NaN"), ("duration", "fast"),
             ("duration", [1]), ("output_throughput", -5.0), ("output_throughput", 1e308),
             ("request_throughput", "inf"), ("completed", -8), ("completed", 9), ("completed", "8"),
             ("completed", [8]), ("completed", 1e400), ("request_rate", "fast"),
             ("mean_ttft_ms", "x"), ("mean_ttft_ms", -1.0), ("mean_ttft_ms", [1]), ("total_output_tokens", -1),
             ("total_input_tokens", 10**30), ("input_lens", "abc"), ("input_lens", [None])]
BAD_THROUGHPUT = [("elapsed_time", 0), ("elapsed_time", -1), ("elapsed_time", "x"), ("elapsed_time", None),
                  ("elapsed_time", float("nan")), ("num_requests", "8"), ("num_requests", [8]),
                  ("num_requests", 10**30), ("total_num_tokens", "many"), ("total_num_tokens", -10),
                  ("tokens_per_second", -1.0), ("tokens_per_second", 1e308), ("requests_per_second", "fast")]


@pytest.mark.parametrize("doc, field, value", [(SERVE, f, v) for f, v in BAD_SERVE]
                         + [(THROUGHPUT, f, v) for f, v in BAD_THROUGHPUT],
                         ids=[f"serve-{f}={v!r}"[:40] for f, v in BAD_SERVE]
                         + [f"throughput-{f}={v!r}"[:40] for f, v in BAD_THROUGHPUT])
def test_import_refuses_bad_numbers_with_file_and_line(tmp_path, doc, field, value):
    code, err, results = _import(tmp_path, {**doc, field: value})
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "bench.json: line 2" in err, err
    assert not results.exists() or results.read_text() == ""


def test_import_refuses_tp_that_does_not_divide_the_heads(tmp_path):
    code, err, _ = _import(tmp_path, SERVE, "-tp", "3")  # llama-3.1-8b: 32 heads
    assert code == 2 and "tensor_parallel_size 3 does not divide" in err and "32 attention heads" in err


def test_import_refuses_a_model_id_that_is_not_text(tmp_path):
    src = tmp_path / "b.json"
    src.write_text(json.dumps({**SERVE, "model_id": ["a"]}))
    code, err = cli(["calibrate", "import", str(src), "--results", str(tmp_path / "r.jsonl")])
    assert code == 2 and "model_id = ['a'] is not a string" in err and "b.json: line 1" in err, err


def test_import_refuses_a_record_with_no_model(tmp_path):
    src = tmp_path / "b.json"
    src.write_text(json.dumps(THROUGHPUT))
    code, err = cli(["calibrate", "import", str(src), "--results", str(tmp_path / "r.jsonl")])
    assert code == 2 and "model is missing" in err


def test_import_refuses_garbage_own_records_and_binary_files(tmp_path):
    for doc in ({**GOOD, "metrics": "lol"}, {**GOOD, "config": {**GOOD["config"], "engine": {**GOOD["config"]["engine"], "model": None,
                                                                     "hardware": None}},
                          "model": {**GOOD["model"], "spec": None, "hardware": None}}):
        src = tmp_path / "own.jsonl"
        src.write_text(json.dumps(doc) + "\n")
        code, err = cli(["calibrate", "import", str(src), "--results", str(tmp_path / "r.jsonl")])
        assert code == 2 and "own.jsonl" in err and len(err.splitlines()) == 1, err
    binary = tmp_path / "results.bin"
    binary.write_bytes(b"\x80\x81 warnings\n" * 37)
    code, err = cli(["calibrate", "import", str(binary), "--results", str(tmp_path / "r.jsonl")])
    assert code == 2 and len(err.splitlines()) == 1 and "UTF-8" in err, err


def test_the_good_fixtures_still_import(tmp_path):
    for doc in (SERVE, THROUGHPUT):
        code, err, results = _import(tmp_path, doc)
        assert code == 0, err
        assert record_problem(json.loads(results.read_text().splitlines()[-1])) is None


@pytest.mark.parametrize("command", ["fit", "check"])
@pytest.mark.parametrize("change", [{"metrics": "lol"}, {"metrics": {**GOOD["metrics"], "elapsed_s": -1.0}},
                                    {"metrics": {**GOOD["metrics"], "output_tokens_per_second": "inf"}},
                                    {"metrics": {**GOOD["metrics"], "num_requests": 10**6}}],
                         ids=["metrics-text", "negative-elapsed", "inf-throughput", "completed>prompts"])
def test_fit_and_check_refuse_what_import_refuses(tmp_path, command, change):
    bad = {**GOOD, **change}
    assert record_problem(bad) is not None
    results = tmp_path / "r.jsonl"
    results.write_text((ROOT / "data/cpu/results.jsonl").read_text() + json.dumps(bad) + "\n")
    argv = ["calibrate", command, str(results), "--hardware", "cpu-host"]
    argv += ["--out", str(tmp_path / "p.yaml")] if command == "fit" else ["--cv", "none"]
    code, err = cli(argv)
    assert code == 2 and len(err.splitlines()) == 1 and "r.jsonl: record" in err, err


def test_every_shipped_results_file_passes_the_schema():
    from calibrate.records.store import load_records

    files = [p for p in ROOT.glob("data/**/*.jsonl")  # results files: records with a schema_version
             if any("schema_version" in r and "run_id" in r for r in load_records(p)[:1])]
    assert len(files) >= 5
    for path in files:
        for i, rec in enumerate(load_records(path), 1):
            assert record_problem(rec) is None, (path, i, record_problem(rec))
