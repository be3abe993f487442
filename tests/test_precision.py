"""Precision resolution: vLLM's dtype rules, quantized weight bytes, refusals per GPU.

GPUs are plain dicts of dense peak FLOP/s (datasheet values), so these tests do not depend on
the hardware package: V100 SXM2 (fp16 tensor 125 TFLOP/s; no bf16, no fp8), A100 SXM
(bf16/fp16 312, int8 624 TOPS), H100 SXM (bf16/fp16 989, fp8/int8 1979).
"""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from perfmodel.errors import UserError
from perfmodel.model.shape import catalog_config_path, from_hf_config, load_model
from perfmodel.model.precision import INT4_BYTES_PER_PARAM, QUANTIZATION_CHOICES, resolve_precision, weight_bytes

FIXTURES = Path(__file__).parent / "fixtures" / "models"

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


def test_int4_weight_only_under_0_7_0(llama):
    p = resolve_precision(llama, A100, quantization="awq_marlin", vllm_version="0.7.0")
    assert p.weight_dtype == "int4" and p.gemm_flops_dtype == "bfloat16"
    assert p.weight_bytes_per_param == pytest.approx(0.5195, abs=1e-4)  # (4 + 20/128) / 8
    # plain gptq/awq kernels take float16 only
    assert resolve_precision(llama, A100, quantization="gptq", vllm_version="0.7.0").activation_dtype == "float16"
    with pytest.raises(UserError, match="float16"):
        resolve_precision(llama, A100, dtype="bfloat16", quantization="awq", vllm_version="0.7.0")
    # V100: gptq's exllama kernel runs, AWQ and Marlin do not
    assert resolve_precision(llama, V100, quantization="gptq", vllm_version="0.7.0").gemm_flops_dtype == "float16"
    with pytest.raises(UserError, match="awq"):
        resolve_precision(llama, V100, quantization="awq", vllm_version="0.7.0")


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


# ---- quantization read from the checkpoint (vLLM 0.7.0 rules) --------------------------------

H100_CC90 = SimpleNamespace(peak_flops_per_s=H100, display_name="H100", compute_capability="9.0")
A100_CC80 = SimpleNamespace(peak_flops_per_s=A100, display_name="A100", compute_capability="8.0")
V100_CC70 = SimpleNamespace(peak_flops_per_s=V100, display_name="V100", compute_capability="7.0")


def _checkpoint(quant: dict, torch_dtype: str = "float16", base: str = "llama-3.1-8b"):
    config = json.loads(catalog_config_path(base).read_text())
    config.update(quantization_config=quant, torch_dtype=torch_dtype)
    return from_hf_config(config, f"{base}-{quant['quant_method']}")


GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}
AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}


