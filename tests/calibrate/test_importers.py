"""Importers against real vLLM benchmark outputs (tests/fixtures/vllm_results, see PROVENANCE.md there)."""
import json
from pathlib import Path

import pytest

from calibrate.records.importers import ImportFormatError, import_file
from calibrate.records.store import append_record, load_records, load_results

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "vllm_results"


def test_bench_throughput_json():
    raw = json.loads((FIX / "bench_throughput_tiny-llama_cpu.json").read_text())
    [rec] = import_file(FIX / "bench_throughput_tiny-llama_cpu.json",
                        {"model": "tiny-llama", "hardware": "cpu", "input_len": 32, "output_len": 16})
    assert rec["source"] == "imported" and rec["status"] == "ok"
    m = rec["metrics"]
    assert m["elapsed_s"] == raw["elapsed_time"] and m["num_requests"] == 8
    assert m["num_output_tokens"] == 8 * 16 and m["num_input_tokens"] == 8 * 32
    assert m["tokens_per_second"] == pytest.approx(raw["tokens_per_second"])
    assert m["output_tokens_per_second"] == pytest.approx(128 / raw["elapsed_time"])
    assert m["mean_ttft_s"] is None  # unknown stays null
    e = rec["config"]["engine"]
    assert e["model"] == "tiny-llama" and e["hardware"] == "cpu" and e["mode"] == "offline"
    assert e["max_num_seqs"] is None
    assert rec["provenance"]["imported_format"] == "vllm-bench-throughput"


def test_bench_throughput_without_lengths_leaves_tokens_unknown():
    [rec] = import_file(FIX / "bench_throughput_tiny-llama_cpu.json", {"model": "tiny-llama"})
    assert rec["metrics"]["num_output_tokens"] is None and rec["metrics"]["output_tokens_per_second"] is None


def test_bench_serve_detailed():
    path = FIX / "bench_serve_tiny-llama_cpu_rate4_detailed.json"
    raw = json.loads(path.read_text())
    [rec] = import_file(path, {"hardware": "cpu"})
    m, w = rec["metrics"], rec["config"]["workload"]
    assert rec["config"]["engine"]["model"] == raw["model_id"] and rec["config"]["engine"]["mode"] == "online"
    assert m["num_requests"] == raw["completed"] == 8
    assert m["output_tokens_per_second"] == raw["output_throughput"]
    assert m["mean_ttft_s"] == pytest.approx(raw["mean_ttft_ms"] / 1000)
    assert m["p99_itl_s"] == pytest.approx(raw["p99_itl_ms"] / 1000)
    assert m["median_e2e_s"] == pytest.approx(raw["median_e2el_ms"] / 1000) if "median_e2el_ms" in raw else True
    assert w["request_rate"] == 4 and w["num_prompts"] == 8
    assert rec["requests"]["input_lens"] == raw["input_lens"]


def test_bench_serve_closed_loop():
    [rec] = import_file(FIX / "bench_serve_tiny-llama_cpu_conc2.json")
    w = rec["config"]["workload"]
    assert w["max_concurrency"] == 2 and w["request_rate"] == "inf"
    assert rec["requests"] is None
    assert rec["metrics"]["mean_tpot_s"] > 0


def test_appended_serve_results_and_stable_ids(tmp_path):
    a = (FIX / "bench_serve_tiny-llama_cpu_conc2.json").read_text().strip()
    b = (FIX / "bench_serve_tiny-llama_cpu_rate4_detailed.json").read_text().strip()
    path = tmp_path / "appended.json"
    path.write_text(a + "\n" + b + "\n")  # what `vllm bench serve --append-result` writes
    recs = import_file(path)
    assert len(recs) == 2 and recs[0]["run_id"] != recs[1]["run_id"]
    assert [r["run_id"] for r in import_file(path)] == [r["run_id"] for r in recs]


def test_csv(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("model,hardware,tp,pp,max_num_seqs,input_len,output_len,num_prompts,elapsed_s,"
                    "output_tokens_per_second,mean_ttft_s,enforce_eager,request_rate\n"
                    "llama-3.1-8b,hgx-h200,1,1,256,1024,128,1000,50.5,2534.6,,false,inf\n"
                    "llama-3.1-8b,hgx-h200,2,1,256,1024,128,1000,30.1,4252.5,0.12,true,4\n")
    recs = import_file(path)
    assert len(recs) == 2
    e, w, m = recs[1]["config"]["engine"], recs[1]["config"]["workload"], recs[1]["metrics"]
    assert e["tensor_parallel_size"] == 2 and e["enforce_eager"] is True and e["max_num_seqs"] == 256
    assert w["request_rate"] == 4.0 and w["input_len"] == 1024
    assert m["mean_ttft_s"] == 0.12 and m["p99_ttft_s"] is None
    assert recs[0]["metrics"]["mean_ttft_s"] is None and recs[0]["config"]["workload"]["request_rate"] == "inf"
    # into the store and back as a DataFrame
    for rec in recs:
        append_record(tmp_path / "r.jsonl", rec)
    df = load_results(tmp_path / "r.jsonl")
    assert list(df["config.engine.tensor_parallel_size"]) == [1, 2]


@pytest.mark.parametrize("text, message", [
    ("model,foo\nx,1\n", "unknown column 'foo'"),
    ("model,elapsed_s\n,1\n", "model is missing"),
    ("model,input_len\nx,5\n", "no throughput"),
    ("model,elapsed_s\nx,fast\n", "elapsed_s: cannot read 'fast'"),
])
def test_csv_errors(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ImportFormatError, match=message):
        import_file(path)


def test_unknown_json_and_missing_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(ImportFormatError, match="no vLLM benchmark result"):
        import_file(path)
    with pytest.raises(ImportFormatError, match="cannot read"):
        import_file(tmp_path / "missing.json")


def test_own_records_pass_through(tmp_path):
    rec = json.loads((ROOT / "data/cpu/results.jsonl").read_text().splitlines()[0])
    append_record(tmp_path / "other.jsonl", rec)
    assert import_file(tmp_path / "other.jsonl") == [rec]
    append_record(tmp_path / "other.jsonl", {"schema_version": 1, "run_id": "abc", "status": "ok"})
    with pytest.raises(ImportFormatError, match="other.jsonl: line 2: run abc: metrics is missing"):
        import_file(tmp_path / "other.jsonl")


def test_cli_import_is_idempotent(tmp_path, capsys):
    from perfmodel.cli import main

    results = tmp_path / "r.jsonl"
    args = ["calibrate", "import", str(FIX / "bench_throughput_tiny-llama_cpu.json"),
            str(FIX / "bench_serve_tiny-llama_cpu_conc2.json"), "--results", str(results), "--model", "tiny-llama",
            "--input-len", "32", "--output-len", "16"]
    assert main(args) == 0 and main(args) == 0
    assert len(load_records(results)) == 2
    assert main(["calibrate", "import", str(tmp_path / "nope.json"), "--results", str(results)]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err
