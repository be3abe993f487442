"""Precision resolution: vLLM's dtype rules, quantized weight bytes, refusals per GPU.

GPUs are plain dicts of dense peak FLOP/s (datasheet values), so these tests do not depend on
the hardware package: V100 SXM2 (fp16 tensor 125 TFLOP/s; no bf16, no fp8), A100 SXM
(bf16/fp16 312, int8 624 TOPS), H100 SXM (bf16/fp16 989, fp8/int8 1979).
"""

from types import SimpleNamespace

import pytest

from perfmodel.errors import UserError
from perfmodel.model import load_model
from perfmodel.precision import INT4_BYTES_PER_PARAM, resolve_precision, weight_bytes

V100 = {"float32": 15.7e12, "float16": 125e12}
A100 = {"float32": 19.5e12, "float16": 312e12, "bfloat16": 312e12, "int8": 624e12}
H100 = {"float32": 67e12, "float16": 989e12, "bfloat16": 989e12, "fp8": 1979e12, "int8": 1979e12}


@pytest.fixture
def llama():
    return load_model("llama-3.1-8b")  # torch_dtype bfloat16


def test_auto_follows_config_dtype(llama):
    p = resolve_precision(llama, A100)
    assert (p.activation_dtype, p.weight_dtype, p.gemm_flops_dtype) == ("bfloat16",) * 3
    assert p.weight_bytes_per_param == 2 and p.kv_bytes_per_element == 2 and p.notes == ()
    assert resolve_precision(load_model("llama-2-7b"), A100).activation_dtype == "float16"


def test_auto_bfloat16_falls_back_to_float16_on_v100(llama):
    p = resolve_precision(llama, V100, gpu_name="Tesla V100")
    assert p.activation_dtype == "float16" and p.kv_cache_dtype == "float16"
    assert any("bfloat16" in note and "float16" in note for note in p.notes)


def test_explicit_bfloat16_on_v100_is_refused(llama):
    with pytest.raises(UserError, match="V100 does not support bfloat16; use --dtype float16"):
        resolve_precision(llama, V100, dtype="bfloat16", gpu_name="Tesla V100")


def test_gpu_spec_like_object_gives_name_and_capability(llama):
    gpu = SimpleNamespace(peak_flops_per_s=V100, display_name="NVIDIA V100-SXM2-32GB", compute_capability="7.0")
    with pytest.raises(UserError, match="NVIDIA V100-SXM2-32GB"):
        resolve_precision(llama, gpu, dtype="bfloat16")


def test_float32_checkpoint_is_downcast():
    gemma = load_model("gemma-2-9b")  # torch_dtype float32
    assert resolve_precision(gemma, A100).activation_dtype == "bfloat16"
    # Gemma-2 refuses float16, so without bfloat16 vLLM keeps float32
    p = resolve_precision(gemma, V100)
    assert p.activation_dtype == "float32" and p.activation_bytes == 4
    with pytest.raises(UserError, match="float16"):
        resolve_precision(gemma, A100, dtype="float16")


def test_fp8_weights(llama):
    h100 = resolve_precision(llama, H100, quantization="fp8")
    assert h100.gemm_flops_dtype == "fp8" and h100.weight_bytes_per_param == 1
    a100 = resolve_precision(llama, A100, quantization="fp8")  # weight-only Marlin
    assert a100.gemm_flops_dtype == "bfloat16" and a100.weight_dtype == "fp8" and a100.notes
    with pytest.raises(UserError, match="V100 does not support fp8"):
        resolve_precision(llama, V100, quantization="fp8", gpu_name="V100")


def test_fp8_kv_cache(llama):
    assert resolve_precision(llama, H100, kv_cache_dtype="fp8").kv_bytes_per_element == 1
    a100 = resolve_precision(llama, A100, kv_cache_dtype="fp8_e5m2")
    assert a100.kv_bytes_per_element == 1 and a100.kv_cache_dtype == "fp8_e5m2"
    with pytest.raises(UserError, match="fp8 KV cache"):
        resolve_precision(llama, V100, kv_cache_dtype="fp8")


def test_int8_w8a8(llama):
    assert resolve_precision(llama, A100, quantization="int8").gemm_flops_dtype == "int8"
    with pytest.raises(UserError, match="int8"):
        resolve_precision(llama, {**V100, "int8": 62e12}, quantization="int8")


def test_int4_weight_only(llama):
    p = resolve_precision(llama, A100, quantization="awq_marlin")
    assert p.weight_dtype == "int4" and p.gemm_flops_dtype == "bfloat16"
    assert p.weight_bytes_per_param == pytest.approx(0.5195, abs=1e-4)  # (4 + 20/128) / 8
    # plain gptq/awq kernels take float16 only
    assert resolve_precision(llama, A100, quantization="gptq").activation_dtype == "float16"
    with pytest.raises(UserError, match="float16"):
        resolve_precision(llama, A100, dtype="bfloat16", quantization="awq")
    # V100: gptq's exllama kernel runs, AWQ and Marlin do not
    assert resolve_precision(llama, V100, quantization="gptq").gemm_flops_dtype == "float16"
    with pytest.raises(UserError, match="awq"):
        resolve_precision(llama, V100, quantization="awq")


def test_weight_bytes(llama):
    fp = resolve_precision(llama, A100)
    assert weight_bytes(llama, fp) == 2 * llama.num_params()
    q = resolve_precision(llama, A100, quantization="gptq_marlin")
    linear = llama.num_quantizable_params()
    rest = llama.num_params() - linear
    assert rest == 2 * 128256 * 4096 + (32 * 2 + 1) * 4096  # embeddings + LM head + norms
    assert weight_bytes(llama, q) == pytest.approx(linear * INT4_BYTES_PER_PARAM + 2 * rest)
    assert 5.0e9 < weight_bytes(llama, q) < 6.0e9  # ~5.7 GB, as AWQ 8B checkpoints are


def test_moe_router_stays_unquantized():
    mixtral = load_model("mixtral-8x7b")
    router = 32 * 4096 * 8
    assert mixtral.num_params() - mixtral.num_quantizable_params() == (
        2 * 32000 * 4096 + (32 * 2 + 1) * 4096 + router)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"dtype": "float8"}, "--dtype"),
    ({"quantization": "squeezellm"}, "--quantization"),
    ({"kv_cache_dtype": "int4"}, "--kv-cache-dtype"),
])
def test_unknown_choices(llama, kwargs, fragment):
    with pytest.raises(UserError, match=fragment):
        resolve_precision(llama, A100, **kwargs)
