"""Quantized checkpoints with dummy weights (modeldir) and shared-prefix workloads (sweep + worker prompts)."""
import json
from pathlib import Path

import pytest
import yaml

from calibrate.run.modeldir import CHECKPOINT_QUANT_CONFIGS, materialize, with_checkpoint_quantization
from calibrate.run.runner import run_sweep
from calibrate.records.store import load_records
from calibrate.records.sweep import SweepError, load_sweep, parse_sweep
from calibrate.run.worker_offline import make_prompts

ROOT = Path(__file__).resolve().parents[2]
CFG = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "vocab_size": 1000, "torch_dtype": "bfloat16"}


def test_checkpoint_quantization_writes_the_methods_config(tmp_path):
    base = materialize(CFG, "tiny", tmp_path)
    path, qcfg = with_checkpoint_quantization(str(base), "gptq_marlin")
    written = json.loads((Path(path) / "config.json").read_text())
    assert Path(path).parent == base.parent and Path(path) != base
    assert written["quantization_config"] == qcfg == CHECKPOINT_QUANT_CONFIGS["gptq"]
    assert qcfg["quant_method"] == "gptq" and qcfg["bits"] == 4 and qcfg["group_size"] == 128
    # vLLM 0.26 quantizes only the modules named here when the checkpoint has no safetensors to read them from
    named = {m for block in qcfg["modules_in_block_to_quantize"] for m in block}
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(m.endswith(proj) for m in named), proj
    assert {k: v for k, v in written.items() if k != "quantization_config"} == CFG
    assert with_checkpoint_quantization(str(base), "gptq_marlin")[0] == path  # same config, same folder
    awq_path, awq = with_checkpoint_quantization(str(base), "awq_marlin")
    assert awq["quant_method"] == "awq" and awq["zero_point"] is True and awq_path != path
    fp8_path, fp8 = with_checkpoint_quantization(str(base), "FP8")
    assert fp8 == {"quant_method": "fp8", "activation_scheme": "dynamic"}
    assert "config.json" in {p.name for p in Path(fp8_path).iterdir()}


def test_checkpoint_quantization_leaves_other_models_alone(tmp_path):
    base = materialize(CFG, "tiny", tmp_path)
    assert with_checkpoint_quantization(str(base), None) == (str(base), None)
    assert with_checkpoint_quantization(str(base), "fp8_per_tensor") == (str(base), None)  # online: no config
    own = {"quant_method": "awq", "bits": 4}
    quantized = materialize({**CFG, "quantization_config": own}, "q", tmp_path)
    assert with_checkpoint_quantization(str(quantized), "gptq_marlin") == (str(quantized), own)
    assert with_checkpoint_quantization("org/name", "gptq_marlin") == ("org/name", None)  # an HF id


def prefix_doc(k, input_len=40):
    return {"defaults": {"model": "m", "output_len": 4, "num_prompts": 6},
            "groups": [{"name": "p", "input_len": input_len, "shared_prefix_len": k}]}


def test_shared_prefix_prompts_share_exactly_k_tokens():
    run = parse_sweep(prefix_doc(24)).runs[0]
    prompts, outs = make_prompts(run.workload.to_dict(), 1000, run.run_id)
    assert [len(p) for p in prompts] == [40] * 6 and outs == [4] * 6
    assert all(p[:24] == prompts[0][:24] for p in prompts)
    assert len({tuple(p[24:]) for p in prompts}) == 6  # suffixes differ
    assert all(3 <= t < 1000 for p in prompts for t in p)
    other = parse_sweep(prefix_doc(24, input_len=48)).runs[0]
    other_prompts, _ = make_prompts(other.workload.to_dict(), 1000, other.run_id)
    assert other_prompts[0][:24] != prompts[0][:24]  # another run of the engine gets its own prefix
    assert make_prompts(run.workload.to_dict(), 1000, run.run_id)[0] == prompts  # deterministic


def test_no_prefix_keeps_prompts_and_run_ids_of_earlier_sweeps():
    plain = parse_sweep(prefix_doc(0)).runs[0]
    assert "shared_prefix_len" not in plain.workload.to_dict()
    assert parse_sweep(prefix_doc(0)).runs[0].run_id != parse_sweep(prefix_doc(8)).runs[0].run_id
    # every run measured in data/h200 (before the key existed) still has its id in its sweep file
    ids = set()
    for name in ("h200-single", "h200-online", "h200-multi"):
        ids |= {r.run_id for r in load_sweep(ROOT / "sweeps" / f"{name}.yaml").runs}
    measured = {json.loads(line)["run_id"] for f in (ROOT / "data" / "h200").glob("*.jsonl")
                for line in f.read_text().splitlines() if line.strip()}
    assert measured and measured <= ids


@pytest.mark.parametrize("k, input_len, message", [
    (40, 40, "must be below every input_len"),
    (-1, 40, "shared_prefix_len must be >= 0"),
    (30, {"dist": "uniform", "min": 20, "max": 60}, "must be below every input_len"),
])
def test_bad_shared_prefix_is_one_line(k, input_len, message):
    with pytest.raises(SweepError, match=message):
        parse_sweep(prefix_doc(k, input_len))


def test_fake_engine_loads_the_quantized_copy(tmp_path, monkeypatch):
    from tests.calibrate.test_store import fake_vllm_path

    monkeypatch.setenv("PYTHONPATH", fake_vllm_path())  # the fake vllm package of tests/calibrate/fake_vllm
    monkeypatch.setenv("FAKE_VLLM_DELAY_S", "0.01")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(CFG))
    doc = {"defaults": {"model": str(cfg), "input_len": 16, "output_len": 4, "num_prompts": 2},
           "groups": [{"name": "q", "quantization": "awq_marlin", "shared_prefix_len": 8}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    results = tmp_path / "out" / "r.jsonl"
    assert run_sweep(load_sweep(tmp_path / "s.yaml"), results).num_ok == 1
    rec = load_records(results)[0]
    loaded = Path(rec["provenance"]["engine_args"]["model"])
    assert json.loads((loaded / "config.json").read_text())["quantization_config"]["quant_method"] == "awq"
    assert rec["engine_info"]["checkpoint_quantization_config"] == CHECKPOINT_QUANT_CONFIGS["awq_marlin"]
    assert rec["config"]["workload"]["shared_prefix_len"] == 8


def test_sweep2_files_load_and_every_run_is_pre_registered():
    runs = [r for name in ("offline", "online", "prefix")
            for r in load_sweep(ROOT / "sweeps" / f"h200-sweep2-{name}.yaml").runs]
    assert len(runs) >= 40 and len({r.run_id for r in runs}) == len(runs)
    predicted = {json.loads(line)["run_id"] for line in
                 (ROOT / "data" / "h200-sweep2" / "predictions.jsonl").read_text().splitlines() if line.strip()}
    assert {r.run_id for r in runs} == predicted
    quantized = {r.engine.quantization for r in runs}
    assert {"gptq_marlin", "awq_marlin", "fp8"} <= quantized
    assert any(r.workload.shared_prefix_len for r in runs)
