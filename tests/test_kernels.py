"""The kernel-family table: which family each (GPU, method, checkpoint, TP split) selects, the formulas, the wiring."""

from pathlib import Path

import numpy as np
import pytest

from hardware import load_hardware
from perfmodel.cost import kernels
from perfmodel.cost.coefficients import GROUPS, Coefficients
from perfmodel.cost.kernels import KernelFacts, method_kernel, select
from perfmodel.layout import Layout
from perfmodel.model.shape import load_model
from perfmodel.model.precision import resolve_precision

ROOT = Path(__file__).parents[1]
V100 = load_hardware("taiwania2")
H200 = load_hardware("h200-sxm")
GPTQ = dict(method="gptq", weight_bits=4, group_size=128, desc_act=False)


@pytest.mark.parametrize("facts, kernel", [
    (KernelFacts(cc=7.0, release=(0, 7, 0), **GPTQ), "gptq_exllama"),
    (KernelFacts(cc=9.0, **{**GPTQ, "method": "gptq_marlin"}), "machete"),
    (KernelFacts(cc=9.0, **{**GPTQ, "method": "gptq_marlin", "desc_act": True}), "machete"),  # TP decides per layer
    (KernelFacts(cc=9.0, **{**GPTQ, "method": "gptq_marlin", "group_size": 32}), "marlin_hopper"),
    (KernelFacts(cc=8.0, **{**GPTQ, "method": "gptq_marlin"}), "gptq_marlin"),
    (KernelFacts(cc=8.0, method="compressed-tensors", scheme="W4A16", group_size=128), "gptq_marlin"),
    (KernelFacts(cc=7.5, method="awq", group_size=128), "awq"),
    (KernelFacts(cc=8.0, method="awq_marlin", group_size=128), "gptq_marlin"),  # Marlin with zero points
    (KernelFacts(cc=9.0, method="awq_marlin", group_size=128), "awq_marlin"),  # Machete with zero points
    (KernelFacts(cc=9.0, method="awq_marlin", group_size=32), "marlin_hopper"),  # a group size Machete refuses
    (KernelFacts(cc=9.0, method="fp8", scheme="FP8_W8A8"), "fp8_w8a8"),
    (KernelFacts(cc=8.9, method="fp8", scheme="FP8_W8A8"), "fp8_w8a8"),
    (KernelFacts(cc=8.0, method="fp8", scheme="FP8_W8A8"), "fp8_marlin"),
    (KernelFacts(cc=9.0, method="compressed-tensors", scheme="FP8_W8A16"), "fp8_marlin"),
    (KernelFacts(cc=8.0, method="int8", scheme="INT8_W8A8"), "int8_w8a8"),
    (KernelFacts(cc=9.0), ""),  # unquantized: no quantized family
])
def test_method_kernel_follows_vllm_070_preference_order(facts, kernel):
    assert method_kernel(facts) == kernel


def test_unquantized_layers_and_experts_select_cublas_and_fused_moe():
    assert select(KernelFacts(cc=7.0, quantized=False, **GPTQ)).name == "cublas"
    assert select(KernelFacts(cc=9.0, num_experts=8)).name == "fused_moe"
    outer, inner = kernels.layer_families(KernelFacts(cc=9.0, num_experts=8, quantized=False))
    assert (outer.name, inner.name) == ("fused_moe", "cublas")


def test_every_fitted_coefficient_is_a_coefficient_with_a_kernel_group():
    for family in kernels.KERNELS:
        for name in family.fitted:
            assert name in Coefficients.names()
            group = next(g for g in GROUPS if name in Coefficients.group(g))
            assert group.startswith("kernel_"), (family.name, name, group)


def test_precision_quant_kernel_is_the_tables_choice():
    qwen = load_model(str(ROOT / "data/taiwania/qwen2.5-72b-instruct-gptq-int4"))
    p = resolve_precision(qwen, V100.gpu, vllm_version="0.7.0")
    assert p.quant_kernel == "gptq_exllama" == method_kernel(p.kernel_facts)
    assert p.kernel_facts.cc == 7.0 and p.kernel_facts.desc_act is False


