"""Pre-registered vs measured for H200 sweep 2 (issue 14): a markdown table per run and per kernel family.

    PYTHONPATH=. python benchmarks/device/compare_sweep2.py > data/h200-sweep2/comparison.md

Error = predicted / measured - 1 (signed: + means the model said faster / more). Predictions are
data/h200-sweep2/predictions.jsonl, committed before the runs; measurements data/h200-sweep2/results-*.jsonl.
`bf16 ref` is the same model and workload measured in bf16 in the first sweep (data/h200), where there is one.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "h200-sweep2"
# (predicted key, measured key, label); online metrics as the runner names them
OFFLINE = (("output_tokens_per_second", "output_tokens_per_second", "out tok/s"),
           ("tokens_per_second", "tokens_per_second", "tok/s"))
ONLINE = (("output_tokens_per_second", "output_tokens_per_second", "out tok/s"),
          ("ttft_s_mean", "mean_ttft_s", "TTFT mean"), ("ttft_s_median", "median_ttft_s", "TTFT median"),
          ("tpot_s_mean", "mean_tpot_s", "TPOT mean"))


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def family(rec: dict) -> str:
    """Kernel family of a run: weights, KV cache, prompt length, prefix caching, serving."""
    eng, wl, info = rec["config"]["engine"], rec["config"]["workload"], rec.get("engine_info") or {}
    q = eng.get("quantization")
    qcfg = info.get("checkpoint_quantization_config") or {}
    if q and q.startswith("gptq") and "modules_in_block_to_quantize" not in qcfg:
        name = "gptq flag, NOT applied (bf16 weights)"
    else:
        name = {None: "bf16", "gptq_marlin": "GPTQ-int4", "awq_marlin": "AWQ-int4 (Machete)",
                "fp8": "FP8 W8A8"}.get(q, str(q))
    if eng.get("kv_cache_dtype"):
        name += f" + kv {eng['kv_cache_dtype']}"
    if isinstance(wl["input_len"], int) and wl["input_len"] >= 8192:
        name += ", long prompt"
    if wl.get("shared_prefix_len"):
        name += f", shared prefix, caching {'on' if eng.get('enable_prefix_caching') else 'off'}"
    if eng["mode"] == "online":
        name += ", online"
    return name


def bf16_reference(rec: dict, refs: list[dict]) -> float | None:
    """Output tok/s of the same model and fixed workload in bf16, default engine, from data/h200."""
    eng, wl = rec["config"]["engine"], rec["config"]["workload"]
    for r in refs:
        e, w = r["config"]["engine"], r["config"]["workload"]
        if (r["status"] == "ok" and e["model"] == eng["model"] and e["mode"] == eng["mode"] == "offline"
                and e["tensor_parallel_size"] == e["pipeline_parallel_size"] == 1 and not e["enforce_eager"]
                and e["max_num_seqs"] is None and not e.get("quantization") and not e.get("kv_cache_dtype")
                and all(w[k] == wl[k] for k in ("input_len", "output_len", "num_prompts"))):
            return r["metrics"]["output_tokens_per_second"]
    return None


def err(pred: float | None, meas: float | None) -> float | None:
    return None if pred is None or not meas else pred / meas - 1


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:+.0f}%"


def main() -> int:
    preds = {p["run_id"]: p for p in load(DATA / "predictions.jsonl")}
    records = [r for f in sorted(DATA.glob("results-*.jsonl")) for r in load(f)]
    refs = [r for f in sorted((ROOT / "data" / "h200").glob("*.jsonl")) for r in load(f)]
    ok = [r for r in records if r["status"] == "ok"]
    measured = {r["run_id"] for r in ok}
    print(f"{len(records)} records: {len(ok)} ok, {len(records) - len(ok)} errors (see PROVENANCE.md); "
          f"{len(measured)} of the {len(preds)} planned runs measured (a run measured again has a later record: after "
          f"its error, or after a GPTQ record whose int4 was not applied)\n")
    print("| run_id | family | model | in/out x n | rate | measured out tok/s | err out tok/s | err tok/s "
          "| KV tokens meas | err KV | bf16 ref out tok/s | err TTFT mean | err TTFT median | err TPOT |")
    print("|" + "---|" * 14)
    by_family: dict[str, dict[str, list[float]]] = {}
    for r in ok:
        p, m, info = preds[r["run_id"]], r["metrics"], r["engine_info"] or {}
        wl, eng = r["config"]["workload"], r["config"]["engine"]
        kv = info.get("kv_cache_tokens") or info.get("kv_cache_tokens_log")
        errs = {label: err(p.get(pk), m.get(mk)) for pk, mk, label in (ONLINE if eng["mode"] == "online" else OFFLINE)}
        errs["KV"] = err(p.get("kv_cache_tokens"), kv)
        fam = by_family.setdefault(family(r), {})
        for k, v in errs.items():
            if v is not None:
                fam.setdefault(k, []).append(v)
        rate = wl["request_rate"] if eng["mode"] == "online" else ""
        ref = bf16_reference(r, refs)
        print(f"| {r['run_id']} | {family(r)} | {Path(eng['model']).name} | {wl['input_len']}/{wl['output_len']} x "
              f"{wl['num_prompts']} | {rate} | {m['output_tokens_per_second']:,.0f} | {pct(errs['out tok/s'])} | "
              f"{pct(errs.get('tok/s'))} | {kv:,} | {pct(errs['KV'])} | {'' if ref is None else f'{ref:,.0f}'} | "
              f"{pct(errs.get('TTFT mean'))} | {pct(errs.get('TTFT median'))} | {pct(errs.get('TPOT mean'))} |")
    print("\nPer family: median |error| (median signed error), number of runs\n")
    print("| family | out tok/s | tok/s | KV tokens | TTFT mean | TTFT median | TPOT mean |")
    print("|---|---|---|---|---|---|---|")
    for name, fam in by_family.items():
        cells = []
        for k in ("out tok/s", "tok/s", "KV", "TTFT mean", "TTFT median", "TPOT mean"):
            v = fam.get(k)
            cells.append("" if not v else f"{100 * statistics.median(abs(x) for x in v):.0f}% "
                         f"({100 * statistics.median(v):+.0f}%), n={len(v)}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
