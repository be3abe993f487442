"""calibrate.records.record against every real results file and vLLM benchmark fixture of the repository."""
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from calibrate.records.engine_spec import _SWEEP_DEFAULTS, EngineSpec
from calibrate.records.importers import _import_file, import_file
from calibrate.records.record_fields import record_keys
from calibrate.records.record import (EngineInfo, Measurements, ModelRef, Provenance, RecordError, RequestLog,
                               WorkloadSpec, parse_record)
from calibrate.records.sweep import LengthDist
from calibrate.run.worker_record import make_record

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "vllm_results"
RESULTS = sorted((ROOT / "data").glob("h200/*.jsonl")) + [ROOT / "data" / "h200-holdout" / "results.jsonl",
                                                          ROOT / "data" / "cpu" / "results.jsonl"]


def real_records() -> list[dict]:
    out = [json.loads(line) for path in RESULTS for line in path.read_text().splitlines() if line.strip()]
    for path in sorted(FIX.glob("*.json")):
        unchecked, _ = _import_file(path, None)  # nulls everywhere the file is silent (import itself refuses: no model)
        out += unchecked + import_file(path, {"model": "llama-3.1-8b", "input_len": 32, "output_len": 16})
    return out


RECORDS = real_records()
SECTIONS = [(EngineSpec, ("config", "engine"), lambda r: r.run.engine),
            (WorkloadSpec, ("config", "workload"), lambda r: r.run.workload),
            (EngineInfo, ("engine_info",), lambda r: r.engine_info),
            (Measurements, ("metrics",), lambda r: r.measurements),
            (Provenance, ("provenance",), lambda r: r.provenance)]


def _raw_section(raw, path):
    for key in path:
        raw = raw.get(key) or {}
    return raw


def test_the_real_files_are_all_there():
    assert len(RECORDS) == 86 + 2 * 3  # data/ records, and the 3 fixture results imported twice
    assert {r["source"] for r in RECORDS} == {"perfmodel-calibrate", "imported"}


@pytest.mark.parametrize("raw", RECORDS, ids=lambda r: r["run_id"])
def test_every_field_round_trips(raw):
    rec = parse_record(raw)
    assert (rec.run_id, rec.status, rec.engine_id, rec.error) == (raw["run_id"], raw["status"], raw["engine_id"],
                                                                 raw["error"])
    for cls, path, get in SECTIONS:
        section = _raw_section(raw, path)
        for f in dataclasses.fields(cls):
            if "convert" not in f.metadata:
                continue
            value = next((section[k] for k in record_keys(cls, f.name) if section.get(k) is not None), None)
            parsed = getattr(get(rec), f.name)
            if value is None and cls is EngineSpec and f.name in _SWEEP_DEFAULTS:
                assert parsed is None, f.name  # not recorded (a sweep's default is not assumed)
            elif value is None:
                assert parsed == f.default or (parsed == {} and f.default is dataclasses.MISSING), f.name
            elif isinstance(value, dict) and isinstance(parsed, LengthDist):
                assert parsed == LengthDist(**value)
            elif isinstance(value, str) and isinstance(parsed, float):
                assert parsed == float(value) and math.isinf(parsed)  # "inf" request rates
            elif isinstance(value, (list, dict)):
                assert list(parsed) == list(value) if isinstance(value, list) else dict(parsed) == value
            else:
                assert parsed == value and type(parsed) is type(value) or float(parsed) == value, f.name
    model = raw.get("model") or {}
    assert rec.run.model.spec == (model.get("spec") or raw["config"]["engine"].get("model"))
    assert rec.provenance.hardware == (model.get("hardware") or raw["config"]["engine"].get("hardware"))
    requests = raw.get("requests")
    if requests and requests.get("input_lens") is not None:
        assert rec.requests.input_lens.tolist() == requests["input_lens"]
        assert rec.requests.output_lens.tolist() == requests["output_lens"]
        assert rec.requests.input_lens.dtype == np.int64 and not rec.requests.input_lens.flags.writeable
        if requests.get("send_s") is not None:
            assert rec.requests.send_s.tolist() == requests["send_s"]
    else:
        assert rec.requests is None