def test_dense_cost_is_the_roofline():
    g = _Gemm(flops_per_token=2e6, weight_bytes=1e6, activation_bytes_per_token=10.0)
    r = kernels.GemmRates(coefficients=Coefficients(), flops_per_s=1e12, bytes_per_s=1e9, hbm_bytes_per_s=2e9,
                          simt_flops_per_s=0.0)
    assert kernels.dense_cost(g, 1, r) == pytest.approx((1e6 + 10) / 1e9)  # memory bound
    assert kernels.dense_cost(g, 10_000, r) == pytest.approx(max(2e10 / 1e12, (1e6 + 1e5) / 1e9))


def test_fused_moe_wraps_its_weight_formats_cost():
    r = kernels.GemmRates(coefficients=Coefficients(fused_moe_efficiency=0.5), flops_per_s=1e12, bytes_per_s=1e9,
                          hbm_bytes_per_s=2e9, simt_flops_per_s=0.0)
    g = _Gemm(flops_per_token=2e6, weight_bytes=1e6, activation_bytes_per_token=10.0)
    families = (kernels.BY_NAME["fused_moe"], kernels.BY_NAME["cublas"])
    assert kernels.layer_cost(families, g, 1, r) == pytest.approx(2 * kernels.dense_cost(g, 1, r))


def test_families_used_and_kernel_coefficients_drive_the_fits():
    from calibrate.fit.online import kernel_coefficients

    qwen = load_model(str(ROOT / "data/taiwania/qwen2.5-72b-instruct-gptq-int4"))
    p = resolve_precision(qwen, V100.gpu, vllm_version="0.7.0")
    used = [f.name for f in kernels.families_used(qwen, p, tp=8)]
    assert used == ["gptq_exllama"]  # every decoder-layer GEMM is quantized (the LM head is costed apart)
    obs = _Obs(model=qwen, precision=p, layout=Layout(tp=8))
    assert kernel_coefficients([obs]) == ("exllama_memory_efficiency", "exllama_compute_efficiency",
                                          "exllama_kernel_fixed_s", "exllama_reconstruct_memory_efficiency")
    llama = load_model("llama-3.1-8b")
    dense = _Obs(model=llama, precision=resolve_precision(llama, H200.gpu), layout=Layout(tp=1))
    assert kernel_coefficients([dense]) == ()


class _Gemm:
    def __init__(self, **kw):
        self.num_experts, self.experts_per_token, self.params = 1, 1, 0.0
        self.__dict__.update(kw)


class _Obs:
    def __init__(self, **kw):
        self.__dict__.update(kw)


# ---- the act-order GPTQ path under TP (vLLM 0.7.0 gptq.py ExllamaState; q_gemm.cu gemm_half_q_half_cuda) ----

ACT_ORDER = KernelFacts(cc=7.0, release=(0, 7, 0), **{**GPTQ, "desc_act": True})


@pytest.mark.parametrize("facts, family", [
    (ACT_ORDER.for_layer(parallel="row", tp=8, num_experts=1, quantized=True), "gptq_alt"),
    (ACT_ORDER.for_layer(parallel="column", tp=8, num_experts=1, quantized=True), "gptq_exllama"),
    (ACT_ORDER.for_layer(parallel="row", tp=1, num_experts=1, quantized=True), "gptq_exllama"),
    (KernelFacts(cc=7.0, **GPTQ).for_layer(parallel="row", tp=8, num_experts=1, quantized=True), "gptq_exllama"),
    (KernelFacts(cc=7.0, **{**GPTQ, "desc_act": True, "group_size": -1}).for_layer(
        parallel="row", tp=8, num_experts=1, quantized=True), "gptq_exllama"),
    (KernelFacts(cc=9.0, **{**GPTQ, "method": "gptq_marlin", "desc_act": True}).for_layer(
        parallel="row", tp=8, num_experts=1, quantized=True), "marlin_hopper"),
    (KernelFacts(cc=9.0, **{**GPTQ, "method": "gptq_marlin", "desc_act": True}).for_layer(
        parallel="column", tp=8, num_experts=1, quantized=True), "machete"),
])
def test_layer_kernel_depends_on_act_order_and_the_tp_split(facts, family):
    assert select(facts).name == family


