"""Kernel families: which kernel vLLM runs for a linear layer, what it costs, and which coefficients price it.

One row of :data:`KERNELS` per family. A row says

- when vLLM picks it (``selects``, on :class:`KernelFacts`: the GPU's compute capability, the quantization method
  and checkpoint facts, whether tensor parallelism splits the layer's input); the first row that selects wins,
  in the order vLLM prefers them (docs/kernels.md cites the vLLM source of every predicate);
- its own coefficients (``fitted``, one group of ``perfmodel.cost.coefficients.GROUPS``), which calibrate/fit/offline.py and
  calibrate/fit/online.py fit when a run uses the family; a family without any is priced at the dense GEMM
  coefficients fitted on unquantized weights (scenario notes say so);
- its cost: seconds of one layer's weight matrix on one GPU for ``m`` rows, from its bytes and FLOPs
  (``m`` decides the path inside a family, e.g. exllama's quantized kernel up to 50 rows, dequantize + cuBLAS above).

A new kernel family is a row here, its cost function, its coefficients in ``Coefficients`` (with a prior and a
group) and tests; precision.py, cost.py, the fits and the scenario notes read this table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # the cost functions take cost._Gemm-like objects and GemmRates
    from perfmodel.cost.coefficients import Coefficients

# vLLM releases whose kernel choice differs, each boundary read from that release's wheel and the one before it
# (docs/kernels.md, "Kernel choice by release"); a release is (major, minor, patch)
DEFAULT_RELEASE = (0, 26, 0)  # perfmodel.engine.args.DEFAULT_VLLM_VERSION (tests/test_kernels.py checks it)
MACHETE_GROUP_64_FROM = (0, 9, 2)  # utils/machete_utils.py query_machete_supported_group_sizes: -1/64/128 with
#                                    16-bit activations (0.9.1: MACHETE_SUPPORTED_GROUP_SIZES = [-1, 128])
MARLIN_CC_75_FROM = (0, 14, 0)  # gptq_marlin.py / awq_marlin.py get_min_capability 75 (0.13.0: 80)
AWQ_MARLIN_MP_FROM = (0, 19, 0)  # awq_marlin.py builds its layers through choose_mp_linear_kernel, Machete first
#                                  on Hopper (0.18.1: apply_awq_marlin_linear, Marlin only)
AUTO_GPTQ_FROM = (0, 22, 0)  # quantization/__init__.py method_to_config: gptq, gptq_marlin, auto_gptq ->
#                              AutoGPTQConfig, kernels by choose_mp_linear_kernel (0.21.0: GPTQConfig, GPTQMarlinConfig)
AUTO_AWQ_FROM = (0, 24, 0)  # ... awq, awq_marlin, auto_awq -> AutoAWQConfig (0.23.0: AWQConfig, AWQMarlinConfig)


@dataclass(frozen=True, kw_only=True)
class KernelFacts:
    """What vLLM's kernel choice for one linear layer depends on.

    ``method`` is the vLLM quantization method that runs (``gptq``, ``gptq_marlin``, ``awq``, ``fp8``, ...; None
    unquantized), ``scheme`` the checkpoint's scheme (``W4A16``, ``FP8_W8A8``, ...; ``CheckpointQuantization``),
    ``cc`` the GPU's compute capability, ``release`` the vLLM release (its kernel choice changed between
    releases: the ``*_FROM`` constants below). ``input_split``: tensor parallelism splits the layer's input
    features (a row-parallel layer with TP > 1: vLLM's ``input_size != input_size_per_partition``).
    ``num_experts`` > 1: the expert GEMMs of an MoE layer. ``quantized``: the layer's weights are stored quantized
    (embeddings, the LM head and the MoE router never are)."""

    method: str | None = None
    release: tuple[int, int, int] = DEFAULT_RELEASE
    scheme: str | None = None
    cc: float = 9.0
    weight_bits: int | None = None
    group_size: int | None = None
    desc_act: bool | None = None
    sym: bool | None = None  # GPTQ symmetric weights (no zero points)
    zero_point: bool | None = None  # AWQ zero points
    input_split: bool = False
    num_experts: int = 1
    quantized: bool = True

    def for_layer(self, *, parallel: str, tp: int, num_experts: int, quantized: bool) -> "KernelFacts":
        return dataclasses.replace(self, input_split=parallel == "row" and tp > 1, num_experts=num_experts,
                                   quantized=quantized)


@dataclass(frozen=True)
class GemmRates:
    """The rates one step's GEMMs run at, for ``m`` rows (``m`` may be a numpy array)."""

    coefficients: Coefficients
    flops_per_s: Any  # tensor-core GEMM rate at m rows: dense peak x eff(m) (tile quantisation of small m)
    bytes_per_s: float  # HBM at memory_efficiency (streaming reads, cuBLAS)
    hbm_bytes_per_s: float  # datasheet HBM bandwidth
    simt_flops_per_s: float  # half2 FMAs on the CUDA cores: 2 x the fp32 peak (0 when the catalog has none)


CostFn = Callable[..., Any]  # (gemm, m, rates) -> seconds; a wrapping family's: (inner seconds, rates) -> seconds


@dataclass(frozen=True, kw_only=True)
class KernelFamily:
    """One row of :data:`KERNELS` (module docstring)."""

    name: str
    what: str  # the kernel vLLM runs, with its source
    selects: Callable[[KernelFacts], bool]
    cost: CostFn
    label: str = ""  # how notes name it ("the exllama GPTQ kernel"); defaults to "the NAME kernel"
    fitted: tuple[str, ...] = ()  # its own coefficients, fitted when a run uses it
    w8a8_dtype: str | None = None  # "fp8" / "int8" when activations are quantized too (the GEMM's peak key)
    wraps: bool = False  # prices another family's GEMMs (fused MoE): its cost takes that family's seconds

    @property
    def quantized(self) -> bool:
        return self.name not in ("cublas", "fused_moe")


# ---- cost formulas ---------------------------------------------------------------------------------------------


def dense_cost(g: Any, m: Any, r: GemmRates) -> Any:
    """A cuBLAS GEMM (or a kernel priced like one): ``max(FLOPs / rate(m), bytes / HBM rate)``; weights read once
    per step (an MoE layer: the experts at least one of the m tokens visits, uniform routing)."""
    import numpy as np  # here, not at the top: precision.py imports this table and `perfmodel --help` no numpy

    if g.num_experts > 1:
        touched = g.num_experts * (1.0 - (1.0 - g.experts_per_token / g.num_experts) ** m)
    else:
        touched = 1.0
    memory = (touched * g.weight_bytes + m * g.activation_bytes_per_token) / r.bytes_per_s
    return np.maximum(m * g.flops_per_token / r.flops_per_s, memory)


def scaled_dense_cost(memory: str, compute: str, *, quant_bytes: str | None = None,
                      tile_rows: Callable[[Any, float, float], Any] | None = None) -> CostFn:
    """A GEMM priced like cuBLAS's (:func:`dense_cost`) at its family's own rates: weight reads at the coefficient
    ``memory`` of datasheet HBM ("": the dense streaming rate), tensor-core math at ``compute`` times the dense
    rate at the same rows; with ``quant_bytes``, a separate pass over the input before the GEMM (fp8's per-token
    activation quantization: that many HBM bytes per input element, at the streaming rate); with ``tile_rows``
    (m, k, n -> rows of the kernel's tile, for k inputs and n outputs), the math of the rows padded up to whole
    tiles."""

    def cost(g: Any, m: Any, r: GemmRates) -> Any:
        import numpy as np

        c = r.coefficients
        memory_rate = r.hbm_bytes_per_s * getattr(c, memory) if memory else r.bytes_per_s
        rows = m
        if tile_rows is not None:
            k = g.input_elements_per_token
            tile = tile_rows(m, k, g.flops_per_token / (2.0 * k))
            rows = np.ceil(np.asarray(m, dtype=float) / tile) * tile
        seconds = np.maximum(rows * g.flops_per_token / (r.flops_per_s * getattr(c, compute)),
                             (g.weight_bytes + m * g.activation_bytes_per_token) / memory_rate)
        if quant_bytes:
            seconds = seconds + m * g.input_elements_per_token * getattr(c, quant_bytes) / r.bytes_per_s
        return seconds

    return cost


def fp8_sm90_tile_rows(m: Any, k: float, n: float) -> Any:
    """Rows of one output tile of vLLM's CUTLASS fp8 GEMM on Hopper for m rows and k inputs: the row count the
    tiles pad m up to (csrc/quantization/w8a8/cutlass/c3x/scaled_mm_sm90_fp8_dispatch.cuh
    cutlass_gemm_sm90_fp8_dispatch, read at vLLM commit c30af86; the 0.26 wheel ships it compiled, so not checked
    against the 0.26 tag): up to 16 rows and up to 64 the operands are
    swapped and m runs along tiles 16 and 64 wide; (64, 128] 64-row tiles; above 128, 128-row tiles, 256-row ones
    from 8192 rows when k >= 6144."""
    import numpy as np

    m = np.asarray(m, dtype=float)
    big = np.where((m >= 8192) & (k >= 6144), 256.0, 128.0)
    return np.where(m <= 16, 16.0, np.where(m <= 64, 64.0, np.where(m <= 128, 64.0, big)))


def machete_tile_rows(m: Any, k: float, n: float) -> Any:
    """Rows (activation tokens) of one tile of vLLM's Machete GEMM for m rows, k inputs and n outputs: the weights
    are its A operand, the tokens run along the tile's second dimension, whose size the default heuristic picks
    from m, k and n (csrc/quantization/machete/generate.py default_tile_heuristic_config, "tuned for H100s";
    read in vLLM's repository; the 0.26 wheel ships it compiled, so not checked against the 0.26 tag)."""
    import numpy as np

    m = np.asarray(m, dtype=float)
    above_256 = np.where((k <= 16384) & (n <= 4096), 128.0, 256.0)
    above_128 = np.where((k <= 4096) & (n <= 4096), 64.0, np.where((k <= 8192) & (n <= 8192), 128.0, 256.0))
    above_64 = np.where((k <= 4069) & (n <= 4069), 32.0, np.where((k <= 4069) & (n <= 8192), 64.0, 128.0))
    above_32 = np.where((k <= 6144) & (n <= 6144), 16.0, 64.0)
    return np.where(m > 256, above_256, np.where(m > 128, above_128, np.where(
        m > 64, above_64, np.where(m > 32, above_32, np.where(m > 16, 32.0, 16.0)))))


EXLLAMA_MAX_ROWS = 50  # vLLM csrc/quantization/gptq/q_gemm.cu MAX_Q_GEMM_ROWS (4-bit)
EXLLAMA_BLOCK_ROWS = 8  # ... BLOCK_M_SIZE_MAX: rows per pass of the quantized kernel


def exllama_cost(g: Any, m: Any, r: GemmRates) -> Any:
    """vLLM's exllama GPTQ GEMM (q_gemm.cu gemm_half_q_half_cuda with use_exllama): up to 50 rows, the quantized
    kernel, whose blocks take 8 rows each and read the int4 weights (at ``exllama_memory_efficiency``): each chunk
    after the first reads ``exllama_reread_fraction`` of them again from HBM; it multiplies with half2 FMAs on the
    CUDA cores, not the tensor cores. More rows, the weights are dequantized to an fp16 matrix (read int4, write
    fp16; reconstruct_exllama, at ``exllama_reconstruct_memory_efficiency``) and cuBLAS multiplies with it."""
    import numpy as np

    c = r.coefficients
    act = m * g.activation_bytes_per_token
    chunks = np.ceil(np.asarray(m, dtype=float) / EXLLAMA_BLOCK_ROWS)
    reads = 1.0 + c.exllama_reread_fraction * np.maximum(chunks - 1.0, 0.0)
    quantized_rate = r.hbm_bytes_per_s * c.exllama_memory_efficiency
    simt_rate = r.simt_flops_per_s * c.exllama_compute_efficiency if r.simt_flops_per_s else r.flops_per_s
    small = (np.maximum(m * g.flops_per_token / simt_rate, (reads * g.weight_bytes + act) / quantized_rate)
             + c.exllama_kernel_fixed_s)  # one launch per weight matrix: its fixed part (coefficients.py)
    large = (_dequantize_s(g, r.hbm_bytes_per_s * c.exllama_reconstruct_memory_efficiency)
             + _fp16_gemm_s(g, m, r))
    return np.where(np.asarray(m) <= EXLLAMA_MAX_ROWS, small, large)


def _dequantize_s(g: Any, bytes_per_s: Any) -> Any:
    """A streaming dequantize pass: read the quantized weights, write them as an fp16 matrix (2 B per weight)."""
    return (g.weight_bytes + 2.0 * g.params) / bytes_per_s


def _fp16_gemm_s(g: Any, m: Any, r: GemmRates) -> Any:
    """cuBLAS multiplying m rows with the dequantized fp16 matrix (read once, with the rows' activations)."""
    import numpy as np

    return np.maximum(m * g.flops_per_token / r.flops_per_s,
                      (2.0 * g.params + m * g.activation_bytes_per_token) / r.bytes_per_s)


ALT_MAX_ROWS = 8  # vLLM csrc/quantization/gptq/q_gemm.cu MAX_ALT_GEMM_ROWS: the alt kernel's rows, else reconstruct
# Bytes gathered per weight by the alt kernel and reconstruct_gptq with act-order: each weight's fp16 scale at its own
# group (g_idx[k], scattered rows of the scales matrix: 2 B, a warp's 32 columns fill two 32-byte sectors) and its
# packed zero word (4 B shared by 8 columns: one 32-byte sector per 32 columns, 1 B per weight). Read from HBM: the
# scales and zeros of a 53248-input layer are 13.6 MB per GPU at TP8, more than a V100's 6 MB L2; what L2 does
# serve, gptq_alt_memory_efficiency takes up.
ALT_GATHER_BYTES_PER_WEIGHT = 3.0


def gptq_alt_cost(g: Any, m: Any, r: GemmRates) -> Any:
    """vLLM's GPTQ GEMM with exllama off (q_gemm.cu gemm_half_q_half_cuda, use_exllama false), which vLLM 0.7.0
    runs for an act-order checkpoint's layers whose input TP splits (gptq.py: ExllamaState.UNUSED). Up to 8 rows the
    alt kernel (gemm_half_q_half_alt_4bit_kernel): one pass over the int4 weights plus each weight's scale and zero
    gathered at its group, at ``gptq_alt_memory_efficiency`` of HBM; it dequantizes again for every row (two half
    FMAs per multiply-add: half the CUDA cores' half2 rate). More rows: reconstruct_gptq writes an fp16 matrix
    (the same gathered reads) and cuBLAS multiplies with it."""
    import numpy as np

    c = r.coefficients
    act = m * g.activation_bytes_per_token
    gathered = g.weight_bytes + ALT_GATHER_BYTES_PER_WEIGHT * g.params
    alt_rate = r.hbm_bytes_per_s * c.gptq_alt_memory_efficiency
    simt_rate = (r.simt_flops_per_s * c.gemm_compute_efficiency / 2.0 if r.simt_flops_per_s
                 else r.flops_per_s)
    small = np.maximum(m * g.flops_per_token / simt_rate, (gathered + act) / alt_rate)
    reconstruct = gathered / alt_rate + 2.0 * g.params / r.bytes_per_s
    large = reconstruct + _fp16_gemm_s(g, m, r)
    return np.where(np.asarray(m) <= ALT_MAX_ROWS, small, large)


AWQ_MATMUL_MIN_ROWS = 256  # vLLM 0.7.0 awq.py AWQLinearMethod.apply FP16_MATMUL_HEURISTIC_CONDITION (0.19.1 too)


def awq_cost(g: Any, m: Any, r: GemmRates) -> Any:
    """vLLM's AWQ method (awq.py AWQLinearMethod.apply). Below 256 rows ops.awq_gemm, a tensor-core kernel that
    dequantizes int4 tiles in shared memory: the dense formula on the int4 bytes. From 256 rows
    ops.awq_dequantize first writes the whole layer as an fp16 matrix, every step, and torch.matmul (cuBLAS)
    multiplies with it: a streaming pass (int4 read, fp16 write) then a GEMM reading 2 B per weight."""
    import numpy as np

    large = _dequantize_s(g, r.bytes_per_s) + _fp16_gemm_s(g, m, r)
    return np.where(np.asarray(m) >= AWQ_MATMUL_MIN_ROWS, large, dense_cost(g, m, r))


def fused_moe_cost(inner: Any, r: GemmRates) -> Any:
    """vLLM's fused MoE kernel (Triton fused_moe): the expert GEMMs at ``fused_moe_efficiency`` of the rates the
    weight format's own family prices them at."""
    return inner / r.coefficients.fused_moe_efficiency


# ---- the table --------------------------------------------------------------------------------------------------

MARLIN_GROUP_SIZES = (-1, 32, 64, 128)  # vLLM 0.7.0 utils/marlin_utils.py MARLIN_SUPPORTED_GROUP_SIZES (0.26 too)
_WNA16 = ("W4A16", "W8A16")


def machete_group_sizes(release: tuple[int, int, int]) -> tuple[int, ...]:
    """Group sizes Machete takes with 16-bit activations (``MACHETE_GROUP_64_FROM``)."""
    return (-1, 64, 128) if release >= MACHETE_GROUP_64_FROM else (-1, 128)


def marlin_min_cc(release: tuple[int, int, int]) -> float:
    """The compute capability Marlin needs (``MARLIN_CC_75_FROM``)."""
    return 7.5 if release >= MARLIN_CC_75_FROM else 8.0


def _mixed_precision(f: KernelFacts) -> bool:
    """GPTQ through choose_mp_linear_kernel (Machete, then Marlin, then exllama): the gptq_marlin method (0.7.0 on),
    AutoGPTQ (from ``AUTO_GPTQ_FROM``) and compressed-tensors WNA16."""
    return f.method in ("gptq_marlin", "auto_gptq") or f.scheme in _WNA16


def _awq_marlin(f: KernelFacts) -> bool:
    """AWQ on Marlin/Machete: the awq_marlin method, or AutoAWQ where ``check_marlin_supported`` takes the weights
    (zero points, a Marlin group size; vLLM 0.26 auto_awq.py AutoAWQConfig.get_quant_method, else its
    AutoAWQLinearMethod: the awq row)."""
    return f.method == "awq_marlin" or (f.method == "auto_awq" and bool(f.zero_point)
                                        and f.group_size in MARLIN_GROUP_SIZES)


def _awq_mixed_precision(f: KernelFacts) -> bool:
    """AWQ (zero points) through choose_mp_linear_kernel: AutoAWQ, and awq_marlin from ``AWQ_MARLIN_MP_FROM``."""
    return _awq_marlin(f) and (f.method == "auto_awq" or f.release >= AWQ_MARLIN_MP_FROM)


def _machete_takes(f: KernelFacts) -> bool:
    """MacheteLinearKernel.can_implement: Hopper, its group sizes, act-order only where TP leaves the input whole."""
    return (f.cc >= 9.0 and f.group_size in machete_group_sizes(f.release)
            and not (f.desc_act and f.input_split))


def _marlin_takes(f: KernelFacts) -> bool:
    """The Marlin methods (GPTQ through choose_mp_linear_kernel, awq_marlin) where Machete did not take the layer:
    MarlinLinearKernel's capability and group sizes."""
    return ((_mixed_precision(f) or _awq_marlin(f)) and f.cc >= marlin_min_cc(f.release)
            and f.group_size in MARLIN_GROUP_SIZES)


KERNELS: tuple[KernelFamily, ...] = (
    KernelFamily(
        name="fused_moe", label="vLLM's fused MoE kernel", wraps=True,
        what="fused_moe.py fused_experts (Triton), the expert GEMMs of an MoE layer",
        selects=lambda f: f.num_experts > 1, cost=fused_moe_cost, fitted=("fused_moe_efficiency",)),
    KernelFamily(
        name="gptq_alt", label="the GPTQ act-order (alt) kernel",
        what="gptq.py GPTQLinearMethod with exllama off (ExllamaState.UNUSED: act-order, TP splits the input): "
             "ops.gptq_gemm's alt kernel up to 8 rows, reconstruct_gptq + cuBLAS above",
        selects=lambda f: (f.quantized and f.method == "gptq" and bool(f.desc_act) and f.group_size != -1
                           and f.input_split),
        cost=gptq_alt_cost, fitted=("gptq_alt_memory_efficiency",)),
    KernelFamily(
        name="machete",
        what="MacheteLinearKernel: symmetric int4/int8, group -1/128 (and 64 from vLLM 0.9.2), cc >= 9.0; act-order "
             "only where TP leaves the input whole (MacheteLinearKernel.can_implement)",
        selects=lambda f: f.quantized and _mixed_precision(f) and _machete_takes(f),
        cost=scaled_dense_cost("machete_memory_efficiency", "machete_compute_efficiency",
                               tile_rows=machete_tile_rows),
        fitted=("machete_memory_efficiency", "machete_compute_efficiency")),
    KernelFamily(
        name="awq_marlin", what="AWQ on Hopper through choose_mp_linear_kernel (awq_marlin from vLLM 0.19.0, AutoAWQ "
                                 "from 0.24.0): Machete with zero points",
        selects=lambda f: f.quantized and _awq_mixed_precision(f) and _machete_takes(f),
        cost=scaled_dense_cost("awq_marlin_memory_efficiency", "awq_marlin_compute_efficiency"),
        fitted=("awq_marlin_memory_efficiency", "awq_marlin_compute_efficiency")),
    KernelFamily(
        name="marlin_hopper", label="the Marlin kernel on Hopper",
        what="MarlinLinearKernel on Hopper where Machete refuses (act-order with the input split by TP, group sizes "
             "Machete does not take), and AWQ Marlin before vLLM 0.19.0 (apply_awq_marlin_linear): the kernel "
             "timed on the H100 (data/h100-kernels), its own coefficients",
        selects=lambda f: f.quantized and f.cc >= 9.0 and _marlin_takes(f),
        cost=scaled_dense_cost("marlin_memory_efficiency", "marlin_compute_efficiency"),
        fitted=("marlin_memory_efficiency", "marlin_compute_efficiency")),
    KernelFamily(
        name="gptq_marlin", label="the Marlin kernel (below Hopper)",
        what="MarlinLinearKernel below Hopper (cc 8.x; 7.5 from vLLM 0.14.0): GPTQ, and AWQ with zero points, "
             "int4/int8 weights, float16/bfloat16; not timed on an Ampere GPU here",
        selects=lambda f: f.quantized and _marlin_takes(f),
        cost=dense_cost),
    KernelFamily(
        name="gptq_exllama", label="the exllama GPTQ kernel",
        what="gptq.py GPTQLinearMethod (the gptq method, before vLLM 0.22.0): ops.gptq_gemm (exllama-derived), "
             "float16 only, cc >= 6.0 (AutoGPTQ never reaches vLLM's Exllama kernel on CUDA: it verifies Marlin first)",
        selects=lambda f: f.quantized and f.method == "gptq", cost=exllama_cost,
        fitted=("exllama_memory_efficiency", "exllama_compute_efficiency", "exllama_kernel_fixed_s",
                "exllama_reconstruct_memory_efficiency")),
    KernelFamily(
        name="awq", what="awq.py AWQLinearMethod (-q awq before vLLM 0.24.0; from 0.24.0 AutoAWQLinearMethod where "
                          "Marlin does not take the weights): ops.awq_gemm below 256 rows, awq_dequantize + "
                          "torch.matmul from 256, cc >= 7.5",
        selects=lambda f: f.quantized and f.method in ("awq", "auto_awq"), cost=awq_cost),
    KernelFamily(
        name="fp8_w8a8", what="CUTLASS scaled_mm on fp8 weights and activations, cc >= 8.9", w8a8_dtype="fp8",
        selects=lambda f: f.quantized and f.scheme == "FP8_W8A8" and f.cc >= 8.9,
        cost=scaled_dense_cost("", "fp8_w8a8_compute_efficiency", quant_bytes="fp8_w8a8_quant_bytes_per_element",
                               tile_rows=fp8_sm90_tile_rows),
        fitted=("fp8_w8a8_compute_efficiency", "fp8_w8a8_quant_bytes_per_element")),
    KernelFamily(
        name="fp8_marlin", what="FP8 Marlin: fp8 weights, 16-bit activations (W8A16), cc >= 8.0",
        selects=lambda f: f.quantized and f.scheme in ("FP8_W8A8", "FP8_W8A16"), cost=dense_cost),
    KernelFamily(
        name="int8_w8a8", what="CUTLASS scaled_mm on int8 weights and activations, cc >= 7.5", w8a8_dtype="int8",
        selects=lambda f: f.quantized and f.scheme == "INT8_W8A8", cost=dense_cost),
    KernelFamily(
        name="cublas", what="unquantized weights: torch.nn.functional.linear (cuBLAS GEMM)",
        selects=lambda f: True, cost=dense_cost),
)
BY_NAME = {k.name: k for k in KERNELS}
QUANT_KERNELS: dict[str, str] = {k.name: k.what for k in KERNELS if k.quantized}


def select(facts: KernelFacts) -> KernelFamily:
    """The first family of :data:`KERNELS` that selects these facts (``cublas`` selects anything)."""
    return next(k for k in KERNELS if k.selects(facts))


def method_kernel(facts: KernelFacts) -> str:
    """The quantized kernel a method runs with, before TP splits any layer (``Precision.quant_kernel``); "" when
    no quantized family takes it."""
    family = select(dataclasses.replace(facts, input_split=False, num_experts=1, quantized=True))
    return family.name if family.quantized else ""


def layer_families(facts: KernelFacts, kernel: str | None = None) -> tuple[KernelFamily, ...]:
    """The family that runs a layer and, when it wraps another (fused MoE), the family whose formula it wraps.
    ``kernel`` names the weight format's family outright (a Precision built without ``kernel_facts``)."""
    inner_facts = dataclasses.replace(facts, num_experts=1)
    if kernel is not None:
        inner = BY_NAME[kernel] if kernel and facts.quantized else BY_NAME["cublas"]
    else:
        inner = select(inner_facts)
    outer = select(facts)
    return (outer, inner) if outer.wraps else (inner,)


def layer_cost(families: tuple[KernelFamily, ...], g: Any, m: Any, r: GemmRates) -> Any:
    """Seconds of one layer's GEMM (``layer_families``' result) for m rows."""
    seconds = families[-1].cost(g, m, r)
    return families[0].cost(seconds, r) if len(families) > 1 else seconds


def families_used(model: Any, precision: Any, tp: int | None) -> tuple[KernelFamily, ...]:
    """The families a model's decoder layers run with on this precision and TP degree (None: any degree, a
    layer split or whole), in table order."""
    used: set[str] = set()
    for linear in model.linear_layers():
        for degree in ((1, 2) if tp is None else (tp,)):
            used.update(f.name for f in layer_families(*layer_facts(precision, linear, degree)))
    return tuple(k for k in KERNELS if k.name in used)


def layer_facts(precision: Any, linear: Any, tp: int) -> tuple[KernelFacts, str | None]:
    """(facts, forced kernel name or None) of one model.Linear on this precision (perfmodel.model.precision.Precision)."""
    quantized = bool(linear.quantizable and precision.quant_kernel)
    base = precision.kernel_facts
    forced = None if base is not None else (precision.quant_kernel or "")
    facts = (base or KernelFacts()).for_layer(parallel=linear.parallel, tp=tp, num_experts=max(1, linear.num_experts),
                                              quantized=quantized)
    return facts, forced


# Attention on an fp8 KV cache is no linear layer's family, but has its own coefficient, fitted like theirs
FP8_KV_FITTED = ("fp8_kv_attention_compute_efficiency", "fp8_kv_attention_memory_efficiency")


def kv_cache_coefficients(precision: Any) -> tuple[str, ...]:
    """The own coefficients of the KV cache's dtype (``FP8_KV_FITTED`` for an fp8 cache)."""
    return FP8_KV_FITTED if str(precision.kv_cache_dtype).startswith("fp8") else ()


def family_name(family: KernelFamily) -> str:
    return family.label or f"the {family.name} kernel"
