"""Reduce kernel timings of a quantized GEMM family priced like cuBLAS (Machete, Marlin) to anchors of its
coefficients.

perfmodel.cost.kernels.scaled_dense_cost prices one weight matrix of ``m`` rows as ``max(rows * 2kn / (dense(m) *
c), (weight bytes + m * activation bytes) / (hbm * b))``: ``dense(m) = peak * e * m / (m + m_half)`` is cuBLAS's rate
(gemm_anchor.py's curve), ``rows`` is m padded to whole tiles (Machete: kernels.machete_tile_rows), ``c`` the
family's ``*_compute_efficiency`` and ``b`` its ``*_memory_efficiency``. This script fits cuBLAS's (e, m_half) to the
file's ``cublas_fp16`` timings, then (b, c) of each family variant to its timings by least squares on log times:
once on every shape together (the anchor's value) and once per weight shape (their spread, the median absolute
deviation as a standard deviation, is the anchor's stated uncertainty). Input: benchmarks/device/kernel_shapes.py's
JSON lines.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/anchors/machete_anchor.py data/h200-machete/kernels.jsonl \\
        --gpu h200-sxm --out data/anchors/h200-machete-anchor.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import optimize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemm_anchor import fit as fit_dense  # noqa: E402
from v1_scheduler import provenance  # noqa: E402

# family in the timings -> (the profile's coefficient prefix, tiles padded as the model pads them)
FAMILIES = {"machete_gptq": ("machete", True), "machete_awq": ("machete", True),
            "gptq_marlin": ("marlin", False), "awq_marlin": ("marlin", False)}  # both time Marlin (data/h100-kernels)


def padded_rows(family: str, m: np.ndarray, k: np.ndarray, n: np.ndarray) -> np.ndarray:
    if not FAMILIES[family][1]:
        return m
    from perfmodel.cost.kernels import machete_tile_rows

    tiles = machete_tile_rows(m, k, n)  # elementwise over arrays of m, k and n
    return np.ceil(m / tiles) * tiles


def predict_s(theta, rows, m, k, n, nbytes, dense_rate, hbm):
    b, c = theta
    return np.maximum(rows * 2.0 * k * n / (dense_rate * c), nbytes / (hbm * b))


def fit_family(rows, m, k, n, nbytes, dense_rate, measured, hbm) -> np.ndarray:
    def residuals(theta):
        return np.log(predict_s(theta, rows, m, k, n, nbytes, dense_rate, hbm) / measured)

    return optimize.least_squares(residuals, [0.5, 0.7], bounds=([0.02, 0.02], [1.0, 3.0]), x_scale=[0.1, 0.1],
                                  loss="soft_l1", f_scale=0.05).x


def table(records: list[dict], family: str, act_order: bool) -> dict[str, np.ndarray]:
    rs = [r for r in records if r["family"] == family and bool(r.get("act_order")) == act_order]
    return {key: np.array([float(r[key]) for r in rs]) for key in ("m", "k", "n", "bytes", "median_s")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("timings", type=Path)
    parser.add_argument("--gpu", required=True, help="the GPU whose datasheet peaks the efficiencies are fractions of")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from hardware.catalog import load_gpu

    gpu = load_gpu(args.gpu)
    lines = [json.loads(line) for line in args.timings.read_text().splitlines() if line.strip()]
    header = next((r for r in lines if r.get("record") == "header"), {})
    records = [r for r in lines if r.get("record") == "measurement"]
    peak, hbm = gpu.peak_flops_per_s["float16"], gpu.memory_bandwidth_bytes_per_s
    d = table(records, "cublas_fp16", False)
    if not len(d["m"]):
        raise SystemExit(f"{args.timings}: no cublas_fp16 timings to anchor the dense rate on")
    e, m_half, b_dense = fit_dense(d["m"], d["k"], d["n"], np.full(len(d["m"]), 2.0), d["median_s"], peak, hbm)
    doc = {"anchor": "quantized_gemm_kernel_microbenchmark", "timings": str(args.timings), "gpu": args.gpu,
           "device": header.get("gpu"), "vllm": header.get("vllm"), "peak_flops_per_s": peak, "hbm_bytes_per_s": hbm,
           "cublas_fp16": {"gemm_compute_efficiency": float(e), "gemm_half_efficiency_tokens": float(m_half),
                           "memory_efficiency": float(b_dense), "num_timings": int(len(d["m"]))},
           "families": {}}
    for family in FAMILIES:
        for act_order in (False, True):
            t = table(records, family, act_order)
            if not len(t["m"]):
                continue
            rows = padded_rows(family, t["m"], t["k"], t["n"])
            dense = peak * e * t["m"] / (t["m"] + m_half)
            value = fit_family(rows, t["m"], t["k"], t["n"], t["bytes"], dense, t["median_s"], hbm)
            shapes = defaultdict(list)
            for i, (k, n) in enumerate(zip(t["k"], t["n"])):
                shapes[(k, n)].append(i)
            per_shape = np.array([fit_family(rows[ix], t["m"][ix], t["k"][ix], t["n"][ix], t["bytes"][ix], dense[ix],
                                             t["median_s"][ix], hbm) for ix in map(np.array, shapes.values())])
            sd = 1.4826 * np.median(np.abs(per_shape - np.median(per_shape, axis=0)), axis=0)
            fitted = predict_s(value, rows, t["m"], t["k"], t["n"], t["bytes"], dense, hbm)
            prefix = FAMILIES[family][0]
            small, large = t["m"] <= 16, t["m"] == t["m"].max()
            doc["families"][f"{family}|act_order={act_order}"] = {
                "num_shapes": len(shapes), "num_timings": int(len(t["m"])),
                f"{prefix}_memory_efficiency": {"value": float(value[0]), "sd": float(sd[0])},
                f"{prefix}_compute_efficiency": {"value": float(value[1]), "sd": float(sd[1])},
                "median_abs_log_error": float(np.median(np.abs(np.log(fitted / t["median_s"])))),
                "bytes_per_s_median_m_le_16": float(np.median(t["bytes"][small] / t["median_s"][small])),
                "flop_per_s_median_at_max_m": float(np.median(2 * t["m"][large] * t["k"][large] * t["n"][large]
                                                              / t["median_s"][large])),
                "max_m": int(t["m"].max())}
    doc.update(provenance("n/a (reduces timings of vLLM " + str(header.get("vllm")) + ")"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"cuBLAS fp16: e {e:.3f}, m_half {m_half:.1f}, memory {b_dense:.3f}")
    for name, f in doc["families"].items():
        coefs = {k: v for k, v in f.items() if k.endswith("_efficiency")}
        text = ", ".join(f"{k} {v['value']:.3f} ± {v['sd']:.3f}" for k, v in coefs.items())
        print(f"{name:28s} {text}; {f['bytes_per_s_median_m_le_16'] / 1e9:,.0f} GB/s at m <= 16, "
              f"{f['flop_per_s_median_at_max_m'] / 1e12:,.0f} TFLOP/s at m = {f['max_m']}; "
              f"median |log error| {f['median_abs_log_error']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