def test_the_405b_export_runs_row_parallel_layers_on_the_alt_path_at_tp8():
    model = load_model("llama-3.1-405b-gptq-int4")
    p = resolve_precision(model, V100.gpu, vllm_version="0.7.0")
    assert p.quant_kernel == "gptq_exllama"  # the method's kernel; TP decides per layer
    assert [f.name for f in kernels.families_used(model, p, tp=8)] == ["gptq_alt", "gptq_exllama"]
    assert [f.name for f in kernels.families_used(model, p, tp=1)] == ["gptq_exllama"]


def _rates(**coefficients):
    c = Coefficients(gemm_compute_efficiency=1.0, memory_efficiency=1.0, **coefficients)
    return kernels.GemmRates(coefficients=c, flops_per_s=125e12, bytes_per_s=900e9, hbm_bytes_per_s=900e9,
                             simt_flops_per_s=2 * 15.7e12)


def test_alt_cost_reads_weights_and_gathered_scales_at_its_efficiency_up_to_8_rows():
    # down_proj of Llama-3.1-405B at TP8 on a V100: 6656 x 16384 int4 weights
    params = 53248 / 8 * 16384
    g = _Gemm(flops_per_token=2 * params, weight_bytes=params * (4 + 20 / 128) / 8, params=params,
              activation_bytes_per_token=2 * (6656 + 16384))
    r = _rates(gptq_alt_memory_efficiency=0.5)
    for m in (1, 8):
        bytes_ = g.weight_bytes + kernels.ALT_GATHER_BYTES_PER_WEIGHT * params + m * g.activation_bytes_per_token
        assert kernels.gptq_alt_cost(g, m, r) == pytest.approx(bytes_ / 450e9)  # memory bound
    # above 8 rows: reconstruct the fp16 matrix (gathered reads, fp16 write), then cuBLAS reads it
    m = 9
    reconstruct = (g.weight_bytes + 3.0 * params) / 450e9 + 2 * params / 900e9
    gemm = max(m * 2 * params / 125e12, (2 * params + m * g.activation_bytes_per_token) / 900e9)
    assert kernels.gptq_alt_cost(g, m, r) == pytest.approx(reconstruct + gemm)
    # the alt path is slower than exllama on the same weights at the same efficiency
    assert kernels.gptq_alt_cost(g, 1, r) > 4 * kernels.exllama_cost(g, 1, _rates(exllama_memory_efficiency=0.5))


def test_alt_kernel_is_compute_bound_at_half_the_half2_rate_when_bandwidth_is_free():
    g = _Gemm(flops_per_token=2e6, weight_bytes=0.0, params=0.0, activation_bytes_per_token=0.0)
    r = kernels.GemmRates(coefficients=Coefficients(gemm_compute_efficiency=1.0), flops_per_s=125e12,
                          bytes_per_s=900e9, hbm_bytes_per_s=900e9, simt_flops_per_s=31.4e12)
    assert kernels.gptq_alt_cost(g, 8, r) == pytest.approx(8 * 2e6 / 15.7e12)  # dequantizes again per row


def test_alt_coefficient_is_fitted_when_runs_use_it_and_noted_when_not():
    from calibrate.fit.online import kernel_coefficients
    from perfmodel.cost.coefficients import default_profile

    model = load_model("llama-3.1-405b-gptq-int4")
    p = resolve_precision(model, V100.gpu, vllm_version="0.7.0")
    assert kernel_coefficients([_Obs(model=model, precision=p, layout=Layout(tp=8, pp=2))]) == (
        "gptq_alt_memory_efficiency", "exllama_memory_efficiency", "exllama_compute_efficiency",
        "exllama_kernel_fixed_s", "exllama_reconstruct_memory_efficiency")
    assert kernel_coefficients([_Obs(model=model, precision=p, layout=Layout(tp=1, pp=16))]) == (
        "exllama_memory_efficiency", "exllama_compute_efficiency", "exllama_kernel_fixed_s",
        "exllama_reconstruct_memory_efficiency")
    assert "gptq_alt_memory_efficiency" not in default_profile("v100-sxm2-32gb").fitted
    assert Coefficients().gptq_alt_memory_efficiency == 0.5  # the prior predictions use until a refit


