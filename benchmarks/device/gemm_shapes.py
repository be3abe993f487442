"""Time the dense GEMMs of the H200 data's models, shape by shape, on the GPU (torch's cuBLAS, as vLLM's
unquantized linear layers call it through ``torch.nn.functional.linear``).

Two steps, so that the GPU machine needs only torch:

    python benchmarks/device/gemm_shapes.py shapes --out data/h200-gemm/shapes.json      # here (the catalog)
    python3 benchmarks/device/gemm_shapes.py time --shapes data/h200-gemm/shapes.json \\
        --out $OUT/gemm.jsonl                                                           # on the GPU

Each weight matrix is timed at every row count of ``ROWS`` (decode batches and prefill chunks up to vLLM 0.26's
offline ``max_num_batched_tokens`` of 16384). A model's step reads every weight from HBM once, so the timing
cycles through copies of the weight that together hold several times the GPU's L2 cache: a loop over one copy
would serve small matrices from L2. One JSON line per (shape, rows): median of the timed repetitions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# Row counts (tokens in a step): every decode batch size region and prefill chunk sizes.
ROWS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 1024, 1536,
        2048, 3072, 4096, 6144, 8192, 12288, 16384)
MODELS = ("llama-3.1-8b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b", "gemma-2-9b", "gemma-2-27b", "llama-2-7b",
          "llama-2-13b", "llama-3.1-70b", "mixtral-8x7b", "qwen2.5-72b", "llama-2-70b")
TENSOR_PARALLEL = (1, 2, 4)
L2_MULTIPLE = 8  # weight copies cycled through hold at least this many L2 caches (H200: 50 MiB... 60 MiB)
TARGET_S = 0.005  # timed work per round; MIN_REPS to MAX_REPS back-to-back calls, median of ROUNDS rounds
MIN_REPS, MAX_REPS, ROUNDS = 3, 200, 3
SLEEP_CYCLES = 8_000_000  # ~4 ms at 1.98 GHz: longer than the CPU takes to queue MAX_REPS launches


def shapes(out: Path) -> None:
    """(in_features, out_features) of every dense GEMM of MODELS at each TP (the LM head included)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from perfmodel.model.shape import load_model

    found: dict[tuple[int, int, str], list[str]] = {}
    for name in MODELS:
        model = load_model(name)
        # vLLM's dtype=auto on an H200: the config's float16 or bfloat16; float32 checkpoints run in bfloat16
        dtype = "float16" if model.torch_dtype == "float16" else "bfloat16"
        for tp in TENSOR_PARALLEL:
            for linear in model.linear_layers():
                if linear.num_experts > 1 or linear.parallel == "replicated":
                    continue  # fused MoE and the router are not cuBLAS GEMMs of this shape
                k, n = linear.in_features, linear.out_features
                k, n = (k, n // tp) if linear.parallel == "column" else (k // tp, n)
                found.setdefault((k, n, dtype), []).append(f"{name}/tp{tp}/{linear.name}")
            found.setdefault((model.hidden_size, model.vocab_size // tp, dtype), []).append(
                f"{name}/tp{tp}/lm_head")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"in_features": k, "out_features": n, "dtype": d, "used_by": sorted(set(u))}
            for (k, n, d), u in sorted(found.items())]
    out.write_text(json.dumps({"rows": list(ROWS), "shapes": rows}, indent=1) + "\n")
    print(f"{len(rows)} shapes x {len(ROWS)} row counts -> {out}")


def time_shapes(shapes_file: Path, out: Path, deadline_s: float) -> None:
    import torch

    spec = json.loads(shapes_file.read_text())
    device = torch.device("cuda")
    props = torch.cuda.get_device_properties(device)
    l2_bytes = getattr(props, "L2_cache_size", 50 * 2**20)
    meta = {"gpu": props.name, "torch": torch.__version__, "cuda": torch.version.cuda,
            "l2_bytes": l2_bytes, "method": "back-to-back calls after a GPU sleep, median of rounds",
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["in_features"], r["out_features"], r["dtype"], r["rows"]))
    start = time.monotonic()
    widest = max(s["in_features"] for s in spec["shapes"])
    inputs = {d: torch.randn(max(spec["rows"]), widest, device=device, dtype=getattr(torch, d))
              for d in sorted({s["dtype"] for s in spec["shapes"]})}
    with out.open("a") as f:
        for s in spec["shapes"]:
            k, n, dtype = s["in_features"], s["out_features"], s["dtype"]
            x_max = inputs[dtype]
            copies = max(1, -(-L2_MULTIPLE * l2_bytes // (k * n * x_max.element_size())))
            weights = [torch.randn(n, k, device=device, dtype=x_max.dtype) for _ in range(copies)]
            for m in spec["rows"]:
                if (k, n, dtype, m) in done:
                    continue
                if time.monotonic() - start > deadline_s:
                    print(f"deadline reached at {k}x{n}", flush=True)
                    return
                x = x_max[:m, :k].contiguous()
                for w in weights[:3]:  # warm-up: cuBLAS heuristics, clocks
                    torch.nn.functional.linear(x, w)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                torch.nn.functional.linear(x, weights[0])
                torch.cuda.synchronize()
                once = max(time.perf_counter() - t0, 1e-6)
                reps = max(MIN_REPS, min(MAX_REPS, int(TARGET_S / once)))
                times = []
                for _ in range(ROUNDS):
                    # The GPU sleeps while the CPU queues the kernels, then runs them back to back: the time
                    # between the events is the kernels' alone (timing each launch separately adds the CPU's
                    # launch gap, several times a small matrix's own time)
                    torch.cuda._sleep(SLEEP_CYCLES)
                    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    a.record()
                    for i in range(reps):
                        torch.nn.functional.linear(x, weights[i % copies])
                    b.record()
                    torch.cuda.synchronize()
                    times.append(a.elapsed_time(b) / 1e3 / reps)
                times.sort()
                f.write(json.dumps({"in_features": k, "out_features": n, "dtype": dtype, "rows": m,
                                    "median_s": times[len(times) // 2],
                                    "min_s": times[0], "reps": reps, "weight_copies": copies, **meta}) + "\n")
                f.flush()
            del weights
            torch.cuda.empty_cache()
            print(f"{k}x{n} done ({time.monotonic() - start:.0f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("shapes")
    s.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("time")
    t.add_argument("--shapes", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--deadline-s", type=float, default=480.0)
    args = p.parse_args(argv)
    if args.cmd == "shapes":
        shapes(args.out)
    else:
        time_shapes(args.shapes, args.out, args.deadline_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
