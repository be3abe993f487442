"""Reduce kernel microbenchmark timings of dense GEMMs to anchors of the cost model's GEMM coefficients.

perfmodel.cost.step prices one weight matrix of ``m`` rows as ``max(m * flops / (peak * e * m / (m + m_half)),
(weight_bytes + m * activation_bytes) / (hbm * b))`` with e = ``gemm_compute_efficiency``, m_half =
``gemm_half_efficiency_tokens`` and b = ``memory_efficiency``. This script fits (e, m_half, b) to timings in
data/h200-gemm/gemm.jsonl's format (one line per shape and row count: in_features, out_features, dtype, rows,
median_s) by least squares on log times, once on all shapes together (the anchor's value) and once per matrix
shape; the spread of the per-shape values (median absolute deviation, as a standard deviation) is the anchor's
stated uncertainty, since a model's layer is a mix of such shapes. A measured efficiency curve for another
kernel family (FP8, Marlin, exllama...) in the same format reduces the same way (``--gpu``, ``--dtype``).

    PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/anchors/gemm_anchor.py data/h200-gemm/gemm.jsonl \\
        --gpu h200-sxm --out data/anchors/h200-gemm-anchor.json
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
from v1_scheduler import provenance  # noqa: E402

BYTES = {"bfloat16": 2, "float16": 2, "fp8": 1}


def predict_s(theta: np.ndarray, rows: np.ndarray, k: np.ndarray, n: np.ndarray, nbytes: np.ndarray,
              peak: float, hbm: float) -> np.ndarray:
    e, m_half, b = theta
    m = np.maximum(rows, 1.0)
    compute = m * 2.0 * k * n / (peak * e * m / (m + m_half))
    memory = (k * n * nbytes + m * (k + n) * nbytes) / (hbm * b)
    return np.maximum(compute, memory)


def fit(rows, k, n, nbytes, measured, peak, hbm) -> np.ndarray:
    def residuals(theta):
        return np.log(predict_s(theta, rows, k, n, nbytes, peak, hbm) / measured)

    result = optimize.least_squares(residuals, [0.8, 64.0, 0.85], bounds=([0.05, 1.0, 0.05], [1.0, 4096.0, 1.0]),
                                    x_scale=[0.1, 32.0, 0.1], loss="soft_l1", f_scale=0.05)
    return result.x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("timings", type=Path)
    parser.add_argument("--gpu", required=True, help="the GPU whose datasheet peaks the efficiencies are fractions of")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from hardware.catalog import load_gpu

    gpu = load_gpu(args.gpu)
    lines = [json.loads(l) for l in args.timings.read_text().splitlines() if l.strip()]
    dtype = lines[0]["dtype"]
    peak, hbm = gpu.peak_flops_per_s[dtype], gpu.memory_bandwidth_bytes_per_s
    columns = {c: np.array([float(l[key]) for l in lines]) for c, key in
               (("rows", "rows"), ("k", "in_features"), ("n", "out_features"), ("t", "median_s"))}
    nbytes = np.array([BYTES[l["dtype"]] for l in lines], float)
    all_fit = fit(columns["rows"], columns["k"], columns["n"], nbytes, columns["t"], peak, hbm)
    by_shape = defaultdict(list)
    for i, l in enumerate(lines):
        by_shape[(l["in_features"], l["out_features"], l["dtype"])].append(i)
    per_shape = np.array([fit(columns["rows"][ix], columns["k"][ix], columns["n"][ix], nbytes[ix], columns["t"][ix],
                              peak, hbm) for ix in map(np.array, by_shape.values())])
    mad_sd = 1.4826 * np.median(np.abs(per_shape - np.median(per_shape, axis=0)), axis=0)
    names = ("gemm_compute_efficiency", "gemm_half_efficiency_tokens", "memory_efficiency")
    doc = {"anchor": "gemm_kernel_microbenchmark", "timings": str(args.timings), "gpu": args.gpu,
           "num_shapes": len(by_shape), "num_timings": len(lines), "peak_flops_per_s": peak, "hbm_bytes_per_s": hbm,
           "coefficients": {nm: {"value": float(v), "sd": float(s), "per_shape_median": float(med)}
                            for nm, v, s, med in zip(names, all_fit, mad_sd, np.median(per_shape, axis=0))},
           **provenance("n/a (torch cuBLAS timings)")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for nm, c in doc["coefficients"].items():
        print(f"{nm:30s} {c['value']:.4g} ± {c['sd']:.3g} (per-shape median {c['per_shape_median']:.4g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