# ---- the Hopper quantized families fitted on H200 sweep 2 (machete, awq_marlin, fp8_w8a8, the fp8 KV cache) ----

@pytest.mark.parametrize("name", ["machete", "awq_marlin", "fp8_w8a8"])
def test_the_swept_families_have_their_own_coefficients(name):
    assert kernels.BY_NAME[name].fitted


def test_scaled_dense_cost_is_the_dense_roofline_at_the_familys_rates():
    g = _Gemm(flops_per_token=2e6, weight_bytes=1e6, activation_bytes_per_token=10.0, input_elements_per_token=100.0)
    c = Coefficients(machete_memory_efficiency=0.5, machete_compute_efficiency=0.25)
    r = kernels.GemmRates(coefficients=c, flops_per_s=1e12, bytes_per_s=1e9, hbm_bytes_per_s=2e9, simt_flops_per_s=0.0)
    machete = kernels.scaled_dense_cost("machete_memory_efficiency", "machete_compute_efficiency")  # no tiles
    assert machete(g, 1, r) == pytest.approx((1e6 + 10) / (0.5 * 2e9))  # memory bound at its own efficiency
    assert machete(g, 10_000, r) == pytest.approx(2e10 / (0.25 * 1e12))  # compute bound at its share of dense
    same = kernels.scaled_dense_cost("", "machete_compute_efficiency")
    r1 = kernels.GemmRates(coefficients=Coefficients(), flops_per_s=1e12, bytes_per_s=1e9, hbm_bytes_per_s=2e9,
                           simt_flops_per_s=0.0)
    assert same(g, 7, r1) == pytest.approx(kernels.dense_cost(g, 7, r1))  # "" memory: the dense streaming rate


def test_fp8_w8a8_pays_the_activation_quantization_pass():
    g = _Gemm(flops_per_token=2e6, weight_bytes=1e6, activation_bytes_per_token=10.0, input_elements_per_token=100.0)
    r = kernels.GemmRates(coefficients=Coefficients(fp8_w8a8_quant_bytes_per_element=3.0), flops_per_s=1e12,
                          bytes_per_s=1e9, hbm_bytes_per_s=2e9, simt_flops_per_s=0.0)
    fp8 = kernels.BY_NAME["fp8_w8a8"].cost  # 64 rows: whole tiles, no padding
    assert fp8(g, 64, r) == pytest.approx(kernels.dense_cost(g, 64, r) + 64 * 100 * 3.0 / 1e9)


def test_an_fp8_kv_cache_has_its_own_attention_coefficient_and_it_is_fitted():
    from calibrate.fit.online import kernel_coefficients
    from perfmodel.cost.step import StepCostModel

    llama = load_model("llama-3.1-8b")
    fp8 = resolve_precision(llama, H200.gpu, kv_cache_dtype="fp8")
    auto = resolve_precision(llama, H200.gpu)
    assert kernel_coefficients([_Obs(model=llama, precision=fp8, layout=Layout(tp=1))]) == kernels.FP8_KV_FITTED
    assert kernel_coefficients([_Obs(model=llama, precision=auto, layout=Layout(tp=1))]) == ()

    def attention_s(precision, c):
        cost = StepCostModel(llama, H200, Layout(tp=1), precision, c)
        return cost._attention(0.0, 0.0, 0.0, 1e6, 100.0, max, min)

    slow = Coefficients(fp8_kv_attention_memory_efficiency=0.35)
    assert attention_s(fp8, slow) == pytest.approx(2 * attention_s(fp8, Coefficients(fp8_kv_attention_memory_efficiency=0.7)))
    assert attention_s(auto, slow) == attention_s(auto, Coefficients())  # a 16-bit cache does not read it


@pytest.mark.parametrize("m, k, rows", [(8, 4096, 16), (48, 4096, 64), (100, 4096, 64), (192, 8192, 128),
                                        (16384, 8192, 256), (16384, 4096, 128)])
