"""Time vLLM's own GEMM and attention kernels shape by shape on one Hopper GPU (issue 22, item 2).

What: for the weight matrices (QKV, O, gate/up, down) of Llama-3.1-8B, Qwen2.5-7B, Qwen2.5-32B and
Llama-3.1-70B at TP 1, and row counts m from 1 to 8192, the kernels vLLM calls for

  * cuBLAS bf16/fp16 (``torch.nn.functional.linear``; a few shapes, the reference),
  * GPTQ int4, group 128: the exllama kernel ``_C.gptq_gemm`` (use_exllama True after ``gptq_shuffle``; and
    use_exllama False, vLLM's path when exllama is off: an "alt" kernel for m <= 8, dequantise + cuBLAS above),
    and Marlin ``_C.gptq_marlin_gemm`` (weights through ``gptq_marlin_repack``), each without and with act-order,
  * AWQ int4 through awq_marlin (the same ``gptq_marlin_gemm`` op, uint4 with zero points),
  * Machete (``ops.machete_mm`` on weights through ``machete_prepack_B``; Hopper only), the kernel vLLM 0.26 picks
    first on Hopper for GPTQ (uint4b8, without and with act-order: the activations' columns permuted by
    ``ops.permute_cols`` per call) and AWQ (uint4 with zero points) checkpoints, as
    vllm/model_executor/kernels/linear/mixed_precision/machete.py ``MacheteLinearKernel`` prepares and calls it,
  * FP8 W8A8 ``cutlass_scaled_mm`` with per-tensor and per-token x per-channel scales, and the activation
    quantisation ``scaled_fp8_quant`` (dynamic per-tensor and per-token) on its own,
  * FlashAttention (vllm.vllm_flash_attn ``flash_attn_varlen_func``, FA3 on Hopper, as vLLM's FLASH_ATTN backend
    calls it: paged KV, block size 16, block table): decode (one query token per sequence) and causal prefill,
  * the elementwise kernels of a decoder layer, vLLM's own CUDA ops as its custom-op layers call them (fp16):
    ``rms_norm``, ``fused_add_rms_norm`` (RMSNorm), ``silu_and_mul`` (SiluAndMul), ``rotary_embedding``
    (RotaryEmbedding, neox style) and ``reshape_and_cache_flash`` (the KV cache write), over the hidden and
    per-GPU intermediate widths and head layouts of the models above and of Qwen2.5-72B / Llama-3.1-405B at TP 8.

How to run (the GPU machine needs only torch and vLLM; no weights, no network):

    PYTHONPATH=/tmp/site python3 benchmarks/device/kernel_shapes.py --out $OUT/kernels.jsonl --budget-s 240
    python3 benchmarks/device/kernel_shapes.py --dry-run          # anywhere: the plan and a time estimate

``--families``, ``--models`` and ``--rows`` (comma lists) narrow the plan; ``--machete-group-sizes`` (64, 128) and
``--machete-dtypes`` (float16, bfloat16) widen the Machete families'. With torch and an importable vLLM
(e.g. the CPU build), ``--dry-run`` also runs every GEMM preparation and launch on the meta device against the
installed op signatures; ``--signatures-from path/to/vllm/_custom_ops.py`` checks against another release's
source instead. The op wrappers are called by parameter name, so that the releases' differing signatures bind:
later vLLM releases dropped GPTQ act-order (no g_idx in gptq_gemm, no perm in the Marlin op, which became
``marlin_gemm``); there the act-order variants are written as ``unsupported`` records, not timed.

Method (as benchmarks/device/gemm_shapes.py, data/h200-gemm/README.md): per (kernel, shape, m) a few warm-up
calls, then ROUNDS rounds in each of which the GPU sleeps while the CPU queues ``reps`` calls that then run back
to back between two CUDA events (the sleep is sized from the measured CPU queueing time, so that the events time
the kernels and not the launch gaps); the calls cycle through copies of the weights (KV cache for attention)
that together hold 8x the L2 cache, so that every call reads them from HBM as a model's step does. Median and
minimum of the rounds' per-call times. Weight values are random (packed int4 words, scales, g_idx): the kernels'
time does not depend on them, only act-order's g_idx permutation does, which is a random one as GPTQ makes.

Output: JSON lines to --out, written and flushed one by one: a header record (torch, vLLM, CUDA, GPU, driver),
one ``measurement`` record per (kernel, shape, m) with median_s, min_s, iterations, bytes (weights + activations
+ output), flops, bytes_per_s and flop_per_s, and an ``error`` record for every exception (the run goes on).
The measuring runs in a child process; if it dies or loses its CUDA context, it is restarted and resumes, skipping
the kernel variant that failed (recorded as an error). ``--budget-s`` stops cleanly, keeping what was written; a
rerun with the same --out resumes where the file ends.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
import traceback

# hidden, intermediate, attention heads, KV heads, head_dim: perfmodel/catalog/<name>.json (HF config.json); the
# "-tpN" entries are one GPU's share of Qwen2.5-72B-Instruct-GPTQ-Int4 (data/taiwania: intermediate 29696, 64 heads,
# 8 KV heads) at TP N, the Taiwania layouts' matrices (not run by default: --models names them)
MODELS = {
    "llama-3.1-8b": (4096, 14336, 32, 8, 128),
    "qwen2.5-7b": (3584, 18944, 28, 4, 128),
    "qwen2.5-32b": (5120, 27648, 40, 8, 128),
    "llama-3.1-70b": (8192, 28672, 64, 8, 128),
    "qwen2.5-72b-tp8": (8192, 3712, 8, 1, 128),
    "qwen2.5-72b-tp4": (8192, 7424, 16, 2, 128),
}
DEFAULT_MODELS = ("llama-3.1-8b", "qwen2.5-7b", "qwen2.5-32b", "llama-3.1-70b")
ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
GROUP_SIZE = 128
# cuBLAS is timed on these models' matrices only
REFERENCE_SHAPES = {"llama-3.1-8b", "llama-3.1-70b", "qwen2.5-72b-tp8", "qwen2.5-72b-tp4"}
# attention: (query heads, KV heads) of Llama-3.1-8B, Llama-3.1-70B at TP 1 and Qwen2.5-7B; head_dim 128
HEAD_LAYOUTS = ((32, 8), (64, 8), (28, 4))
DECODE_BATCHES = (1, 8, 32, 128)
DECODE_CONTEXTS = (1024, 4096, 16384)
PREFILL_LENGTHS = (512, 2048, 8192)
BLOCK_SIZE = 16  # vLLM's default KV block size for FLASH_ATTN
L2_MULTIPLE = 8
MAX_COPIES = 64
TARGET_S = 0.003  # timed work per round
MIN_REPS, MAX_REPS, ROUNDS, WARMUP = 3, 100, 3, 3
DEVICE = "cuda"  # a test harness may run the control flow on "cpu" with stand-in ops
CHILD_PREFIX: list[str] | None = None  # the command that runs the child (a test harness wraps it)
GPU_HZ = 2.0e9  # torch.cuda._sleep counts GPU cycles; Hopper boosts to ~1.98 GHz, so this errs long
# used only by the time estimate (not by the measurement): rough H200 rates
EST_HBM_BYTES_PER_S, EST_FLOP_PER_S, EST_OVERHEAD_S, EST_LAUNCH_S = 4.0e12, 6.0e14, 0.004, 25e-6

FAMILIES = ("cublas_bf16", "cublas_fp16", "gptq_exllama", "gptq_alt", "gptq_marlin", "awq_marlin",
            "machete_gptq", "machete_awq", "fp8_cutlass_tensor", "fp8_cutlass_channel", "fp8_quant", "attn_decode", "attn_prefill", "elementwise")
# elementwise kernels: hidden sizes (Qwen2.5-7B, Llama-3.1-8B, Qwen2.5-32B, 70B/72B, Llama-3.1-405B); the MLP's
# per-GPU intermediate widths (Qwen2.5-72B GPTQ's padded 29696 at TP 8 and 4, then the four models at TP 1);
# (query, KV) heads per GPU (Qwen2.5-72B at TP 8 and 4, Qwen2.5-7B, Llama-3.1-8B, Llama-3.1-70B)
NORM_WIDTHS = (3584, 4096, 5120, 8192, 16384)
MLP_WIDTHS = (3712, 7424, 14336, 18944, 27648, 28672)
ROTARY_HEADS = ((8, 1), (16, 2), (28, 4), (32, 8), (64, 8))
CACHE_KV_HEADS = (1, 8)
ROTARY_MAX_POSITION = 4096


# ----------------------------------------------------------------------------------------------- the plan
def weight_shapes(models) -> list[dict]:
    """(k=in_features, n=out_features) of each model's four dense matrices at TP 1, merged across models."""
    found: dict[tuple[int, int], dict] = {}
    for name in models:
        hidden, inter, heads, kv_heads, hd = MODELS[name]
        for matrix, k, n in (("qkv", hidden, (heads + 2 * kv_heads) * hd), ("o", heads * hd, hidden),
                             ("gate_up", hidden, 2 * inter), ("down", inter, hidden)):
            s = found.setdefault((k, n), {"k": k, "n": n, "used_by": [], "reference": False})
            s["used_by"].append(f"{name}/{matrix}")
            s["reference"] |= name in REFERENCE_SHAPES
    return list(found.values())


