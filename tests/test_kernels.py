"""The kernel-family table: which family each (GPU, method, checkpoint, TP split) selects, the formulas, the wiring."""

from pathlib import Path

import pytest

from hardware import load_hardware
from perfmodel import kernels
from perfmodel.coefficients import GROUPS, Coefficients
from perfmodel.kernels import KernelFacts, method_kernel, select
from perfmodel.layout import Layout
from perfmodel.model import load_model
from perfmodel.precision import resolve_precision

ROOT = Path(__file__).parents[1]
V100 = load_hardware("taiwania2")
H200 = load_hardware("h200-sxm")
GPTQ = dict(method="gptq", weight_bits=4, group_size=128, desc_act=False)


@pytest.mark.parametrize("facts, kernel", [
    (KernelFacts(cc=7.0, **GPTQ), "gptq_exllama"),
    (KernelFacts(cc=9.0, **{**GPTQ, "method": "gptq_marlin"}), "machete"),
    (KernelFacts(cc=9.0, **{**GPTQ, "method": "gptq_marlin", "desc_act": True}), "gptq_marlin"),
    (KernelFacts(cc=9.0, **{**GPTQ, "method": "gptq_marlin", "group_size": 64}), "gptq_marlin"),
    (KernelFacts(cc=8.0, **{**GPTQ, "method": "gptq_marlin"}), "gptq_marlin"),
    (KernelFacts(cc=8.0, method="compressed-tensors", scheme="W4A16", group_size=128), "gptq_marlin"),
    (KernelFacts(cc=7.5, method="awq", group_size=128), "awq"),
    (KernelFacts(cc=8.0, method="awq_marlin", group_size=128), "awq_marlin"),
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
    p = resolve_precision(qwen, V100.gpu)
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
    from calibrate.fit_online import kernel_coefficients

    qwen = load_model(str(ROOT / "data/taiwania/qwen2.5-72b-instruct-gptq-int4"))
    p = resolve_precision(qwen, V100.gpu)
    used = [f.name for f in kernels.families_used(qwen, p, tp=8)]
    assert used == ["gptq_exllama"]  # every decoder-layer GEMM is quantized (the LM head is costed apart)
    obs = _Obs(model=qwen, precision=p, layout=Layout(tp=8))
    assert kernel_coefficients([obs]) == ("exllama_memory_efficiency",)
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