def test_fp8_tiles_follow_vllms_sm90_dispatch(m, k, rows):
    assert float(kernels.fp8_sm90_tile_rows(m, k, 4096.0)) == rows


@pytest.mark.parametrize("m, k, n, rows", [(8, 4096, 4096, 16), (24, 4096, 4096, 32), (48, 4096, 4096, 16),
                                           (192, 8192, 8192, 128), (192, 8192, 10240, 256),
                                           (192, 4096, 4096, 64), (1000, 4096, 4096, 128), (1000, 8192, 57344, 256)])
def test_machete_tiles_follow_its_default_heuristic(m, k, n, rows):
    assert float(kernels.machete_tile_rows(m, k, n)) == rows


def test_a_tiled_familys_math_runs_on_whole_tiles():
    # 192 rows of a 8192 x 10240 layer: Machete's 256-row tiles, a third more math than the rows need
    g = _Gemm(flops_per_token=2.0 * 8192 * 10240, weight_bytes=1.0, activation_bytes_per_token=0.0,
              input_elements_per_token=8192.0)
    r = kernels.GemmRates(coefficients=Coefficients(), flops_per_s=1e12, bytes_per_s=1e12, hbm_bytes_per_s=1e12,
                          simt_flops_per_s=0.0)
    assert kernels.BY_NAME["machete"].cost(g, 192, r) == pytest.approx(256 * g.flops_per_token / 1e12)
    assert kernels.BY_NAME["machete"].cost(g, 256, r) == pytest.approx(256 * g.flops_per_token / 1e12)


def test_fp8_kv_prefill_attention_runs_at_the_fp8_peak_on_hopper_only():
    from perfmodel.cost.step import StepCostModel

    llama = load_model("llama-3.1-8b")
    fp8 = resolve_precision(llama, H200.gpu, kv_cache_dtype="fp8")
    auto = resolve_precision(llama, H200.gpu)
    half = Coefficients(fp8_kv_attention_compute_efficiency=0.5)

    def prefill_s(precision, c):  # compute-bound prefill: many pairs, no context bytes
        return StepCostModel(llama, H200, Layout(tp=1), precision, c)._attention(1e9, 0.0, 0.0, 0.0, 0.0, max, min)

    peaks = H200.gpu.peak_flops_per_s
    assert prefill_s(fp8, Coefficients()) == pytest.approx(prefill_s(auto, Coefficients()) * peaks["bfloat16"] / peaks["fp8"])
    assert prefill_s(fp8, half) == pytest.approx(2 * prefill_s(fp8, Coefficients()))
    a100 = load_hardware("dgx-a100")
    fp8_a100 = resolve_precision(llama, a100.gpu, kv_cache_dtype="fp8")
    auto_a100 = resolve_precision(llama, a100.gpu)
    cost = lambda p: StepCostModel(llama, a100, Layout(tp=1), p, half)._attention(1e9, 0.0, 0.0, 0.0, 0.0, max, min)
    assert cost(fp8_a100) == cost(auto_a100)  # no FA3: the 16-bit rate
def test_awq_is_awq_gemm_below_256_rows_and_dequantize_plus_matmul_from_256():
    # down_proj of Llama-3.1-70B at TP4: 7168 x 8192 int4 weights, an fp16 scale and a 4-bit zero per 128
    params = 28672 / 4 * 8192
    g = _Gemm(flops_per_token=2 * params, weight_bytes=params * (4 + 20 / 128) / 8, params=params,
              activation_bytes_per_token=2 * (7168 + 8192))
    r = _rates()
    for m in (1, 64, 255):
        assert kernels.awq_cost(g, m, r) == pytest.approx(kernels.dense_cost(g, m, r))  # ops.awq_gemm
    m = kernels.AWQ_MATMUL_MIN_ROWS
    dequantize = (g.weight_bytes + 2 * params) / 900e9  # awq_dequantize: int4 read, fp16 written
    matmul = max(m * 2 * params / 125e12, (2 * params + m * g.activation_bytes_per_token) / 900e9)
    assert kernels.awq_cost(g, m, r) == pytest.approx(dequantize + matmul)
    assert kernels.awq_cost(g, m, r) > 1.5 * kernels.awq_cost(g, m - 1, r)  # the step vLLM's heuristic takes
    costs = kernels.awq_cost(g, np.array([255, 256]), r)  # elementwise over arrays, as StepCostModel calls it
    assert costs.tolist() == pytest.approx([float(kernels.awq_cost(g, m, r)) for m in (255, 256)])


