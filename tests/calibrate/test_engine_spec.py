"""One engine spec for sweeps and records: the ids in data/ still resolve, and a record's scenario is the one the
CLI builds from the same run's flags (one composition root, ``Scenario.from_options``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from calibrate.records.engine_spec import EngineSpec, spec_hash
from calibrate.fit.observations import observation_from_record
from calibrate.records.record_fields import RecordError
from calibrate.records.record import parse_record
from calibrate.records.sweep import SweepError, load_sweep, parse_sweep
from hardware import load_hardware

ROOT = Path(__file__).resolve().parents[2]


def _records() -> list[dict]:
    out = []
    for path in sorted((ROOT / "data").rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            raw = json.loads(line)
            if "config" in raw and "schema_version" in raw:  # results files (predictions and GEMM timings are not)
                out.append(raw)
    return out


RECORDS = _records()
MEASURED = [r for r in RECORDS if r["source"] == "perfmodel-calibrate"]


def test_every_record_under_data_is_read():
    # 18 imported (Taiwania 2); data/h200-sweep2/quantized-offline.jsonl repeats 30 measured records verbatim
    assert len(RECORDS) == 223 and len(MEASURED) == 205
    for raw in RECORDS:
        assert parse_record(raw).run.engine == EngineSpec.from_record(raw["config"]["engine"], raw["run_id"])


@pytest.mark.parametrize("raw", MEASURED, ids=lambda r: r["run_id"])
def test_old_ids_still_resolve(raw):
    engine = parse_record(raw).run.engine
    assert engine.engine_id == raw["engine_id"]
    assert spec_hash({"engine": engine.to_dict(), "workload": raw["config"]["workload"]}) == raw["run_id"]


def test_the_sweeps_still_make_every_measured_run_id():
    made = {run.run_id for path in sorted((ROOT / "sweeps").glob("*.yaml")) for run in load_sweep(path).runs}
    assert {raw["run_id"] for raw in MEASURED} <= made


def test_a_record_leaves_unrecorded_fields_none_but_a_sweep_gives_its_defaults():
    recorded = EngineSpec.from_record({"model": "llama-3.1-8b"}, "r1")
    assert (recorded.dtype, recorded.enforce_eager, recorded.dummy_weights, recorded.seed) == (None, None, None, None)
    swept = parse_sweep({"groups": [{"model": "llama-3.1-8b", "input_len": 8, "output_len": 8, "num_prompts": 1}]})
    e = swept.runs[0].engine
    assert (e.dtype, e.enforce_eager, e.dummy_weights, e.seed) == ("auto", False, True, 0)


def test_lenient_for_records_strict_for_sweeps():
    assert EngineSpec.from_record({"model": "m", "nccl_env": {"X": 1}}, "r1").model == "m"  # unknown key ignored
    with pytest.raises(RecordError, match="run r1: config.engine.max_num_seqs = 'many' is not an integer"):
        EngineSpec.from_record({"max_num_seqs": "many"}, "r1")
    with pytest.raises(RecordError, match="run r1: config.engine: mode must be one of"):
        EngineSpec.from_record({"mode": "batch"}, "r1")
    with pytest.raises(SweepError, match="unknown key 'nccl_env'"):
        parse_sweep({"groups": [{"model": "m", "input_len": 8, "output_len": 8, "num_prompts": 1, "nccl_env": 1}]})
    with pytest.raises(SweepError, match="model: must be str"):
        parse_sweep({"groups": [{"model": None, "input_len": 8, "output_len": 8, "num_prompts": 1}]})


def _flags(raw: dict, hardware: str) -> list[str]:
    """The ``perfmodel simulate`` flags that replay a record's run as vLLM resolved it."""
    rec = parse_record(raw)
    e, info = rec.run.engine, rec.engine_info
    flags = ["--model", rec.run.model.spec, "--hardware", hardware, "--dtype", e.dtype or "auto",
             "--kv-cache-dtype", e.kv_cache_dtype or "auto"]
    if e.quantization:
        flags += ["--quantization", e.quantization]
    if rec.provenance.vllm_version:
        flags += ["--vllm-version", rec.provenance.vllm_version]
    values = {"max-num-seqs": info.max_num_seqs or e.max_num_seqs,
              "max-num-batched-tokens": info.max_num_batched_tokens or e.max_num_batched_tokens,
              "gpu-memory-utilization": e.gpu_memory_utilization,
              "max-model-len": info.max_model_len or e.max_model_len,
              "block-size": info.block_size or e.block_size}
    flags += [x for k, v in values.items() if v is not None for x in (f"--{k}", str(v))]
    if e.enforce_eager:
        flags.append("--enforce-eager")
    for name, on in (("enable-chunked-prefill", info.enable_chunked_prefill),
                     ("enable-prefix-caching", info.enable_prefix_caching if info.enable_prefix_caching is not None
                      else e.enable_prefix_caching)):
        if on is not None:
            flags.append(f"--{name}" if on else f"--no-{name}")
    if e.mode == "online":
        flags += ["--request-rate", "10"]
    return flags


@pytest.mark.parametrize("raw", [r for r in RECORDS if r["status"] == "ok"], ids=lambda r: r["run_id"])
def test_a_record_resolves_to_the_scenario_the_cli_builds_for_its_flags(raw):
    from perfmodel.cli import build_parser
    from perfmodel.cli.options import is_online, scenario_options
    from perfmodel.scenario import Scenario

    hardware = "taiwania2" if raw["source"] == "imported" else (
        "cpu" if "cpu" in (raw["config"]["engine"].get("hardware") or "") else "h200-sxm")
    spec = raw["model"]["spec"]
    if spec.startswith("../"):  # a model folder relative to the sweep (the CPU runs' tiny model)
        raw = {**raw, "model": {**raw["model"], "spec": str(ROOT / "sweeps" / spec), "path": None}}
    obs = observation_from_record(raw, load_hardware(hardware))
    args = build_parser().parse_args(["simulate", *_flags(raw, hardware)])
    cli = Scenario.from_options(scenario_options(args, entry_point="serve" if is_online(args) else "offline"))
    for part in ("model", "cluster", "precision", "engine"):
        assert getattr(obs.scenario, part) == getattr(cli, part), part


def test_a_record_without_its_release_gets_the_cluster_release():
    raw = next(r for r in RECORDS if r["source"] == "imported" and r["status"] == "ok")
    raw = {**raw, "provenance": {k: v for k, v in raw["provenance"].items() if k != "vllm_version"}}
    engine = observation_from_record(raw, load_hardware("taiwania2")).engine
    assert (engine.vllm_version, str(engine.engine_generation)) == ("0.7.0", "v0")  # was 0.26's V1 before


def test_calibrate_predict_on_taiwania_uses_the_cluster_release(tmp_path):
    from perfmodel.cli import main

    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"groups": [{"model": "llama-3.1-8b", "tp": 2, "input_len": 128,
                                                 "output_len": 16, "num_prompts": 8}]}))
    out = tmp_path / "p.jsonl"
    assert main(["calibrate", "predict", str(sweep), "--hardware", "taiwania2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["vllm_version"] == "0.7.0"
    assert main(["calibrate", "predict", str(sweep), "--hardware", "taiwania2", "--vllm-version", "0.26",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["vllm_version"] == "0.26"