def gemm_variants(families, machete_group_sizes=(GROUP_SIZE,), machete_dtypes=("float16",)) -> list[dict]:
    """Each GEMM kernel configuration: family, dtype, act_order, op options (Machete's over its group sizes and
    activation dtypes: vLLM 0.26 takes -1/64/128 with 16-bit activations, utils/machete_utils.py)."""
    v = []
    for fam in families:
        if fam in ("cublas_bf16", "cublas_fp16"):
            dtype = {"cublas_bf16": "bfloat16", "cublas_fp16": "float16"}[fam]
            v.append({"family": fam, "dtype": dtype, "act_order": False, "group_size": None})
        elif fam in ("gptq_exllama", "gptq_alt", "gptq_marlin"):
            for ao in (False, True):
                v.append({"family": fam, "dtype": "float16", "act_order": ao, "group_size": GROUP_SIZE})
        elif fam == "awq_marlin":
            v.append({"family": fam, "dtype": "float16", "act_order": False, "group_size": GROUP_SIZE})
        elif fam in ("machete_gptq", "machete_awq"):
            for dtype in machete_dtypes:
                for g in machete_group_sizes:
                    for ao in ((False, True) if fam == "machete_gptq" else (False,)):
                        v.append({"family": fam, "dtype": dtype, "act_order": ao, "group_size": g})
        elif fam in ("fp8_cutlass_tensor", "fp8_cutlass_channel"):
            v.append({"family": fam, "dtype": "bfloat16", "act_order": False, "group_size": None})
    return v


def gemm_bytes(fam: str, k: int, n: int, m: int, group_size: int | None, act_order: bool) -> int:
    """Bytes a call moves at least once: weights (+ scales, zeros, g_idx), activations and output."""
    act = out = 2
    if fam.startswith("cublas"):
        w = 2 * k * n
    elif fam.startswith("fp8_cutlass"):
        act = 1
        w = k * n + (4 * n if fam.endswith("channel") else 4) + (4 * m if fam.endswith("channel") else 4)
    else:  # int4: packed weights, fp16 scales per group, packed 4-bit zeros (GPTQ qzeros; AWQ), g_idx
        groups = k // group_size
        w = k * n // 2 + 2 * groups * n
        if fam in ("gptq_exllama", "gptq_alt", "awq_marlin"):
            w += groups * n // 2
        if fam == "machete_awq":  # zero points pre-multiplied by the scales, fp16 (MacheteLinearKernel)
            w += 2 * groups * n
        if act_order or fam in ("gptq_alt",):
            w += 4 * k
    return w + act * m * k + out * m * n


def attention_cases(families) -> list[dict]:
    cases = []
    if "attn_decode" in families:
        for hq, hkv in HEAD_LAYOUTS:
            for ctx in DECODE_CONTEXTS:
                for b in DECODE_BATCHES:
                    cases.append({"family": "attn_decode", "q_heads": hq, "kv_heads": hkv, "head_dim": 128,
                                  "batch": b, "context": ctx, "q_len": 1})
    if "attn_prefill" in families:
        for hq, hkv in HEAD_LAYOUTS:
            for length in PREFILL_LENGTHS:
                cases.append({"family": "attn_prefill", "q_heads": hq, "kv_heads": hkv, "head_dim": 128,
                              "batch": 1, "context": length, "q_len": length})
    return cases


def elementwise_cases(rows) -> list[dict]:
    """One case per (op, width or head layout, rows): ``mode`` names the op, ``k`` the row width it works on."""
    cases = []
    for op, widths in (("rms_norm", NORM_WIDTHS), ("fused_add_rms_norm", NORM_WIDTHS), ("silu_and_mul", MLP_WIDTHS)):
        cases += [{"family": "elementwise", "mode": op, "k": w, "m": m, "dtype": "float16"}
                  for w in widths for m in rows]
    for hq, hkv in ROTARY_HEADS:
        cases += [{"family": "elementwise", "mode": "rotary_embedding", "k": (hq + hkv) * 128, "q_heads": hq,
                   "kv_heads": hkv, "head_dim": 128, "m": m, "dtype": "float16"} for m in rows]
    for hkv in CACHE_KV_HEADS:
        cases += [{"family": "elementwise", "mode": "reshape_and_cache_flash", "k": 2 * hkv * 128, "kv_heads": hkv,
                   "head_dim": 128, "m": m, "dtype": "float16"} for m in rows]
    return cases