def test_forced_awq_on_an_a100_runs_the_awq_row_at_the_dense_coefficients():
    model = load_model("llama-3.1-70b")
    p = resolve_precision(model, load_hardware("a100-sxm4-40gb").gpu, quantization="awq", vllm_version="0.7.0")
    assert p.quant_kernel == "awq"
    used = kernels.families_used(model, p, tp=4)
    assert [f.name for f in used] == ["awq"]  # every decoder linear layer
    assert used[0].cost is kernels.awq_cost and used[0].fitted == ()  # memory/compute efficiency, no own coefficient
def test_exllama_cost_adds_its_fixed_time_per_call_and_runs_its_multiply_at_its_own_simt_efficiency():
    # qkv of Qwen2.5-72B at TP8 on a V100: 8192 x 1280 int4 weights
    params = 8192 * 1280
    g = _Gemm(flops_per_token=2 * params, weight_bytes=params * (4 + 20 / 128) / 8, params=params,
              activation_bytes_per_token=2 * (8192 + 1280))
    r = _rates(exllama_memory_efficiency=0.5, exllama_compute_efficiency=0.25, exllama_kernel_fixed_s=1e-5)
    memory_1 = (g.weight_bytes + g.activation_bytes_per_token) / (0.5 * 900e9)
    assert kernels.exllama_cost(g, 1, r) == pytest.approx(memory_1 + 1e-5)
    # 48 rows: 6 chunks re-read the weights (fraction 1) or the CUDA cores at a quarter of 2 x 15.7 TFLOP/s bind
    memory_48 = (6 * g.weight_bytes + 48 * g.activation_bytes_per_token) / (0.5 * 900e9)
    compute_48 = 48 * g.flops_per_token / (0.25 * 2 * 15.7e12)
    assert kernels.exllama_cost(g, 48, r) == pytest.approx(max(memory_48, compute_48) + 1e-5)
    # above 50 rows (dequantize + cuBLAS) no exllama launch: the fixed time is not paid
    assert kernels.exllama_cost(g, 64, r) == pytest.approx(
        kernels.exllama_cost(g, 64, _rates(exllama_memory_efficiency=0.5, exllama_compute_efficiency=0.25)))


def test_exllama_above_50_rows_reconstructs_at_its_own_efficiency_then_multiplies_with_cublas():
    # gate_up of Qwen2.5-72B-GPTQ at TP8 on a V100: 8192 x 7424 int4 weights, a 498-token prompt
    params = 8192 * 7424
    g = _Gemm(flops_per_token=2 * params, weight_bytes=params * (4 + 20 / 128) / 8, params=params,
              activation_bytes_per_token=2 * (8192 + 7424))
    r = _rates(exllama_reconstruct_memory_efficiency=0.25)
    reconstruct = (g.weight_bytes + 2 * params) / (0.25 * 900e9)  # int4 in, fp16 out
    gemm = max(498 * 2 * params / 125e12, (2 * params + 498 * g.activation_bytes_per_token) / 900e9)
    assert kernels.exllama_cost(g, 498, r) == pytest.approx(reconstruct + gemm)
    # the quantized kernel's rows (<= 50) do not reconstruct
    assert kernels.exllama_cost(g, 50, r) == kernels.exllama_cost(g, 50, _rates(exllama_reconstruct_memory_efficiency=0.9))


def test_the_default_release_of_the_kernel_table_is_perfmodels():
    from perfmodel.engine.args import DEFAULT_VLLM_VERSION
    from perfmodel.engine.releases import parse_release

    assert kernels.DEFAULT_RELEASE == parse_release(DEFAULT_VLLM_VERSION)
