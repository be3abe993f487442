"""scripts/select_quantized_runs.py: the per-family fit's sweep-2 runs are picked by rule and copied line for line."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SWEEP2 = ROOT / "data" / "h200-sweep2"


def _script():
    spec = importlib.util.spec_from_file_location("select_quantized_runs", ROOT / "scripts" / "select_quantized_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_selection_is_what_the_rule_picks(tmp_path):
    out = tmp_path / "quantized.jsonl"
    assert _script().main(str(out), str(SWEEP2 / "results-offline.jsonl"), str(SWEEP2 / "results-prefix.jsonl")) == 0
    assert out.read_bytes() == (SWEEP2 / "quantized-offline.jsonl").read_bytes()
    sources = {line for name in ("results-offline.jsonl", "results-prefix.jsonl")
               for line in (SWEEP2 / name).read_text().splitlines()}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(line in sources for line in out.read_text().splitlines())  # verbatim
    assert len({r["run_id"] for r in records}) == len(records)
    # every GPTQ record kept is one whose int4 was applied (the config names the quantized modules)
    gptq = [r for r in records
            if (r["engine_info"]["checkpoint_quantization_config"] or {}).get("quant_method") == "gptq"]
    assert gptq and all(r["engine_info"]["checkpoint_quantization_config"]["modules_in_block_to_quantize"]
                        for r in gptq)


def test_the_rule_keeps_quantized_and_fp8_kv_runs_only():
    script = _script()
    ok = {"status": "ok", "engine_info": {"checkpoint_quantization_config": None},
          "config": {"engine": {"mode": "offline", "quantization": "fp8", "kv_cache_dtype": None,
                                "enable_prefix_caching": None, "dummy_weights": True},
                     "workload": {"shared_prefix_len": None}}}
    assert script.usable(ok)

    def changed(part, **values):
        record = json.loads(json.dumps(ok))
        (record if part is None else record["config"][part]).update(values)
        return record

    assert not script.usable(changed("engine", quantization=None))  # bf16: select_bf16_runs.py's
    assert script.usable(changed("engine", quantization=None, kv_cache_dtype="fp8"))
    assert not script.usable(changed("engine", mode="online"))
    assert not script.usable(changed(None, status="error"))
    assert not script.usable(changed("workload", shared_prefix_len=1536))
    not_applied = changed("engine", quantization="gptq_marlin")
    not_applied["engine_info"]["checkpoint_quantization_config"] = {"quant_method": "gptq", "bits": 4}
    assert not script.usable(not_applied)
    not_applied["engine_info"]["checkpoint_quantization_config"]["modules_in_block_to_quantize"] = [["mlp.up_proj"]]
    assert script.usable(not_applied)
