"""Reduce the H100 kernel table (data/h100-kernels/kernels.jsonl) to anchors of the GPTQ kernel families' coefficients.

perfmodel prices vLLM's GPTQ paths (perfmodel/cost/kernels.py) with one bandwidth fraction each:
``exllama_cost`` reads the int4 weights (with their scales and zeros, ``INT4_BYTES_PER_WEIGHT``) at
``exllama_memory_efficiency`` of HBM; ``gptq_alt_cost`` reads them plus ``ALT_GATHER_BYTES_PER_WEIGHT`` of gathered
scales/zeros per weight at ``gptq_alt_memory_efficiency``, up to 8 rows (the alt kernel), and above 8 rows spends the
same gathered read in ``reconstruct_gptq`` before cuBLAS multiplies the fp16 matrix. This script inverts those
formulas on each measured shape: the efficiency the formula needs to reproduce the measured time, at the bytes the
formula counts. A fraction of HBM does not carry from an H100 to a V100 as it is (other memory system, other L2);
what the script reports as the transferable quantity is each path's efficiency **relative to cuBLAS's fp16
weight-streaming efficiency on the same shape and GPU** (at m = 1), the weight-read rate of vLLM's SIMT int4
kernels against the library GEMV that the profile's ``memory_efficiency`` describes. A V100 anchor is that ratio
times the V100's ``memory_efficiency`` anchor; docs/anchors.md states the transfer assumption and its sd.

    PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/anchors/gptq_anchor.py data/h100-kernels/kernels.jsonl \\
        --gpu h100-sxm --out data/anchors/h100-gptq-anchor.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from v1_scheduler import provenance  # noqa: E402

GROUP = 128
# int4 weight + fp16 scale and 4-bit zero per group of 128: the bytes exllama_cost counts per weight
INT4_BYTES_PER_WEIGHT = 0.5 + (2.0 + 0.5) / GROUP


def robust_sd(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def summary(values: list[float]) -> dict:
    v = np.array(values, float)
    return {"median": float(np.median(v)), "sd": robust_sd(v), "min": float(v.min()), "max": float(v.max()),
            "shapes": len(v)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("timings", type=Path)
    parser.add_argument("--gpu", required=True, help="the GPU the timings were measured on (its datasheet HBM)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from perfmodel.cost.kernels import ALT_GATHER_BYTES_PER_WEIGHT, ALT_MAX_ROWS, EXLLAMA_MAX_ROWS
    from hardware.catalog import load_gpu

    gpu = load_gpu(args.gpu)
    hbm = gpu.memory_bandwidth_bytes_per_s
    recs = [json.loads(l) for l in args.timings.read_text().splitlines() if l.strip()]
    t = {}  # (family, act_order, k, n, m) -> median_s
    for r in recs:
        if r.get("record") == "measurement" and r["family"] in ("cublas_fp16", "gptq_exllama", "gptq_alt"):
            t[(r["family"], bool(r.get("act_order")), r["k"], r["n"], r["m"])] = r["median_s"]

    def shapes(family, act):
        return sorted({(k, n) for (f, a, k, n, m) in t if f == family and a == act and m == 1})

    def launch_fit(family, act, bytes_per_weight):
        """time = fixed_s + bytes / (hbm * e) over the shapes at m = 1 (least squares); per-shape e at that
        fixed_s for the spread."""
        ks = shapes(family, act)
        b = np.array([bytes_per_weight * k * n + 2.0 * (k + n) for k, n in ks])
        y = np.array([t[(family, act, k, n, 1)] for k, n in ks])
        (fixed, slope), *_ = np.linalg.lstsq(np.vstack([np.ones_like(b), b]).T, y, rcond=None)
        per_shape = b / ((y - fixed) * hbm)
        return {"fixed_s": float(fixed), "memory_efficiency": float(1.0 / (slope * hbm)),
                "memory_efficiency_sd": robust_sd(per_shape), "shapes": len(ks),
                "max_time_residual": float(np.max(np.abs(fixed + slope * b - y) / y))}

    out: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    fits: dict[str, dict] = {}
    for act in (False, True):
        tag = "act_order" if act else "no_act_order"
        fits[tag] = {"cublas_fp16": launch_fit("cublas_fp16", False, 2.0),
                     "gptq_exllama": launch_fit("gptq_exllama", act, INT4_BYTES_PER_WEIGHT)}
        fits[tag]["exllama_over_cublas"] = (fits[tag]["gptq_exllama"]["memory_efficiency"]
                                            / fits[tag]["cublas_fp16"]["memory_efficiency"])
        for k, n in shapes("gptq_alt", act):
            p = k * n
            ex, alt = t.get(("gptq_exllama", act, k, n, 1)), t[("gptq_alt", act, k, n, 1)]
            e_alt = ((INT4_BYTES_PER_WEIGHT + ALT_GATHER_BYTES_PER_WEIGHT) * p + 2.0 * (k + n)) / (alt * hbm)
            out[tag]["alt_memory_efficiency_m1"].append(e_alt)
            out[tag]["alt_over_cublas_m1"].append(e_alt / fits[tag]["cublas_fp16"]["memory_efficiency"])
            if ex:
                out[tag]["exllama_weight_read_rate_over_alt_m1"].append(alt / ex)
            for m in (2, 4, 8):
                a = t.get(("gptq_alt", act, k, n, m))
                if a:
                    out[tag]["alt_memory_efficiency_m2_8"].append(
                        ((INT4_BYTES_PER_WEIGHT + ALT_GATHER_BYTES_PER_WEIGHT) * p + 2.0 * m * (k + n)) / (a * hbm))
            # above 8 rows: reconstruct_gptq (gathered read at e_alt + fp16 write) + cuBLAS on the fp16 matrix
            # (measured on the same shape and rows where the table has it): the e_alt that closes the time
            e_cub = fits[tag]["cublas_fp16"]["memory_efficiency"]
            for m in (16, 32, 64):
                a, c = t.get(("gptq_alt", act, k, n, m)), t.get(("cublas_fp16", False, k, n, m))
                if a and c:
                    rest = a - c - 2.0 * p / (hbm * e_cub)
                    if rest > 0:
                        out[tag]["alt_reconstruct_memory_efficiency_m16_64"].append(
                            (INT4_BYTES_PER_WEIGHT + ALT_GATHER_BYTES_PER_WEIGHT) * p / (rest * hbm))
        # above 50 rows: reconstruct_exllama (int4 in, fp16 out) + cuBLAS fp16 on the same shape and rows, so the
        # difference from cuBLAS's own time is the reconstruct pass; per shape, the median over the row counts
        for k, n in shapes("gptq_exllama", act):
            p = k * n
            per_m = [(INT4_BYTES_PER_WEIGHT + 2.0) * p / ((t[("gptq_exllama", act, k, n, m)] - c) * hbm)
                     for m in sorted({m for (f, a, kk, nn, m) in t if f == "gptq_exllama" and (kk, nn) == (k, n)})
                     if m > EXLLAMA_MAX_ROWS and (c := t.get(("cublas_fp16", False, k, n, m)))
                     and t[("gptq_exllama", act, k, n, m)] > c]
            c1 = t.get(("cublas_fp16", False, k, n, 1))
            if per_m and c1:
                e_rec = float(np.median(per_m))
                out[tag]["exllama_reconstruct_memory_efficiency_m64_up"].append(e_rec)
                out[tag]["exllama_reconstruct_over_cublas_m1"].append(e_rec / (2.0 * p / (c1 * hbm)))
                # against cuBLAS's streaming rate without its fixed time per call (the launch fit's), as the
                # exllama kernel's own ratio is taken: the transferable quantity (small matrices' single-row
                # rates are mostly launch time)
                out[tag]["exllama_reconstruct_over_cublas_streaming"].append(
                    e_rec / fits[tag]["cublas_fp16"]["memory_efficiency"])
        simt = 2.0 * gpu.peak_flops_per_s["float32"]  # half2 FMAs on the CUDA cores (perfmodel.cost.step)
        for k, n in shapes("gptq_exllama", act):
            for m in (16, 32):
                out[tag]["exllama_compute_efficiency_m16_32"].append(
                    2.0 * m * k * n / (t[("gptq_exllama", act, k, n, m)] * simt))
            for m in (16, 32):
                e16 = t.get(("gptq_exllama", act, k, n, m))
                if e16:
                    out[tag]["exllama_time_ratio_to_m1_m16_32"].append(e16 / t[("gptq_exllama", act, k, n, 1)])
    doc = {"anchor": "gptq_kernel_microbenchmark", "timings": str(args.timings), "gpu": args.gpu,
           "hbm_bytes_per_s": hbm, "int4_bytes_per_weight": INT4_BYTES_PER_WEIGHT,
           "alt_gather_bytes_per_weight": ALT_GATHER_BYTES_PER_WEIGHT, "alt_max_rows": ALT_MAX_ROWS,
           "exllama_max_rows": EXLLAMA_MAX_ROWS, "launch_fits": fits,
           "ratios": {tag: {name: summary(v) for name, v in d.items()} for tag, d in out.items()},
           **provenance("0.26.0 (the kernels' release, data/h100-kernels/README.md)")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for tag, d in fits.items():
        for name, f in d.items():
            print(f"{tag:13s} {name:20s} {f}")
    for tag, d in doc["ratios"].items():
        for name, s in d.items():
            print(f"{tag:13s} {name:42s} {s['median']:.3f} ± {s['sd']:.3f} [{s['min']:.3f}, {s['max']:.3f}] "
                  f"({s['shapes']} shapes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