def elementwise_bytes(it: dict) -> int:
    """Bytes an elementwise call reads and writes (fp16 elements; the norm weight, the positions, cos/sin rows and
    slot indices are counted; in-place ops read and write their tensors)."""
    m, w, op = it["m"], it["k"], it["mode"]
    if op == "rms_norm":
        return 2 * (2 * m * w) + 2 * w
    if op == "fused_add_rms_norm":
        return 2 * (4 * m * w) + 2 * w
    if op == "silu_and_mul":
        return 2 * (3 * m * w)
    if op == "rotary_embedding":
        return 2 * (2 * m * w) + 2 * m * it["head_dim"] + 8 * m
    if op == "reshape_and_cache_flash":
        return 2 * (2 * m * w) + 8 * m
    raise ValueError(op)


def attention_cost(c: dict) -> tuple[int, int]:
    """(bytes, flops) of one call: KV read once, q, out; QK^T and PV (causal prefill: half the square)."""
    b, ctx, ql, hq, hkv, d = c["batch"], c["context"], c["q_len"], c["q_heads"], c["kv_heads"], c["head_dim"]
    kv = 2 * b * ctx * hkv * d * 2
    qo = 2 * b * ql * hq * d * 2
    pairs = b * ql * ctx if ql == 1 else b * ql * (ql + 1) // 2
    return kv + qo, 4 * pairs * hq * d


def _machete_variant(rec: dict) -> bool:
    """A Machete configuration other than the default float16 group 128 (--machete-dtypes, --machete-group-sizes)."""
    return (rec.get("family", "").startswith("machete")
            and (rec.get("dtype"), rec.get("group_size")) != ("float16", GROUP_SIZE))


def case_key(rec: dict) -> str:
    fields = ("family", "k", "n", "m", "act_order", "q_heads", "kv_heads", "batch", "context", "q_len", "mode")
    if _machete_variant(rec):
        fields += ("dtype", "group_size")  # the variants beyond the default; default keys stay as before
    return "|".join(f"{f}={rec.get(f)}" for f in fields if f in rec)


def plan(args) -> list[dict]:
    """Every measurement, in run order (the short ones first, so that a spent budget cuts the last model's
    GEMMs): attention, fp8 activation quantisation, then the GEMMs model by model."""
    fams = [f for f in FAMILIES if f in args.families]
    rows = args.rows
    items = [dict(c) for c in attention_cases(fams)]
    if "elementwise" in fams:
        items += elementwise_cases(rows)
    if "fp8_quant" in fams:
        for k in sorted({s["k"] for s in weight_shapes(args.models)}):
            for mode in ("dynamic_per_tensor", "dynamic_per_token"):
                for m in rows:
                    items.append({"family": "fp8_quant", "mode": mode, "k": k, "m": m, "dtype": "bfloat16"})
    for s in weight_shapes(args.models):
        for v in gemm_variants(fams, args.machete_group_sizes, args.machete_dtypes):
            if v["family"].startswith("cublas") and not s["reference"]:
                continue
            for m in rows:
                items.append({**v, "k": s["k"], "n": s["n"], "m": m, "used_by": s["used_by"]})
    for it in items:
        it["key"] = case_key(it)
        it["kernel"] = it["family"]
        it["variant_key"] = (f"elementwise|{it['mode']}" if it["family"] == "elementwise"
                             else f"{it['family']}|act_order={it.get('act_order')}")
        if "n" in it:  # GEMM: one weight preparation serves all m of a (kernel, shape)
            it["group_key"] = f"{it['family']}|k={it['k']}|n={it['n']}|act_order={it['act_order']}"
            if _machete_variant(it):
                it["group_key"] += f"|dtype={it['dtype']}|group_size={it['group_size']}"
    return items


def cost(it: dict) -> tuple[int, int]:
    fam = it["family"]
    if fam.startswith("attn"):
        return attention_cost(it)
    if fam == "fp8_quant":
        return 2 * it["m"] * it["k"] + it["m"] * it["k"] + 4 * it["m"], 0
    if fam == "elementwise":
        return elementwise_bytes(it), 0
    return (gemm_bytes(fam, it["k"], it["n"], it["m"], it["group_size"], it["act_order"]),
            2 * it["m"] * it["k"] * it["n"])


def estimate_s(it: dict) -> float:
    nbytes, flops = cost(it)
    once = max(nbytes / EST_HBM_BYTES_PER_S, flops / EST_FLOP_PER_S) + 3e-6
    reps = max(MIN_REPS, min(MAX_REPS, int(TARGET_S / once)))
    sleep = min(0.2, max(0.002, 1.5 * reps * EST_LAUNCH_S + 0.001))
    return (WARMUP + 1 + reps) * max(once, EST_LAUNCH_S) + ROUNDS * (reps * once + sleep) + EST_OVERHEAD_S