def test_measurements_put_the_statistic_last():
    raw = next(r for r in RECORDS if r["config"]["engine"]["mode"] == "online" and r["source"] != "imported")
    m = parse_record(raw).measurements
    assert m.ttft_s_mean == raw["metrics"]["mean_ttft_s"] and m.e2e_s_p99 == raw["metrics"]["p99_e2e_s"]
    d = m.as_dict()
    assert d["elapsed_s"] == raw["metrics"]["elapsed_s"] and "mean_ttft_s" not in d
    assert all(isinstance(v, float) for v in d.values())


def test_request_lengths_fall_back_to_fixed_lengths():
    raw = next(r for r in RECORDS if r["source"] == "imported" and not r.get("requests")
               and isinstance(r["config"]["workload"]["input_len"], int))
    input_lens, output_lens = parse_record(raw).request_lengths()
    n = raw["config"]["workload"]["num_prompts"]
    assert input_lens.tolist() == [32] * n and output_lens.tolist() == [16] * n
    no_lengths = {**raw, "config": {**raw["config"], "workload": {"num_prompts": 8}}}
    with pytest.raises(RecordError, match=f"run {raw['run_id']}: .*neither per-request lengths"):
        parse_record(no_lengths).request_lengths()


def _with(raw, section, **changes):
    out = json.loads(json.dumps(raw))
    out[section] = {**(out[section] or {}), **changes}
    return out


@pytest.mark.parametrize("change, message", [
    (lambda r: _with(r, "metrics", elapsed_s="fast"), r"^run {id}: metrics.elapsed_s = 'fast' is not a number$"),
    (lambda r: _with(r, "engine_info", max_num_seqs=2.5),
     r"^run {id}: engine_info.max_num_seqs = 2.5 is not an integer$"),
    (lambda r: _with(r, "engine_info", cuda_graphs="yes"),
     r"^run {id}: engine_info.cuda_graphs = 'yes' is not true/false$"),
    (lambda r: {k: v for k, v in r.items() if k != "status"}, r"^run {id}: status is missing$"),
    (lambda r: {**r, "status": "done"}, r"^run {id}: status = 'done' is not one of ok, error$"),
    (lambda r: {**r, "schema_version": 2}, r"^run {id}: schema_version 2 is not 1"),
    (lambda r: {**r, "metrics": None}, r"^run {id}: metrics is missing from a successful run$"),
    (lambda r: {**r, "config": {"engine": [], "workload": {}}}, r"^run {id}: config.engine is not a mapping$"),
    (lambda r: _with(r, "requests", output_lens=[1]),
     r"^run {id}: requests.output_lens has 1 entries, input_lens \d+$"),
    (lambda r: _with(r, "requests", input_lens=[1.5]),
     r"^run {id}: requests.input_lens = \[1.5\] is not a list of integers$"),
    (lambda r: {**r, "config": {**r["config"], "workload": {"input_len": {"dist": "zipf"}}}},
     r"^run {id}: config.workload.input_len = \{'dist': 'zipf'\} is not a length distribution \(dist must be"),
])
def test_a_bad_record_is_one_line_naming_run_and_field(change, message):
    raw = RECORDS[0]
    with pytest.raises(RecordError, match=message.replace("{id}", raw["run_id"])):
        parse_record(change(raw))


def test_error_records_of_the_worker_parse():
    spec = {"engine_id": "e1", "engine": {"mode": "offline", "model": "llama-3.1-8b", "max_num_seqs": 4},
            "model_path": "/x"}
    run = {"run_id": "r1", "workload": {"input_len": 8, "output_len": 4, "num_prompts": 2, "request_rate": "inf"}}
    raw = make_record(spec=spec, run=run, status="error", metrics=None, engine_info=None, env=None, error="OOM")
    rec = parse_record(raw)
    assert (rec.status, rec.ok, rec.error, rec.requests) == ("error", False, "OOM", None)
    assert rec.measurements == Measurements() and rec.engine_info == EngineInfo()
    assert rec.run.engine.max_num_seqs == 4 and rec.run.model == ModelRef(spec="llama-3.1-8b", path="/x")
    with pytest.raises(RecordError, match="^a results record has no run_id"):
        parse_record({k: v for k, v in raw.items() if k != "run_id"})
    assert RequestLog(input_lens=np.array([1]), output_lens=np.array([2])) == RequestLog(
        input_lens=np.array([1]), output_lens=np.array([2]))
