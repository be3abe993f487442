"""Copy the quantized runs of H200 sweep 2 that the per-family fit can use into one results file.

Kept, verbatim: status ok, offline, quantized weights (``quantization`` set) or an fp8 KV cache, no shared prefix
that prefix caching could serve (the step cost has no prefix-cache term), and the quantization actually applied.
Not applied: a GPTQ checkpoint config without ``modules_in_block_to_quantize`` under dummy weights -- vLLM 0.26
then reads the quantized modules from the safetensors files, which dummy weights do not have, and leaves every
layer in bf16 (vllm/model_executor/layers/quantization/auto_gptq.py AutoGPTQConfig.maybe_update_config;
data/h200-sweep2/PROVENANCE.md, "GPTQ was NOT applied"). The newest record of each run id decides, as in
``calibrate.records.store.load_records(latest_only=True)`` (sweep 2 measured those GPTQ runs again, applied).

    python scripts/select_quantized_runs.py data/h200-sweep2/quantized-offline.jsonl \\
        data/h200-sweep2/results-offline.jsonl data/h200-sweep2/results-prefix.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.select_bf16_runs import copy_runs  # noqa: E402


def quantization_applied(record: dict) -> bool:
    checkpoint = (record.get("engine_info") or {}).get("checkpoint_quantization_config") or {}
    gptq_without_modules = (checkpoint.get("quant_method") == "gptq"
                            and not checkpoint.get("modules_in_block_to_quantize"))
    return not (gptq_without_modules and record["config"]["engine"].get("dummy_weights"))


def usable(record: dict) -> bool:
    engine, workload = record["config"]["engine"], record["config"]["workload"]
    cached_prefix = (workload.get("shared_prefix_len") or 0) > 0 and engine.get("enable_prefix_caching") is not False
    quantized = bool(engine.get("quantization")) or str(engine.get("kv_cache_dtype") or "auto").startswith("fp8")
    return (record.get("status") == "ok" and engine.get("mode") == "offline" and quantized and not cached_prefix
            and quantization_applied(record))


def main(out: str, *sources: str) -> int:
    return copy_runs(usable, out, *sources)


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
