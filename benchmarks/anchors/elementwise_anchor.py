"""Reduce a kernel table's elementwise family (benchmarks/device/kernel_shapes.py --families elementwise) to anchors of
perfmodel's V0 elementwise operator (perfmodel/cost/step.py ``elementwise_layer``): per kernel a fixed time plus the
bytes it moves at ``elementwise_memory_efficiency`` of HBM.

For each op and width: the fixed time is the call's time at one row; the efficiency is the slope of time against the
bytes the script counted (kernel_shapes.elementwise_bytes) over the rows from 256 up, where the fixed part no longer
dominates. A layer's efficiency weighs each op by the bytes it moves in a decoder layer of Qwen2.5-72B at TP 8 (the
Taiwania layout; elementwise_layer's mix). As for the GPTQ kernels (gptq_anchor.py), the quantity that carries to
another GPU is the ratio to cuBLAS's fp16 weight streaming on the same GPU (``--reference``: the kernel table with
cuBLAS fp16 at one row; its rate without the fixed time per call, as gptq_anchor.py's launch fits take it).

    PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/anchors/elementwise_anchor.py \\
        data/h100-elementwise/kernels-h100-elementwise.jsonl --reference data/h100-kernels/kernels.jsonl \\
        --gpu h100-sxm --out data/anchors/h100-elementwise-anchor.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gptq_anchor import robust_sd, summary  # noqa: E402
from v1_scheduler import provenance  # noqa: E402

MIN_ROWS_FOR_SLOPE = 256
# bytes per token of each timed op in a Qwen2.5-72B decoder layer at TP 8, fp16 (perfmodel.cost.step.elementwise_layer
# also counts GPTQ's QKV bias add and the attention output copy, 5% more bytes, which the table did not time)
QWEN72_TP8_MIX = {("fused_add_rms_norm", 8192): 2 * 2 * 4 * 8192, ("rotary_embedding", 1152): 2 * 2 * 1152,
                  ("reshape_and_cache_flash", 256): 2 * 2 * 256, ("silu_and_mul", 3712): 2 * 3 * 3712}


def read(path: Path, family: str) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines())
            if r.get("record") == "measurement" and r.get("family") == family]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("timings", type=Path)
    parser.add_argument("--reference", type=Path, required=True, help="kernel table with cuBLAS fp16 at m = 1")
    parser.add_argument("--gpu", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from hardware.catalog import load_gpu

    hbm = load_gpu(args.gpu).memory_bandwidth_bytes_per_s
    by_op: dict[tuple[str, int], dict[int, tuple[float, float]]] = defaultdict(dict)
    for r in read(args.timings, "elementwise"):
        by_op[(r["mode"], r["k"])][r["m"]] = (r["median_s"], r["bytes"])
    ops = {}
    for key, rows in sorted(by_op.items()):
        fixed = rows[1][0]
        big = [(t - fixed, b) for m, (t, b) in rows.items() if m >= MIN_ROWS_FOR_SLOPE]
        dt, nb = np.array(big).T
        slope = float(np.dot(nb, dt) / np.dot(nb, nb))  # seconds per byte, through the origin
        ops[f"{key[0]}|{key[1]}"] = {"fixed_s": fixed, "memory_efficiency": 1.0 / (slope * hbm),
                                     "max_time_residual": float(np.max(np.abs(fixed + slope * nb - (dt + fixed))
                                                                       / (dt + fixed)))}
    mix = {f"{op}|{k}": w for (op, k), w in QWEN72_TP8_MIX.items()}
    # a layer's bytes over the sum of each op's bytes / its rate: the rate the layer's bytes move at
    layer = sum(mix.values()) / sum(w / ops[k]["memory_efficiency"] for k, w in mix.items())
    cublas_m1 = [(2.0 * r["k"] * r["n"], r["median_s"]) for r in read(args.reference, "cublas_fp16") if r["m"] == 1]
    nb1, t1 = np.array(cublas_m1).T
    # cuBLAS's streaming rate without its fixed time per call (time = fixed + bytes / rate over the shapes), the
    # reference gptq_anchor.py's launch fits use too
    (_, slope1), *_ = np.linalg.lstsq(np.vstack([np.ones_like(nb1), nb1]).T, t1, rcond=None)
    reference = float(1.0 / (slope1 * hbm))
    single_row = nb1 / (t1 * hbm)
    fixed_all = [o["fixed_s"] for o in ops.values()]
    doc = {"anchor": "elementwise_kernel_microbenchmark", "timings": str(args.timings), "reference": str(args.reference),
           "gpu": args.gpu, "hbm_bytes_per_s": hbm, "min_rows_for_slope": MIN_ROWS_FOR_SLOPE, "ops": ops,
           "fixed_s": summary(fixed_all),
           "qwen72_tp8_layer_memory_efficiency": layer, "cublas_fp16_streaming_memory_efficiency": reference,
           "cublas_fp16_m1_memory_efficiency_median": float(np.median(single_row)),
           "layer_over_cublas_streaming": layer / reference,
           **provenance("0.26.0 (the kernels' release, data/h100-elementwise/README.md)")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for k, o in ops.items():
        print(f"{k:32s} fixed {o['fixed_s'] * 1e6:5.2f} us  HBM fraction {o['memory_efficiency']:.3f}  "
              f"max residual {o['max_time_residual']:.2f}")
    f = doc["fixed_s"]
    print(f"fixed time per call: median {f['median'] * 1e6:.2f} us (sd {f['sd'] * 1e6:.2f}, {f['shapes']} op widths)")
    print(f"Qwen2.5-72B TP8 layer: {layer:.3f} of HBM; cuBLAS fp16 streaming (launch fit at m = 1): "
          f"{reference:.3f}; ratio {layer / reference:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