def _ct(weights: dict, inputs: dict | None, fmt: str) -> dict:
    return {"quant_method": "compressed-tensors", "format": fmt,
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": inputs}}}


CT_W4A16 = _ct({"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 128},
               None, "pack-quantized")
CT_FP8 = _ct({"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel"},
             {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token", "dynamic": True},
             "float-quantized")
CT_INT8 = _ct({"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
              {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True},
              "int-quantized")


def _kernel(p):
    return p.weight_dtype, p.quantization, p.quant_kernel, p.gemm_flops_dtype


def test_gptq_checkpoint_is_int4_without_a_flag_under_0_7_0():
    model = load_model(FIXTURES / "llama-3.1-405b-gptq-int4")
    v100 = resolve_precision(model, V100_CC70, vllm_version="0.7.0")
    assert _kernel(v100) == ("int4", "gptq", "gptq_exllama", "float16")
    assert v100.activation_dtype == "float16" and v100.group_size == 128 and v100.quant_source == "checkpoint"
    assert _kernel(resolve_precision(model, A100_CC80, vllm_version="0.7.0")) == ("int4", "gptq_marlin", "gptq_marlin", "float16")
    h100 = resolve_precision(model, H100_CC90, vllm_version="0.7.0")  # act-order: Machete where TP leaves a layer's input whole
    assert _kernel(h100) == ("int4", "gptq_marlin", "machete", "float16")
    assert any("converts" in note for note in h100.notes) and any("desc_act" in note for note in h100.notes)
    # 401.6e9 linear weights at (4 + 20/128)/8 bytes + 4.2e9 embedding/LM head/norm parameters in fp16
    linear = model.num_quantizable_params()
    assert weight_bytes(model, h100) == pytest.approx(linear * INT4_BYTES_PER_PARAM
                                                      + 2 * (model.num_params() - linear))
    assert 216e9 < weight_bytes(model, h100) < 218e9


def test_act_order_gptq_on_hopper_uses_machete_where_tp_leaves_the_input_whole():
    # vLLM 0.7.0 MacheteLinearKernel.can_implement refuses act-order only when the input features are partitioned
    p = resolve_precision(load_model("command-r-plus-gptq"), H100_CC90)  # desc_act true
    assert p.quant_kernel == "machete" and any("desc_act" in note for note in p.notes)


def test_explicit_gptq_forces_exllama_and_marlin_spellings_convert_under_0_7_0():
    model = load_model("llama-3.1-405b-gptq-int4")
    assert resolve_precision(model, A100_CC80, quantization="gptq", vllm_version="0.7.0").quant_kernel == "gptq_exllama"
    assert resolve_precision(model, A100_CC80, quantization="marlin", vllm_version="0.7.0").quantization == "gptq_marlin"
    assert resolve_precision(model, A100_CC80, quantization="GPTQ_Marlin", vllm_version="0.7.0").quant_kernel == "gptq_marlin"


def test_conflicting_quantization_is_refused_under_0_7_0():
    model = load_model("llama-3.1-405b-gptq-int4")
    with pytest.raises(UserError, match="gptq checkpoint but --quantization awq"):
        resolve_precision(model, A100_CC80, quantization="awq", vllm_version="0.7.0")
    # Marlin cannot convert on V100, so vLLM sees gptq != gptq_marlin
    with pytest.raises(UserError, match="8.0"):
        resolve_precision(model, V100_CC70, quantization="gptq_marlin", vllm_version="0.7.0")
    with pytest.raises(UserError, match="fp8"):
        resolve_precision(model, H100_CC90, quantization="fp8", vllm_version="0.7.0")


def test_gptq_marlin_needs_every_key_under_0_7_0():
    no_sym = _checkpoint({k: v for k, v in GPTQ.items() if k != "sym"})  # GPTQConfig does not need sym
    assert resolve_precision(no_sym, A100_CC80, vllm_version="0.7.0").quant_kernel == "gptq_exllama"
    with pytest.raises(UserError, match="lacks desc_act"):
        _checkpoint({k: v for k, v in GPTQ.items() if k != "desc_act"})
    asym = _checkpoint({**GPTQ, "sym": False})
    assert resolve_precision(asym, H100_CC90, vllm_version="0.7.0").quantization == "gptq"


def test_bfloat16_gptq_checkpoint_on_exllama_is_refused_under_0_7_0():
    model = _checkpoint(GPTQ, torch_dtype="bfloat16")
    assert resolve_precision(model, A100_CC80, vllm_version="0.7.0").activation_dtype == "bfloat16"  # Marlin takes bfloat16
    with pytest.raises(UserError, match="float16"):
        resolve_precision(model, A100_CC80, quantization="gptq", vllm_version="0.7.0")
    assert resolve_precision(model, A100_CC80, dtype="float16", quantization="gptq", vllm_version="0.7.0").activation_dtype == "float16"


def test_awq_checkpoint_under_0_7_0():
    model = _checkpoint(AWQ)
    # vLLM 0.7.0's AWQMarlinLinearMethod calls apply_awq_marlin_linear: Marlin on every GPU, Hopper included
    assert _kernel(resolve_precision(model, A100_CC80, vllm_version="0.7.0")) == ("int4", "awq_marlin", "gptq_marlin", "float16")
    assert _kernel(resolve_precision(model, H100_CC90, vllm_version="0.7.0")) == ("int4", "awq_marlin", "marlin_hopper", "float16")
    assert resolve_precision(model, A100_CC80, quantization="awq", vllm_version="0.7.0").quant_kernel == "awq"
    with pytest.raises(UserError, match="awq"):
        resolve_precision(model, V100_CC70, vllm_version="0.7.0")


def test_fp8_checkpoint():
    model = _checkpoint({"quant_method": "fp8", "activation_scheme": "dynamic"}, torch_dtype="bfloat16")
    assert _kernel(resolve_precision(model, H100_CC90)) == ("fp8", "fp8", "fp8_w8a8", "fp8")
    a100 = resolve_precision(model, A100_CC80)
    assert _kernel(a100) == ("fp8", "fp8", "fp8_marlin", "bfloat16") and a100.weight_bytes_per_param == 1
    with pytest.raises(UserError, match="V100 does not support fp8"):
        resolve_precision(model, V100_CC70)


def test_compressed_tensors_checkpoints():
    w4 = _checkpoint(CT_W4A16, torch_dtype="bfloat16")
    assert _kernel(resolve_precision(w4, H100_CC90)) == ("int4", "compressed-tensors", "machete", "bfloat16")
    a100 = resolve_precision(w4, A100_CC80)
    assert a100.quant_kernel == "gptq_marlin"
    assert a100.weight_bytes_per_param == pytest.approx((4 + 16 / 128) / 8)  # symmetric: no zero points
    fp8 = _checkpoint(CT_FP8, torch_dtype="bfloat16")
    assert _kernel(resolve_precision(fp8, H100_CC90))[2:] == ("fp8_w8a8", "fp8")
    assert _kernel(resolve_precision(fp8, A100_CC80))[2:] == ("fp8_marlin", "bfloat16")  # W8A16 fallback
    int8 = _checkpoint(CT_INT8, torch_dtype="bfloat16")
    assert _kernel(resolve_precision(int8, A100_CC80)) == ("int8", "compressed-tensors", "int8_w8a8", "int8")
    assert resolve_precision(w4, A100_CC80, quantization="compressed-tensors").quant_kernel == "gptq_marlin"
    for model in (w4, fp8, int8):
        with pytest.raises(UserError, match="V100"):
            resolve_precision(model, V100_CC70)


def test_flag_only_quantizations_need_a_checkpoint(llama):
    for method in ("compressed-tensors", "fbgemm_fp8"):
        with pytest.raises(UserError, match="quantization_config"):
            resolve_precision(llama, H100_CC90, quantization=method)
    what_if = resolve_precision(llama, H100_CC90, quantization="gptq_marlin")
    assert (what_if.quant_source, what_if.quant_kernel, what_if.group_size) == ("flag", "machete", 128)
    assert resolve_precision(llama, A100_CC80).quant_kernel is None


def test_choices_spell_vllm_methods():
    for method in ("gptq", "gptq_marlin", "awq", "awq_marlin", "fp8", "compressed-tensors"):
        assert method in QUANTIZATION_CHOICES


@pytest.mark.parametrize("version", ["0.7.0", "0.26"])
@pytest.mark.parametrize("method", QUANTIZATION_CHOICES)
def test_v100_runs_float16_only(llama, method, version):
    """V100 (cc 7.0): whatever the flag, either a clear refusal or float16 everywhere; vLLM 0.7.0 runs GPTQ on
    the exllama kernel there, 0.26 nothing quantized (AutoGPTQ needs Marlin, AWQ 7.5, int8 W8A8 int8 cores)."""
    try:
        p = resolve_precision(llama, V100_CC70, quantization=method, vllm_version=version)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    assert version == "0.7.0"
    assert (p.activation_dtype, p.gemm_flops_dtype, p.kv_cache_dtype) == ("float16",) * 3
    assert p.quant_kernel == "gptq_exllama"  # the only quantized kernel vLLM 0.7.0 runs on Volta


# ---- kernel choice by release (perfmodel.cost.kernels *_FROM, each read from the wheels; docs/kernels.md) ----

def test_gptq_under_vllm_0_26_is_autogptq_whatever_the_flag():
    # vLLM 0.22.0+: gptq, gptq_marlin, auto_gptq all map to AutoGPTQConfig, whose kernel choose_mp_linear_kernel
    # picks per layer (Machete on Hopper, Marlin below it, exllama below compute capability 7.5)
    model = load_model("llama-3.1-405b-gptq-int4")
    for flag in (None, "gptq", "gptq_marlin", "auto_gptq"):
        assert _kernel(resolve_precision(model, H100_CC90, quantization=flag)) == ("int4", "auto_gptq", "machete", "float16")
        assert _kernel(resolve_precision(model, A100_CC80, quantization=flag))[1:3] == ("auto_gptq", "gptq_marlin")
    # AutoGPTQLinearMethod verifies Marlin for every layer: below compute capability 7.5 vLLM stops at load
    with pytest.raises(UserError, match="AutoGPTQ needs Marlin.*--vllm-version 0.21 or earlier"):
        resolve_precision(model, V100_CC70)
    assert resolve_precision(model, V100_CC70, vllm_version="0.21.0").quant_kernel == "gptq_exllama"
    # the last release before AutoGPTQ keeps 0.7.0's rule: an explicit gptq forces the exllama kernel
    assert resolve_precision(model, H100_CC90, quantization="gptq", vllm_version="0.21.0").quant_kernel == "gptq_exllama"
    assert resolve_precision(model, H100_CC90, quantization="gptq", vllm_version="0.22.0").quant_kernel == "machete"
    with pytest.raises(UserError, match="auto_gptq is a vLLM 0.22.0 method"):
        resolve_precision(model, H100_CC90, quantization="auto_gptq", vllm_version="0.7.0")


def test_awq_by_release():
    model = _checkpoint(AWQ)
    # -q awq: AWQ GEMM until 0.23, AutoAWQ (Machete with zero points on Hopper) from 0.24.0
    assert resolve_precision(model, H100_CC90, quantization="awq", vllm_version="0.23.0").quant_kernel == "awq"
    assert _kernel(resolve_precision(model, H100_CC90, quantization="awq")) == ("int4", "auto_awq", "awq_marlin", "float16")
    # awq_marlin on Hopper: Marlin until 0.18.1, through choose_mp_linear_kernel (Machete) from 0.19.0
    assert resolve_precision(model, H100_CC90, vllm_version="0.18.1").quant_kernel == "marlin_hopper"
    assert resolve_precision(model, H100_CC90, vllm_version="0.19.0").quant_kernel == "awq_marlin"
    assert resolve_precision(model, A100_CC80).quant_kernel == "gptq_marlin"


def test_marlin_from_compute_capability_7_5_and_machete_group_64_by_release():
    t4 = SimpleNamespace(peak_flops_per_s={"float32": 8.1e12, "float16": 65e12, "int8": 130e12}, display_name="T4",
                         compute_capability="7.5")
    model = _checkpoint(GPTQ)
    assert resolve_precision(model, t4, vllm_version="0.13.0").quant_kernel == "gptq_exllama"
    assert _kernel(resolve_precision(model, t4, vllm_version="0.14.0"))[1:3] == ("gptq_marlin", "gptq_marlin")
    assert _kernel(resolve_precision(model, t4))[1:3] == ("auto_gptq", "gptq_marlin")
    g64 = _checkpoint({**GPTQ, "group_size": 64})
    assert resolve_precision(g64, H100_CC90, vllm_version="0.9.1").quant_kernel == "marlin_hopper"
    assert resolve_precision(g64, H100_CC90, vllm_version="0.9.2").quant_kernel == "machete"


def test_autogptq_refuses_what_its_type_map_lacks_and_act_order_with_one_group_is_none():
    with pytest.raises(UserError, match="4- or 8-bit symmetric GPTQ only"):
        resolve_precision(_checkpoint({**GPTQ, "sym": False}), H100_CC90)
    assert resolve_precision(_checkpoint({**GPTQ, "sym": False}), H100_CC90, vllm_version="0.21.0").quantization == "gptq"
    # desc_act with group_size -1 is cleared (AutoGPTQConfig.__init__, 0.7.0 GPTQMarlinConfig.__init__): Machete
    # runs the row-parallel layers too
    model = _checkpoint({**GPTQ, "group_size": -1, "desc_act": True})
    per_channel = resolve_precision(model, H100_CC90)
    from perfmodel.cost import kernels

    assert per_channel.kernel_facts.desc_act is False
    assert [f.name for f in kernels.families_used(model, per_channel, tp=2)] == ["machete"]


def test_autoawq_without_zero_points_runs_awq_gemm_in_bfloat16_too():
    model = _checkpoint({**AWQ, "zero_point": False}, torch_dtype="bfloat16")
    p = resolve_precision(model, H100_CC90)
    assert _kernel(p) == ("int4", "auto_awq", "awq", "bfloat16")  # AutoAWQLinearMethod takes bfloat16
    with pytest.raises(UserError, match="4-bit AWQ only"):
        resolve_precision(_checkpoint({**AWQ, "bits": 8}), H100_CC90)
