"""scripts/select_bf16_runs.py: the H200 fit's sweep-2 runs are picked by rule and copied line for line."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SWEEP2 = ROOT / "data" / "h200-sweep2"


def _script():
    spec = importlib.util.spec_from_file_location("select_bf16_runs", ROOT / "scripts" / "select_bf16_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_selection_is_what_the_rule_picks(tmp_path):
    out = tmp_path / "bf16.jsonl"
    assert _script().main(str(out), str(SWEEP2 / "results-offline.jsonl"), str(SWEEP2 / "results-prefix.jsonl")) == 0
    assert out.read_bytes() == (SWEEP2 / "bf16-offline.jsonl").read_bytes()
    sources = {line for name in ("results-offline.jsonl", "results-prefix.jsonl")
               for line in (SWEEP2 / name).read_text().splitlines()}
    for line in out.read_text().splitlines():
        assert line in sources  # verbatim
        engine = json.loads(line)["config"]["engine"]
        assert not engine["quantization"] and engine["kv_cache_dtype"] in (None, "auto")


def test_the_rule_drops_quantized_fp8_kv_prefix_cached_online_and_failed_runs():
    usable = _script().usable
    ok = {"status": "ok", "config": {"engine": {"mode": "offline", "quantization": None, "kv_cache_dtype": None,
                                                "enable_prefix_caching": None},
                                     "workload": {"shared_prefix_len": None}}}
    assert usable(ok)

    def changed(part, **values):
        record = json.loads(json.dumps(ok))
        (record if part is None else record["config"][part]).update(values)
        return record

    assert not usable(changed("engine", quantization="gptq_marlin"))
    assert not usable(changed("engine", kv_cache_dtype="fp8"))
    assert not usable(changed("engine", mode="online"))
    assert not usable(changed(None, status="error"))
    assert not usable(changed("workload", shared_prefix_len=1536))  # caching on by default in V1
    caching_off = changed("workload", shared_prefix_len=1536)
    caching_off["config"]["engine"]["enable_prefix_caching"] = False
    assert usable(caching_off)  # a shared prefix nothing caches: plain prompts