# ----------------------------------------------------------------------------------------------- output
class Out:
    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.f = open(path, "a")

    def write(self, rec: dict) -> None:
        self.f.write(json.dumps(rec, default=str) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def error(self, it: dict | None, stage: str, exc: BaseException) -> None:
        rec = {"record": "error", "stage": stage, "error": repr(exc)[:2000],
               "traceback": traceback.format_exc()[-3000:], "utc": utc()}
        if it:
            rec.update({k: v for k, v in it.items() if k != "used_by"})
        self.write(rec)
        print(f"ERROR {stage} {it.get('key') if it else ''}: {exc!r}"[:500], flush=True)


def utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def done_keys(path: str) -> set[str]:
    keys = set()
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("record") in ("measurement", "error") and "key" in r:
                    keys.add(r["key"])
                if r.get("record") == "unsupported":
                    keys.add(r.get("group_key"))
                if r.get("record") == "error" and r.get("stage") == "child_died":
                    # a kernel that killed the process (or its CUDA context) would likely do so again for the
                    # other shapes: skip the kernel variant, so that restarts do not eat the budget
                    keys.add(r.get("variant_key"))
    return keys


# ----------------------------------------------------------------------------------------------- timing
class Timer:
    def __init__(self, torch, l2_bytes: int):
        self.torch = torch
        self.l2_bytes = l2_bytes

    def copies(self, nbytes: int) -> int:
        return max(1, min(MAX_COPIES, -(-L2_MULTIPLE * self.l2_bytes // max(nbytes, 1))))

    def measure(self, call, copies: int) -> dict:
        """call(i) launches one kernel call on copy i % copies; returns per-call times of the rounds."""
        torch = self.torch
        for i in range(WARMUP):
            call(i % copies)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        call(0)
        torch.cuda.synchronize()
        once = max(time.perf_counter() - t0, 1e-6)
        reps = max(MIN_REPS, min(MAX_REPS, int(TARGET_S / once)))
        # an unslept round measures how long the CPU takes to queue reps calls: the sleep must outlast it
        t0 = time.perf_counter()
        for i in range(reps):
            call(i % copies)
        enqueue_s = time.perf_counter() - t0
        torch.cuda.synchronize()
        sleep_cycles = int(min(0.2, max(0.002, 1.5 * enqueue_s + 0.001)) * GPU_HZ)
        times = []
        for _ in range(ROUNDS):
            torch.cuda._sleep(sleep_cycles)
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for i in range(reps):
                call(i % copies)
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b) / 1e3 / reps)
        times.sort()
        return {"median_s": times[len(times) // 2], "min_s": times[0], "max_s": times[-1], "reps": reps,
                "rounds": ROUNDS, "iterations": reps * ROUNDS, "weight_copies": copies,
                "cpu_enqueue_s_per_call": enqueue_s / reps, "sleep_s": sleep_cycles / GPU_HZ}


def bind(fn, values: dict):
    """fn's positional arguments by name from values (signatures change across vLLM releases: e.g. a_scales
    joined gptq_marlin_gemm); a parameter without default that values lack gets None (an optional tensor)."""
    sig = inspect.signature(fn)
    kwargs, missing = {}, []
    for name, p in sig.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name in values:
            kwargs[name] = values[name]
        elif p.default is p.empty:
            kwargs[name] = None
            missing.append(name)
    return kwargs, missing


# ----------------------------------------------------------------------------------------------- GEMM prep
class Unsupported(Exception):
    """This vLLM's op has no such variant (e.g. act-order: later releases dropped desc_act)."""


def params(fn) -> set[str]:
    return set(inspect.signature(fn).parameters)


def call_bound(fn, values: dict):
    kwargs, missing = bind(fn, values)
    if missing:
        raise TypeError(f"{getattr(fn, '__name__', fn)}: no value for {missing}")
    return fn(**kwargs)


def marlin_op(ops):
    """vLLM 0.11-era ops.gptq_marlin_gemm (g_idx, perm: act-order in the kernel); later ops.marlin_gemm."""
    fn = getattr(ops, "gptq_marlin_gemm", None) or getattr(ops, "marlin_gemm", None)
    if fn is None:
        raise Unsupported("vllm._custom_ops has neither gptq_marlin_gemm nor marlin_gemm")
    return fn


def prepare_gemm(torch, ops, v: dict, k: int, n: int, dev, sms: int):
    """(make(weight copies) -> launch, base weight, weight bytes, notes) for one kernel configuration and shape."""
    fam, g, ao = v["family"], v["group_size"], v["act_order"]
    notes = {}
    if fam.startswith("cublas"):
        dt = getattr(torch, v["dtype"])
        base = torch.randn(n, k, device=dev, dtype=dt)
        nbytes = 2 * k * n
        F = torch.nn.functional
        return (lambda ws: (lambda x, i: F.linear(x, ws[i]))), base, nbytes, notes
    if fam.startswith("fp8_cutlass"):
        w = torch.randn(n, k, device=dev, dtype=torch.bfloat16).to(torch.float8_e4m3fn)
        nbytes = k * n
        channel = fam.endswith("channel")
        scale_b = torch.rand(1, n, device=dev, dtype=torch.float32) if channel else torch.ones(
            1, 1, device=dev, dtype=torch.float32)
        notes["scale_b_shape"] = list(scale_b.shape)
        mm = ops.cutlass_scaled_mm

        def make(ws):
            def launch(x, i, sa):
                return mm(x, ws[i].t(), sa, scale_b, torch.bfloat16)
            return launch
        return make, w, nbytes, notes
    # int4 GPTQ / AWQ, group g
    groups = k // g
    i32 = torch.int32
    scales = (torch.rand(groups, n, device=dev, dtype=getattr(torch, v["dtype"])) * 0.01)
    rnd = lambda *shape: torch.randint(-2**31, 2**31 - 1, shape, device=dev, dtype=i32)  # noqa: E731
    if ao:  # GPTQ act-order: each input row's group, a random permutation of i // g
        g_idx = (torch.arange(k, device=dev, dtype=i32) // g)[torch.randperm(k, device=dev)].contiguous()
    else:
        g_idx = torch.arange(k, device=dev, dtype=i32) // g
    if fam in ("gptq_exllama", "gptq_alt"):
        # vllm/model_executor/layers/quantization/gptq.py GPTQLinearMethod: qweight (k/8, n), qzeros (k/g, n/8),
        # scales (k/g, n); process_weights_after_loading shuffles with argsort(g_idx) (act-order) or an empty
        # g_idx; with exllama off (act-order on a row-parallel shard) the loaded g_idx is used, no shuffle.
        qweight = rnd(k // 8, n)
        qzeros = rnd(groups, n // 8)
        if fam == "gptq_exllama":
            gi = torch.argsort(g_idx).to(i32) if ao else torch.empty(0, device=dev, dtype=i32)
            if ao and "q_perm" not in params(ops.gptq_shuffle):
                raise Unsupported("ops.gptq_shuffle has no q_perm: no act-order in this vLLM")
            call_bound(ops.gptq_shuffle, {"q_weight": qweight, "q_perm": gi, "bit": 4})
        else:
            gi = g_idx
        if ao and "b_g_idx" not in params(ops.gptq_gemm):
            raise Unsupported("ops.gptq_gemm has no b_g_idx: no act-order in this vLLM")
        kwargs, missing = bind(ops.gptq_gemm, {
            "a": None, "b_q_weight": None, "b_gptq_qzeros": qzeros, "b_gptq_scales": scales, "b_g_idx": gi,
            "use_exllama": fam == "gptq_exllama", "use_v2_format": False, "bit": 4})
        notes["unbound_args"] = missing
        fn = ops.gptq_gemm
        a_name, w_name = "a", "b_q_weight"

        def make(ws):
            def launch(x, i):
                return fn(**{**kwargs, a_name: x, w_name: ws[i]})
            return launch
        return make, qweight, k * n // 2, notes
    if fam.startswith("machete"):
        return prepare_machete(torch, ops, fam, scales, groups, ao, k, n, g, dev, rnd, notes)
    # Marlin (vllm/model_executor/layers/quantization/utils/marlin_utils.py apply_gptq_marlin_linear and
    # apply_awq_marlin_linear call ops.gptq_marlin_gemm; kernels/mixed_precision/marlin.py prepares weights)
    from vllm.scalar_type import scalar_types
    empty = torch.empty(0, device=dev, dtype=i32)
    fn = marlin_op(ops)
    notes["op"] = fn.__name__
    if ao and not {"g_idx", "perm"} <= params(fn):
        raise Unsupported(f"ops.{fn.__name__} has no g_idx/perm: no act-order in this vLLM")
    # marlin_utils.marlin_make_workspace_new: one lock per thread block, sms * max_blocks_per_sm (vLLM passes 1);
    # 4x that is room to spare should a release launch more blocks
    workspace = torch.zeros(4 * sms, device=dev, dtype=i32)
    if fam == "gptq_marlin":
        perm = torch.argsort(g_idx).to(i32) if ao else empty
        qweight = call_bound(ops.gptq_marlin_repack, {"b_q_weight": rnd(k // 8, n), "perm": perm, "size_k": k,
                                                      "size_n": n, "num_bits": 4})
        values = {"b_zeros": empty, "g_idx": g_idx[perm] if ao else empty, "perm": perm,
                  "b_q_type": scalar_types.uint4b8, "is_k_full": True}
    else:  # awq_marlin: AWQ qweight (k, n/8) repacked; zero points (k/g, n/8) int32 in Marlin's layout
        qweight = call_bound(ops.awq_marlin_repack, {"b_q_weight": rnd(k, n // 8), "size_k": k, "size_n": n,
                                                     "num_bits": 4})
        values = {"b_zeros": rnd(groups, n // 8), "g_idx": empty, "perm": empty,
                  "b_q_type": scalar_types.uint4, "is_k_full": True}
    values.update({"c": None, "b_bias": None, "b_scales": scales, "global_scale": None, "a_scales": None,
                   "workspace": workspace, "size_n": n, "size_k": k, "use_atomic_add": False,
                   "use_fp32_reduce": True, "is_zp_float": False})  # marlin_utils USE_FP32_REDUCE_DEFAULT
    a_name, w_name = "a", "b_q_weight"
    kwargs, missing = bind(fn, {**values, a_name: None, w_name: None, "size_m": 0})
    notes["unbound_args"] = missing

    def make(ws):
        def launch(x, i):
            return fn(**{**kwargs, a_name: x, w_name: ws[i], "size_m": x.shape[0]})
        return launch
    return make, qweight, k * n // 2, notes


def prepare_machete(torch, ops, fam, scales, groups, ao, k, n, g, dev, rnd, notes):
    """MacheteLinearKernel (vLLM 0.26, kernels/linear/mixed_precision/machete.py): the packed int4 weight (k/8, n)
    made column-major and prepacked; GPTQ uint4b8 without zero points, AWQ uint4 with fp16 zero points holding
    -scale x zero; act-order (full input only) permutes the weight's rows once and the activations' columns per
    call with ops.permute_cols (fp16, k % 8 == 0)."""
    from vllm.scalar_type import scalar_types
    if not all(hasattr(ops, f) for f in ("machete_mm", "machete_prepack_B")):
        raise Unsupported("vllm._custom_ops has no machete_mm / machete_prepack_B")
    awq = fam == "machete_awq"
    b_type = scalar_types.uint4 if awq else scalar_types.uint4b8
    packed = rnd(k // 8, n)
    act = scales.dtype  # the activations' 16-bit type: scales and zero points share it (MacheteLinearKernel)
    qweight = call_bound(ops.machete_prepack_B, {"b_q_weight": packed.t().contiguous().t(), "a_type": act,
                                                 "b_type": b_type, "group_scales_type": act})
    zeros = None
    if awq:
        zeros = (-scales * torch.randint(0, 16, (groups, n), device=dev).to(act)).contiguous()
    perm = torch.randperm(k, device=dev).to(torch.int32) if ao else None
    values = {"b_type": b_type, "b_group_scales": scales, "b_group_zeros": zeros, "b_group_size": g}
    notes["op"] = "machete_mm"
    mm, permute = ops.machete_mm, getattr(ops, "permute_cols", None)
    if ao and permute is None:
        raise Unsupported("vllm._custom_ops has no permute_cols")

    kwargs, missing = bind(mm, {**values, "a": None, "b_q": None})
    notes["unbound_args"] = missing

    def make(ws):
        def launch(x, i):
            if perm is not None:
                x = permute(x, perm)
            return mm(**{**kwargs, "a": x, "b_q": ws[i]})
        return launch
    return make, qweight, k * n // 2, notes


def gemm_call(torch, ops, v: dict, launch, m: int, k: int, dev):
    """call(i) for row count m: the activations (fp8: quantised once, outside the timing)."""
    fp8 = v["family"].startswith("fp8_cutlass")
    x = torch.randn(m, k, device=dev, dtype=torch.bfloat16 if fp8 else getattr(torch, v["dtype"]))
    if fp8:
        xq, sa = call_bound(ops.scaled_fp8_quant, {"input": x,
                                                   "use_per_token_if_dynamic": v["family"].endswith("channel")})
        return lambda i: launch(xq, i, sa)
    return lambda i: launch(x, i)


def run_gemm_group(torch, ops, timer, out, items, dev, over_budget, inflight, sms) -> bool:
    """All m of one (kernel configuration, shape); False when the budget is spent."""
    it0 = items[0]
    v, k, n = it0, it0["k"], it0["n"]
    if over_budget():
        return False
    inflight({**it0, "in_prepare": True})
    try:
        make, base, nbytes, notes = prepare_gemm(torch, ops, v, k, n, dev, sms)
        copies = timer.copies(nbytes)
        ws = [base] + [base.clone() for _ in range(copies - 1)]
        launch = make(ws)
        torch.cuda.synchronize()
    except Unsupported as e:
        out.write({"record": "unsupported", "group_key": it0["group_key"], "family": v["family"], "k": k, "n": n,
                   "act_order": v["act_order"], "reason": str(e), "utc": utc()})
        print(f"unsupported {it0['group_key']}: {e}", flush=True)
        return True
    except Exception as e:  # noqa: BLE001
        for it in items:
            out.error(it, "prepare", e)
        check_context(torch)
        return True
    for it in items:
        if over_budget():
            return False
        m = it["m"]
        inflight(it)
        try:
            r = timer.measure(gemm_call(torch, ops, v, launch, m, k, dev), copies)
            nb, fl = cost(it)
            rec = {"record": "measurement", **it, **r, **notes, "bytes": nb,
                   "flops": fl, "bytes_per_s": nb / r["median_s"], "flop_per_s": fl / r["median_s"],
                   "weight_bytes": nbytes, "utc": utc()}
            # csrc/quantization/gptq/q_gemm.cu: MAX_Q_GEMM_ROWS 50 (exllama), MAX_ALT_GEMM_ROWS 8 (alt); above
            # them the op dequantises the weight and calls cuBLAS
            if v["family"] == "gptq_alt":
                rec["path"] = "alt_kernel" if m <= 8 else "reconstruct_cublas"
            if v["family"] == "gptq_exllama":
                rec["path"] = "exllama_kernel" if m <= 50 else "reconstruct_cublas"
            out.write(rec)
        except Exception as e:  # noqa: BLE001
            out.error(it, "measure", e)
            check_context(torch)
    del ws, base, launch
    torch.cuda.empty_cache()
    return True


def run_quant(torch, ops, timer, out, it, dev) -> None:
    x = torch.randn(it["m"], it["k"], device=dev, dtype=torch.bfloat16)
    per_token = it["mode"] == "dynamic_per_token"
    kwargs, _ = bind(ops.scaled_fp8_quant, {"input": x, "use_per_token_if_dynamic": per_token})
    fn = ops.scaled_fp8_quant
    r = timer.measure(lambda i: fn(**kwargs), 1)
    nb, _ = cost(it)
    out.write({"record": "measurement", **it, **r, "bytes": nb, "flops": 0, "bytes_per_s": nb / r["median_s"],
               "flop_per_s": 0.0, "utc": utc()})


def prepare_elementwise(torch, ops, it: dict, dev):
    """(make(copy index) -> the op's tensors, call(tensors)) for one elementwise case, as vLLM's layers call the
    ops: layernorm.py RMSNorm.forward_cuda, activation.py SiluAndMul.forward_cuda (torch.ops._C.silu_and_mul),
    rotary_embedding.py RotaryEmbedding.forward_cuda, the FLASH_ATTN backend's KV cache write."""
    dt = getattr(torch, it["dtype"])
    m, w, op = it["m"], it["k"], it["mode"]
    rand = lambda *shape: torch.randn(*shape, device=dev, dtype=dt)  # noqa: E731
    if op in ("rms_norm", "fused_add_rms_norm"):
        weight = rand(w)
        if op == "rms_norm":
            fn = ops.rms_norm
            return (lambda: (torch.empty(m, w, device=dev, dtype=dt), rand(m, w)),
                    lambda t: fn(t[0], t[1], weight, 1e-6))
        fn = ops.fused_add_rms_norm
        return lambda: (rand(m, w), rand(m, w)), lambda t: fn(t[0], t[1], weight, 1e-6)
    if op == "silu_and_mul":
        fn = torch.ops._C.silu_and_mul
        return lambda: (torch.empty(m, w, device=dev, dtype=dt), rand(m, 2 * w)), lambda t: fn(t[0], t[1])
    if op == "rotary_embedding":
        hq, hkv, d = it["q_heads"], it["kv_heads"], it["head_dim"]
        cache = rand(ROTARY_MAX_POSITION, d)
        positions = torch.randint(0, ROTARY_MAX_POSITION, (m,), device=dev, dtype=torch.int64)
        fn = ops.rotary_embedding
        return (lambda: (rand(m, hq * d), rand(m, hkv * d)),
                lambda t: fn(positions, t[0], t[1], d, cache, True))
    if op == "reshape_and_cache_flash":
        hkv, d = it["kv_heads"], it["head_dim"]
        blocks = -(-m // BLOCK_SIZE)
        slots = torch.arange(m, device=dev, dtype=torch.int64)
        scale = torch.ones(1, device=dev, dtype=torch.float32)
        fn = ops.reshape_and_cache_flash
        return (lambda: (rand(m, hkv, d), rand(m, hkv, d), rand(blocks, BLOCK_SIZE, hkv, d),
                         rand(blocks, BLOCK_SIZE, hkv, d)),
                lambda t: fn(t[0], t[1], t[2], t[3], slots, "auto", scale, scale))
    raise ValueError(op)


def run_elementwise(torch, ops, timer, out, it, dev) -> None:
    make, call = prepare_elementwise(torch, ops, it, dev)
    nb, _ = cost(it)
    copies = timer.copies(nb)
    tensors = [make() for _ in range(copies)]
    r = timer.measure(lambda i: call(tensors[i]), copies)
    out.write({"record": "measurement", **it, **r, "bytes": nb, "flops": 0, "bytes_per_s": nb / r["median_s"],
               "flop_per_s": 0.0, "utc": utc()})
    del tensors


# ----------------------------------------------------------------------------------------------- attention
def flash_attn():
    """(flash_attn_varlen_func, fa_version) as vLLM's FLASH_ATTN backend picks them on this GPU."""
    from vllm.vllm_flash_attn import flash_attn_varlen_func
    version = None
    try:
        from vllm.vllm_flash_attn import is_fa_version_supported
        version = 3 if is_fa_version_supported(3) else 2
    except Exception:  # noqa: BLE001
        pass
    return flash_attn_varlen_func, version


def run_attention(torch, fa, timer, out, it, dev) -> None:
    func, version = fa
    b, ctx, ql, hq, hkv, d = it["batch"], it["context"], it["q_len"], it["q_heads"], it["kv_heads"], it["head_dim"]
    dt = torch.bfloat16
    blocks_per_seq = -(-ctx // BLOCK_SIZE)
    kv_bytes = 2 * b * blocks_per_seq * BLOCK_SIZE * hkv * d * 2
    copies = timer.copies(kv_bytes)
    if kv_bytes * copies > 40 * 2**30:
        raise RuntimeError(f"KV pool of {kv_bytes * copies / 2**30:.1f} GiB is too large")
    nblocks = copies * b * blocks_per_seq
    # vllm/v1/attention/backends/flash_attn.py: kv_cache (2, num_blocks, block_size, kv_heads, head_size)
    kv = torch.randn(2, nblocks, BLOCK_SIZE, hkv, d, device=dev, dtype=dt)
    tables = [(torch.arange(b * blocks_per_seq, device=dev, dtype=torch.int32) + c * b * blocks_per_seq)
              .view(b, blocks_per_seq) for c in range(copies)]
    q = torch.randn(b * ql, hq, d, device=dev, dtype=dt)
    o = torch.empty_like(q)
    cu_q = torch.arange(0, b + 1, device=dev, dtype=torch.int32) * ql
    seqused = torch.full((b,), ctx, device=dev, dtype=torch.int32)
    values = {"q": q, "k": kv[0], "v": kv[1], "out": o, "cu_seqlens_q": cu_q, "max_seqlen_q": ql,
              "seqused_k": seqused, "max_seqlen_k": ctx, "softmax_scale": d ** -0.5, "causal": True}
    if version is not None:
        values["fa_version"] = version
    sig = inspect.signature(func).parameters
    kwargs = {a: b for a, b in values.items() if a in sig}
    r = timer.measure(lambda i: func(**kwargs, block_table=tables[i]), copies)
    nb, fl = attention_cost(it)
    out.write({"record": "measurement", **it, **r, "bytes": nb, "flops": fl, "bytes_per_s": nb / r["median_s"],
               "flop_per_s": fl / r["median_s"], "fa_version": version, "block_size": BLOCK_SIZE,
               "kv_pool_bytes": kv_bytes * copies, "utc": utc()})
    del kv, tables
    torch.cuda.empty_cache()


class ContextLost(RuntimeError):
    pass


def check_context(torch) -> None:
    """After an exception: a CUDA error that poisoned the context ends this child (the parent restarts it)."""
    try:
        torch.cuda.synchronize()
        torch.zeros(1, device=DEVICE).add_(1).item()
    except Exception as e:  # noqa: BLE001
        raise ContextLost(repr(e)) from e


# ----------------------------------------------------------------------------------------------- driver
def header(torch) -> dict:
    h = {"record": "header", "utc": utc(), "python": sys.version.split()[0], "torch": torch.__version__,
         "cuda": torch.version.cuda, "argv": sys.argv}
    try:
        import vllm
        h["vllm"] = getattr(vllm, "__version__", "?")
        h["vllm_path"] = os.path.dirname(vllm.__file__)
    except Exception as e:  # noqa: BLE001
        h["vllm"] = f"import failed: {e!r}"
    p = torch.cuda.get_device_properties(0)
    h.update({"gpu": p.name, "gpu_memory_bytes": p.total_memory, "sms": p.multi_processor_count,
              "capability": f"{p.major}.{p.minor}", "l2_bytes": getattr(p, "L2_cache_size", None)})
    try:
        h["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as e:  # noqa: BLE001
        h["nvidia_smi"] = repr(e)
    h["method"] = ("GPU sleep sized to the CPU queueing time, then reps back-to-back calls between CUDA events, "
                   f"median of {ROUNDS} rounds; weights/KV cycled through copies holding {L2_MULTIPLE}x L2")
    return h


def child(args) -> int:
    import torch
    dev = torch.device(DEVICE)
    out = Out(args.out)
    deadline = args.deadline_epoch
    over_budget = lambda: time.time() > deadline  # noqa: E731
    inflight_path = args.out + ".inflight"

    def inflight(it):
        with open(inflight_path, "w") as f:
            f.write(json.dumps({k: v for k, v in it.items() if k != "used_by"}))

    if not args.resume:
        try:
            out.write(header(torch))
        except Exception as e:  # noqa: BLE001
            out.error({"family": "header", "key": "header"}, "header", e)
    p = torch.cuda.get_device_properties(0)
    timer = Timer(torch, getattr(p, "L2_cache_size", 50 * 2**20) or 50 * 2**20)
    sms = p.multi_processor_count  # marlin_utils.marlin_make_workspace_new: one int per SM
    done = done_keys(args.out)
    items = [it for it in plan(args) if it["key"] not in done and it.get("group_key", "-") not in done
             and it["variant_key"] not in done]
    print(f"child: {len(items)} measurements to go, {deadline - time.time():.0f} s left", flush=True)
    ops = fa = None
    try:
        import vllm._custom_ops as ops  # noqa: F811
    except Exception as e:  # noqa: BLE001
        out.error({"family": "import", "key": "import|vllm._custom_ops"}, "import", e)
    t_start = time.time()
    i = 0
    try:
        while i < len(items):
            if over_budget():
                out.write({"record": "budget_stop", "utc": utc(), "left": len(items) - i})
                print("budget spent: stopping", flush=True)
                break
            it = items[i]
            fam = it["family"]
            if fam.startswith("attn"):
                inflight(it)
                try:
                    if fa is None:
                        fa = flash_attn()
                    run_attention(torch, fa, timer, out, it, dev)
                except Exception as e:  # noqa: BLE001
                    out.error(it, "measure", e)
                    torch.cuda.empty_cache()
                    check_context(torch)
                i += 1
            elif fam in ("fp8_quant", "elementwise"):
                inflight(it)
                try:
                    if ops is None:
                        raise RuntimeError("vllm._custom_ops did not import")
                    (run_quant if fam == "fp8_quant" else run_elementwise)(torch, ops, timer, out, it, dev)
                except Exception as e:  # noqa: BLE001
                    out.error(it, "measure", e)
                    check_context(torch)
                i += 1
            else:
                j = i
                while (j < len(items) and items[j]["family"] == fam and items[j]["k"] == it["k"]
                       and items[j]["n"] == it["n"] and items[j].get("act_order") == it.get("act_order")):
                    j += 1
                group = items[i:j]
                if ops is None and not fam.startswith("cublas"):
                    for g in group:
                        out.error(g, "prepare", RuntimeError("vllm._custom_ops did not import"))
                elif not run_gemm_group(torch, ops, timer, out, group, dev, over_budget, inflight, sms):
                    continue  # budget: the top of the loop writes the stop record
                print(f"{fam} ao={it.get('act_order')} {it['k']}x{it['n']} done "
                      f"({time.time() - t_start:.0f} s)", flush=True)
                i = j
    except ContextLost as e:
        out.write({"record": "context_lost", "error": str(e), "utc": utc()})
        print(f"CUDA context lost: {e}", flush=True)
        return 3
    if os.path.exists(inflight_path):
        os.remove(inflight_path)
    return 0


def dry_run(args) -> int:
    items = plan(args)
    by_fam: dict[str, list[float]] = {}
    for it in items:
        by_fam.setdefault(it["family"], []).append(estimate_s(it))
    total = sum(sum(v) for v in by_fam.values())
    print("shapes (k x n, used by):")
    for s in weight_shapes(args.models):
        print(f"  {s['k']:>6} x {s['n']:<6} {'ref ' if s['reference'] else '    '}{', '.join(s['used_by'])}")
    print(f"rows m: {list(args.rows)}")
    for fam, est in by_fam.items():
        print(f"  {fam:<22} {len(est):>5} measurements  ~{sum(est):6.1f} s")
    groups = len({it.get("group_key") for it in items})
    print(f"total {len(items)} measurements, estimated ~{total:.0f} s of timing + ~{0.05 * groups + 30:.0f} s of "
          f"imports and weight preparation (rough H200 rates; CPU queueing may double it); "
          f"budget {args.budget_s:.0f} s")
    try:
        import torch
    except ImportError:
        print("torch not importable here: no meta-device check")
        return 0
    if args.signatures_from:
        real_ops = ops_from_source(args.signatures_from)
        print(f"op signatures from {args.signatures_from}")
    else:
        try:
            import vllm._custom_ops as real_ops
        except Exception as e:  # noqa: BLE001
            print(f"vllm._custom_ops not importable here ({e!r}): no meta-device check")
            return 0
    return meta_check(torch, real_ops, args)


def ops_from_source(path: str):
    """The op wrappers' signatures from a vllm/_custom_ops.py source file (e.g. unzipped from a wheel that
    cannot be imported here); only the signatures are used, the bodies never run."""
    import ast
    import types
    import typing

    import torch
    tree = ast.parse(open(path).read())
    mod = types.SimpleNamespace()
    ns = {"torch": torch, "Optional": typing.Optional, "ScalarType": object, "List": list, "Tuple": tuple,
          "Union": typing.Union}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in (
                "gptq_gemm", "gptq_shuffle", "gptq_marlin_gemm", "marlin_gemm", "gptq_marlin_repack",
                "awq_marlin_repack", "cutlass_scaled_mm", "scaled_fp8_quant", "machete_mm", "machete_prepack_B",
                "permute_cols"):
            node.decorator_list = []
            node.body = [ast.Pass()]
            code = compile(ast.fix_missing_locations(ast.Module(body=[node], type_ignores=[])), path, "exec")
            exec(code, ns)  # noqa: S102 - a def with an empty body
            setattr(mod, node.name, ns[node.name])
    return mod


def fake_ops(torch, real_ops, device, verbose=True):
    """Stand-ins for vLLM's ops that take arguments exactly as real_ops' Python wrappers declare them (a call
    that does not fit raises TypeError) and return empty tensors of the right shapes on device."""

    def out2(r, rows, cols, dtype):
        return torch.empty(rows, cols, device=device, dtype=dtype)

    shapes = {
        "gptq_gemm": lambda a: out2(a, a["a"].shape[0], a["b_q_weight"].shape[1], a["a"].dtype),
        "gptq_shuffle": lambda a: None,
        "gptq_marlin_gemm": lambda a: out2(a, a["size_m"], a["size_n"], a["a"].dtype),
        "marlin_gemm": lambda a: out2(a, a["size_m"], a["size_n"], a["a"].dtype),
        "gptq_marlin_repack": lambda a: out2(a, a["size_k"] // 16, a["size_n"] * 2, torch.int32),
        "awq_marlin_repack": lambda a: out2(a, a["size_k"] // 16, a["size_n"] * 2, torch.int32),
        "machete_mm": lambda a: out2(a, a["a"].shape[0], a["b_q"].shape[1], a["a"].dtype),
        "machete_prepack_B": lambda a: torch.empty_like(a["b_q_weight"], memory_format=torch.contiguous_format),
        "permute_cols": lambda a: torch.empty_like(a["a"]),
        "cutlass_scaled_mm": lambda a: out2(a, a["a"].shape[0], a["b"].shape[1], a["out_dtype"]),
        "scaled_fp8_quant": lambda a: (torch.empty_like(a["input"], dtype=torch.float8_e4m3fn),
                                       out2(a, a["input"].shape[0] if a["use_per_token_if_dynamic"] else 1, 1,
                                            torch.float32)),
    }

    class FakeOps:
        pass

    fake = FakeOps()
    for name, result in shapes.items():
        real = getattr(real_ops, name, None)
        if real is None:
            if verbose:
                print(f"  vllm._custom_ops.{name}: absent")
            continue
        sig = inspect.signature(real)
        if verbose:
            print(f"  vllm._custom_ops.{name}{sig}")

        def f(*a, _sig=sig, _result=result, **kw):
            b = _sig.bind(*a, **kw)  # TypeError when the call does not fit the installed signature
            b.apply_defaults()
            return _result(b.arguments)
        f.__signature__ = sig
        f.__name__ = name
        setattr(fake, name, f)
    return fake


def meta_check(torch, real_ops, args) -> int:
    """Every GEMM preparation and launch of the plan on the meta device (shapes only, no data, no GPU)."""
    meta = torch.device("meta")
    fake = fake_ops(torch, real_ops, meta)
    fams = [f for f in FAMILIES if f in args.families]
    failures = 0
    for si, s in enumerate(weight_shapes(args.models)):
        for v in gemm_variants(fams, args.machete_group_sizes, args.machete_dtypes):
            k, n = s["k"], s["n"]
            try:
                make, base, nbytes, notes = prepare_gemm(torch, fake, v, k, n, meta, 132)
                launch = make([base, base.clone()])
                for m in (1, 64):
                    y = gemm_call(torch, fake, v, launch, m, k, meta)(1)
                    assert tuple(y.shape) == (m, n), (tuple(y.shape), m, n)
                status = f"ok {notes}" if notes else "ok"
            except Unsupported as e:
                status = f"unsupported: {e}"
            except Exception as e:  # noqa: BLE001
                status = f"FAILED {e!r}"
                failures += 1
            if si == 0 or status.startswith("FAILED"):
                print(f"  meta {v['family']:<20} act_order={v['act_order']!s:<5} {k}x{n}: {status}")
    try:
        from vllm.vllm_flash_attn import flash_attn_varlen_func
        sig = inspect.signature(flash_attn_varlen_func).parameters
        need = ("q", "k", "v", "out", "cu_seqlens_q", "max_seqlen_q", "seqused_k", "max_seqlen_k", "softmax_scale",
                "causal", "block_table", "fa_version")
        print(f"  flash_attn_varlen_func lacks: {[x for x in need if x not in sig]}")
    except Exception as e:  # noqa: BLE001
        print(f"  vllm.vllm_flash_attn not importable here ({e!r})")
    print(f"meta-device check: {failures} failures")
    return 1 if failures else 0


def parent(args) -> int:
    """Run the measuring child; restart it (resuming) if it dies, recording the measurement it died in."""
    deadline = time.time() + args.budget_s
    inflight_path = args.out + ".inflight"
    resume = False
    out = Out(args.out)
    for attempt in range(args.max_restarts + 1):
        if time.time() > deadline - 5:
            break
        cmd = (CHILD_PREFIX or [sys.executable, os.path.abspath(__file__)]) + [
            "--child", "--deadline-epoch", str(deadline)]
        cmd += ["--out", args.out, "--families", ",".join(args.families), "--models", ",".join(args.models),
                "--rows", ",".join(map(str, args.rows)),
                "--machete-group-sizes", ",".join(map(str, args.machete_group_sizes)),
                "--machete-dtypes", ",".join(args.machete_dtypes)] + (["--resume"] if resume else [])
        print(f"[{utc()}] child attempt {attempt}: {' '.join(cmd)}", flush=True)
        try:
            rc = subprocess.run(cmd, timeout=max(10.0, deadline - time.time() + 60)).returncode
        except subprocess.TimeoutExpired:
            out.write({"record": "error", "stage": "child", "error": "child exceeded the budget + 60 s",
                       "utc": utc()})
            return 1
        if rc == 0:
            return 0
        crashed = None
        if os.path.exists(inflight_path):
            with open(inflight_path) as f:
                crashed = json.loads(f.read() or "{}")
            os.remove(inflight_path)
        rec = {"record": "error", "stage": "child_died", "error": f"child exited with {rc}", "utc": utc()}
        if crashed:
            rec.update(crashed)  # carries the key: the restarted child skips this measurement
        out.write(rec)
        resume = True
    return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="kernels.jsonl")
    p.add_argument("--budget-s", type=float, default=240.0)
    p.add_argument("--dry-run", action="store_true", help="print the plan and a time estimate; no CUDA")
    p.add_argument("--families", default=",".join(FAMILIES), help=f"comma list of {FAMILIES}")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma list of {tuple(MODELS)}")
    p.add_argument("--rows", default=",".join(map(str, ROWS)))
    p.add_argument("--machete-group-sizes", default=str(GROUP_SIZE),
                   help="comma list of group sizes for the machete families: 64, 128 (vLLM 0.26 also takes -1, "
                        "per channel, not timed here)")
    p.add_argument("--machete-dtypes", default="float16", help="comma list: float16, bfloat16 (machete families)")
    p.add_argument("--max-restarts", type=int, default=5)
    p.add_argument("--signatures-from", default=None,
                   help="--dry-run: check the calls against this vllm/_custom_ops.py source instead of the import")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--deadline-epoch", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.families = [f for f in args.families.split(",") if f]
    args.models = [m for m in args.models.split(",") if m]
    try:
        args.rows = tuple(int(r) for r in args.rows.split(",") if r)
        args.machete_group_sizes = tuple(int(g) for g in args.machete_group_sizes.split(",") if g)
    except ValueError as exc:
        p.error(f"--rows and --machete-group-sizes take comma-separated integers: {exc}")
    args.machete_dtypes = tuple(d for d in args.machete_dtypes.split(",") if d)
    bad = [f for f in args.families if f not in FAMILIES] + [m for m in args.models if m not in MODELS]
    bad += [g for g in args.machete_group_sizes if g not in (64, 128)]
    bad += [d for d in args.machete_dtypes if d not in ("float16", "bfloat16")]
    if bad:
        p.error(f"unknown families/models/group sizes/dtypes: {bad}")
    if args.dry_run:
        return dry_run(args)
    if args.child:
        if args.deadline_epoch is None:
            args.deadline_epoch = time.time() + args.budget_s
        return child(args)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
