"""CPU smoke test of kernel_shapes.py's control flow (no GPU): torch.cuda shimmed, vLLM's ops replaced by stand-ins
that bind arguments exactly as a given vllm/_custom_ops.py source declares them and return empty tensors.

    python benchmarks/device/kernel_shapes_smoke.py ok|raise|die path/to/vllm/_custom_ops.py \
        --out /tmp/k.jsonl --models llama-3.1-8b --rows 1,16 --budget-s 60

``raise`` makes cutlass_scaled_mm raise (error records, the run goes on); ``die`` kills the process in
awq_marlin_repack (the parent restarts the child, which skips that kernel). Needs torch (CPU) and vllm importable
only for the header; timings are meaningless.
"""
import os
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
import kernel_shapes as ks
mode = sys.argv[1]  # "ok" | "raise" | "die"
ks.DEVICE = "cpu"
ks.DECODE_BATCHES, ks.DECODE_CONTEXTS, ks.PREFILL_LENGTHS = (1, 2), (64,), (32,)
ks.TARGET_S = 0.0005
class Ev:
    def __init__(self, **k): self.t = None
    def record(self): self.t = time.perf_counter()
    def elapsed_time(self, o): return (o.t - self.t) * 1e3
torch.cuda.synchronize = lambda *a: None
torch.cuda._sleep = lambda c: None
torch.cuda.Event = Ev
torch.cuda.empty_cache = lambda: None
torch.cuda.get_device_properties = lambda d: types.SimpleNamespace(name="FakeGPU", total_memory=1, multi_processor_count=4,
                                                                   major=9, minor=0, L2_cache_size=2**20)
real = ks.ops_from_source(sys.argv[2])
fake = ks.fake_ops(torch, real, torch.device("cpu"), verbose=False)
if mode == "raise":
    orig = fake.cutlass_scaled_mm
    def boom(*a, **k): raise RuntimeError("injected failure")
    boom.__signature__ = orig.__signature__
    fake.cutlass_scaled_mm = boom
if mode == "die":
    orig = fake.awq_marlin_repack
    def die(*a, **k): os._exit(139)
    die.__signature__ = orig.__signature__
    fake.awq_marlin_repack = die
sys.modules["vllm._custom_ops"] = fake
fa = types.ModuleType("vllm.vllm_flash_attn")
def flash_attn_varlen_func(q, k, v, max_seqlen_q, cu_seqlens_q, max_seqlen_k, cu_seqlens_k=None, seqused_k=None,
                           softmax_scale=None, causal=False, block_table=None, out=None, fa_version=2):
    assert k.shape[1] == ks.BLOCK_SIZE and block_table.dtype == torch.int32 and block_table.max() < k.shape[0]
    return out
fa.flash_attn_varlen_func = flash_attn_varlen_func
fa.is_fa_version_supported = lambda v: v == 3
sys.modules["vllm.vllm_flash_attn"] = fa
ks.CHILD_PREFIX = [sys.executable, __file__, mode, sys.argv[2]]
sys.exit(ks.main(sys.argv[3:]))
