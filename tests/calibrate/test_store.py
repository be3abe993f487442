import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from calibrate.run.runner import run_sweep
from calibrate.records.store import append_record, completed_run_ids, load_records, load_results
from calibrate.records.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "models" / "tiny-llama"
FAKE_VLLM = Path(__file__).resolve().parent / "fake_vllm"  # a fake `vllm` package for worker subprocesses


def test_append_and_load(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, {"run_id": "a", "status": "ok", "metrics": {"x": 1.0}, "requests": {"l": [1, 2]}})
    append_record(path, {"run_id": "b", "status": "error", "metrics": None})
    assert [r["run_id"] for r in load_records(path)] == ["a", "b"]
    assert completed_run_ids(path) == {"a", "b"}
    assert completed_run_ids(path, include_errors=False) == {"a"}
    df = load_results(path)
    assert list(df["run_id"]) == ["a", "b"] and df.loc[0, "metrics.x"] == 1.0
    assert "requests.l" not in df.columns


def test_torn_last_line_is_ignored_and_append_starts_fresh(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, {"run_id": "a", "status": "ok"})
    with open(path, "ab") as f:
        f.write(b'{"run_id": "torn", "sta')  # killed mid-write
    assert [r["run_id"] for r in load_records(path)] == ["a"]
    append_record(path, {"run_id": "b", "status": "ok"})
    with pytest.warns(UserWarning, match="not valid JSON"):
        ids = [r["run_id"] for r in load_records(path)]
    assert ids == ["a", "b"]


def test_latest_only_keeps_the_retry(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, {"run_id": "a", "status": "error"})
    append_record(path, {"run_id": "a", "status": "ok"})
    assert [r["status"] for r in load_records(path, latest_only=True)] == ["ok"]
    assert len(load_records(path)) == 2


def test_folder_of_results(tmp_path):
    append_record(tmp_path / "x.jsonl", {"run_id": "a", "status": "ok"})
    append_record(tmp_path / "y.jsonl", {"run_id": "b", "status": "ok"})
    assert completed_run_ids(tmp_path) == {"a", "b"}


def test_non_finite_floats_are_written_as_json(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, {"run_id": "a", "rate": float("inf")})
    assert json.loads(path.read_text())["rate"] == "inf"


# ------------------------------------------------------------------------------------------ runner, fake engine

def fake_sweep(tmp_path, seqs=(4, 8), outs=(4, 8, 16)) -> Path:
    doc = {"name": "fake", "defaults": {"model": str(TINY), "input_len": 8, "num_prompts": 2},
           "groups": [{"name": "g", "grid": {"max_num_seqs": list(seqs), "output_len": list(outs)}}]}
    path = tmp_path / "fake.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def fake_vllm_path() -> str:
    """PYTHONPATH for worker subprocesses: the fake vllm (tests/calibrate/fake_vllm) ahead of any real one."""
    return os.pathsep.join(p for p in (str(FAKE_VLLM), os.environ.get("PYTHONPATH")) if p)


@pytest.fixture
def fake_env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", fake_vllm_path())
    monkeypatch.setenv("FAKE_VLLM_DELAY_S", "0.01")


def test_runner_with_fake_engine_records_everything(tmp_path, fake_env, capsys):
    sweep = load_sweep(fake_sweep(tmp_path))
    results = tmp_path / "out" / "results.jsonl"
    summary = run_sweep(sweep, results)
    assert (summary.num_ok, summary.num_error) == (6, 0)
    records = load_records(results)
    assert sorted(r["run_id"] for r in records) == sorted(r.run_id for r in sweep.runs)
    rec = records[0]
    assert rec["status"] == "ok" and rec["source"] == "perfmodel-calibrate"
    assert rec["metrics"]["num_output_tokens"] == 2 * rec["config"]["workload"]["output_len"]
    assert rec["engine_info"]["kv_cache_tokens_log"] == 4096
    assert rec["engine_info"]["kv_cache_memory_bytes_log"] == 2**29
    assert rec["engine_info"]["kv_cache_tokens"] == 256 * 16
    assert rec["provenance"]["engine_args"]["load_format"] == "dummy"
    assert rec["provenance"]["vllm_version"] == "0.0.0+fake"  # the fake package, not an installed vLLM
    assert "calibrate.run.worker" in rec["provenance"]["command"]
    assert (results.parent / "results.jsonl.logs" / f"{rec['engine_id']}.log").exists()
    err = capsys.readouterr().err
    assert "[6/6]" in err
    # a second run skips everything
    again = run_sweep(sweep, results)
    assert again.num_skipped == 6 and again.num_ok == 0 and len(load_records(results)) == 6


def test_crashed_engine_is_recorded_and_the_sweep_goes_on(tmp_path, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_CRASH_SEQS", "4")
    sweep = load_sweep(fake_sweep(tmp_path))
    results = tmp_path / "results.jsonl"
    summary = run_sweep(sweep, results)
    assert (summary.num_ok, summary.num_error) == (3, 3)
    errors = [r for r in load_records(results) if r["status"] == "error"]
    assert len(errors) == 3
    assert all("exited with code 3" in r["error"] and "fake out of memory" in r["error"] for r in errors)
    assert all(r["config"]["engine"]["max_num_seqs"] == 4 for r in errors)
    # errors count as done unless retried
    monkeypatch.delenv("FAKE_VLLM_CRASH_SEQS")
    assert run_sweep(sweep, results).num_ok == 0
    retry = run_sweep(sweep, results, retry_errors=True)
    assert retry.num_ok == 3
    latest = load_records(results, latest_only=True)
    assert len(latest) == 6 and all(r["status"] == "ok" for r in latest)


def test_killed_sweep_resumes_without_loss_or_duplicates(tmp_path):
    sweep_path = fake_sweep(tmp_path, seqs=(4, 8), outs=(4, 8, 16, 32))
    results = tmp_path / "results.jsonl"
    env = {**os.environ, "FAKE_VLLM_DELAY_S": "0.4",
           "PYTHONPATH": os.pathsep.join((str(ROOT), str(FAKE_VLLM)))}
    cmd = [sys.executable, "-m", "perfmodel.cli", "calibrate", "run", str(sweep_path), "--results", str(results)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        n = len(load_records(results)) if results.exists() else 0
        if n >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # the runner dies at once; its worker notices and ends itself
    proc.wait()
    time.sleep(1.5)
    with open(results, "ab") as f:
        f.write(b'{"run_id": "half-writ')  # and a torn line, as if killed mid-write
    first = {r["run_id"] for r in load_records(results)}
    assert 3 <= len(first) < 8
    size = results.stat().st_size
    time.sleep(1.0)
    assert results.stat().st_size == size  # no orphan worker still writing
    subprocess.run(cmd, env=env, stderr=subprocess.DEVNULL, check=True, timeout=120)
    with pytest.warns(UserWarning):
        records = load_records(results)
    counts = collections.Counter(r["run_id"] for r in records)
    sweep = load_sweep(sweep_path)
    assert set(counts) == {r.run_id for r in sweep.runs}
    assert all(c == 1 for c in counts.values())
    assert all(r["status"] == "ok" for r in records)
