"""Numeric precision of weights, activations and KV cache, from vLLM's flags and the checkpoint.

:func:`resolve_precision` turns ``--dtype``, ``--quantization`` and ``--kv-cache-dtype``, together with the
checkpoint's own ``quantization_config`` (``ModelShape.checkpoint_quantization``), into a
:class:`Precision`, following vLLM's own choices and refusing what the GPU cannot run. It also records the
*kernel* that runs the quantized GEMMs (``Precision.quant_kernel``), so the cost model can use that kernel
family's coefficients.

What a GPU supports is read from its ``peak_flops_per_s`` keys (a missing key = unsupported)
and, when given, its ``compute_capability``. With only a mapping of peaks the compute
capability is inferred conservatively: an ``fp8`` peak means >= 8.9 (Ada/Hopper), a
``bfloat16`` peak means >= 8.0 (Ampere), neither means 7.0 (Volta).

Activation dtype (vLLM documentation and source, 2024-2025):
- ``dtype=auto``: the config's ``torch_dtype``; float32 checkpoints are downcast to the GPU's
  preferred half type (bfloat16 from compute capability 8.0, else float16); bfloat16 on a GPU
  without it falls back to float16 with a warning. Gemma-2 refuses float16 (numerical
  instability), so on a GPU without bfloat16 it runs in float32.
- FP8 KV cache: stored as fp8 and converted in the attention kernel. Allowed here from compute
  capability 8.0 (Ampere); refused on Volta, where vLLM's current attention backends offer no
  fp8 cache path (uncertain for old V0 releases, which had a software conversion).

Quantization follows vLLM 0.7.0 (``vllm/config.py`` ``ModelConfig._verify_quantization`` and
``VllmConfig._get_quantization_config``; ``vllm/model_executor/layers/quantization/``), with the later releases'
changes where ``vllm_version`` names one (perfmodel.cost.kernels ``*_FROM``; docs/kernels.md "Kernel choice by
release"): Marlin from compute capability 7.5 (0.14.0), and from 0.22.0 / 0.24.0 every GPTQ / AWQ spelling is
vLLM's AutoGPTQ / AutoAWQ method (``auto_gptq`` / ``auto_awq``), whose kernel is chosen per layer, so an explicit
``gptq`` / ``awq`` no longer forces the older kernel; AutoGPTQ takes 4/8-bit symmetric weights only and verifies
Marlin for every layer (compute capability 7.5, Marlin's group sizes), so GPTQ below 7.5 needs a release before
0.22; AutoAWQ takes 4-bit weights, on Marlin/Machete with zero points and a Marlin group size, else on
``awq_gemm`` (bfloat16 allowed). In 0.7.0:
- A checkpoint with a ``quantization_config`` is quantized without any flag. A GPTQ checkpoint runs as
  ``gptq_marlin`` and an AWQ one as ``awq_marlin`` when Marlin can take it (compute capability >= 8.0,
  bits/sym/group size Marlin supports, every key present: ``GPTQMarlinConfig.is_gptq_marlin_compatible``,
  ``AWQMarlinConfig.is_awq_marlin_compatible``) and ``--quantization`` is absent, ``marlin`` or the
  Marlin name; an explicit ``gptq`` / ``awq`` forces the older kernel (``override_quantization_method``).
  Any other ``--quantization`` that differs from the checkpoint's method is an error, as in vLLM.
- ``--quantization`` on an unquantized checkpoint: ``fp8`` is vLLM's own on-the-fly fp8 quantization;
  ``gptq``/``awq`` (and their Marlin names) and ``int8`` are what-ifs here, "as if a 4-bit group-128
  GPTQ/AWQ (or an int8 W8A8) checkpoint of this model were loaded". ``compressed-tensors`` and
  ``fbgemm_fp8`` need a checkpoint that says so.
- Minimum compute capability per method (``get_min_capability``): gptq 6.0 (exllama kernel: the one
  that runs on V100), awq 7.5, gptq_marlin / awq_marlin / fp8 / fbgemm_fp8 8.0, compressed-tensors
  per scheme (W4A16/W8A16 8.0, FP8 8.0, INT8 W8A8 7.5). ``gptq`` and ``awq`` take float16 activations
  only (``get_supported_act_dtypes``); a checkpoint saved in bfloat16 there is an error, as in vLLM.
- Kernel (perfmodel.cost.kernels' table, docs/kernels.md): ``gptq_marlin`` and compressed-tensors WNA16 pick the
  first of Machete (cc >= 9.0, group size -1 or 128, act-order only where TP leaves the input whole), Marlin
  (cc >= 8.0) (``kernels/mixed_precision/__init__.py choose_mp_linear_kernel``). FP8 runs W8A8 on CUTLASS from cc 8.9, else weight-only through FP8 Marlin
  (``Fp8LinearMethod.use_marlin``; compressed-tensors falls back from W8A8 to W8A16 the same way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from perfmodel.cost import kernels
from perfmodel.model.checkpoint import CheckpointQuantization
from perfmodel.engine.releases import parse_release, release_text
from perfmodel.errors import UserError
from perfmodel.model.shape import ModelShape

# int4 weight-only with group size 128 (GPTQ and AWQ layouts): per weight 4 bits, plus per
# group of 128 weights one fp16 scale (16 bits) and one packed 4-bit zero point:
# (4 + (16 + 4) / 128) / 8 = 0.51953125 bytes per parameter.
INT4_GROUP_SIZE = 128
INT4_BYTES_PER_PARAM = (4 + (16 + 4) / INT4_GROUP_SIZE) / 8
# fp8 and int8 store 1 byte per weight; their per-channel or per-tensor scales are negligible.
INT8_BYTES_PER_PARAM = 1.0

_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
_DTYPE_ALIASES = {"half": "float16", "float16": "float16", "bfloat16": "bfloat16",
                  "float": "float32", "float32": "float32"}
_FP8_KV = ("fp8", "fp8_e4m3", "fp8_e5m2")
# vLLM's spellings (QUANTIZATION_METHODS; auto_* from 0.22.0 / 0.24.0) that perfmodel models, plus its what-if "int8".
QUANTIZATION_CHOICES = ("gptq", "gptq_marlin", "marlin", "awq", "awq_marlin", "fp8", "fbgemm_fp8",
                        "compressed-tensors", "int8", "auto_gptq", "auto_awq")
# vLLM's AutoGPTQ / AutoAWQ methods (perfmodel.cost.kernels AUTO_GPTQ_FROM, AUTO_AWQ_FROM): the names each takes
# (AutoGPTQConfig / AutoAWQConfig.override_quantization_method, vLLM 0.26)
_AUTO = {"auto_gptq": ("gptq", ("gptq", "gptq_marlin", "auto_gptq", "marlin"), kernels.AUTO_GPTQ_FROM),
         "auto_awq": ("awq", ("awq", "awq_marlin", "auto_awq", "marlin"), kernels.AUTO_AWQ_FROM)}
DTYPE_CHOICES = ("auto", "half", "float16", "bfloat16", "float", "float32")  # vLLM's --dtype spellings
KV_CACHE_DTYPE_CHOICES = ("auto", *_FP8_KV)
# Parameters a quantized checkpoint leaves in the activation dtype.
UNQUANTIZED_PARAMS = ("embed_tokens", "lm_head", "norms", "biases", "router")

# The kernels that run quantized linear layers (perfmodel.cost.kernels' table).
QUANT_KERNELS: dict[str, str] = kernels.QUANT_KERNELS
_MARLIN_GROUP_SIZES = kernels.MARLIN_GROUP_SIZES
_FP16_ONLY_METHODS = ("gptq", "awq")  # get_supported_act_dtypes: float16 only (AutoGPTQ/AutoAWQ take bfloat16)
# get_min_capability of each method's config class (compressed-tensors: of its scheme, see _min_capability).
_MIN_CAPABILITY = {"gptq": 6.0, "awq": 7.5, "fp8": 8.0,  # gptq_marlin / awq_marlin: kernels.marlin_min_cc
                   "fbgemm_fp8": 8.0, "int8": 7.5, "auto_gptq": 6.0, "auto_awq": 7.5}
# What -q means on an unquantized checkpoint (see the module docstring).
_GPTQ_WHAT_IF = CheckpointQuantization(method="gptq", weight_bits=4, group_size=INT4_GROUP_SIZE,
                                       desc_act=False, sym=True)
_AWQ_WHAT_IF = CheckpointQuantization(method="awq", weight_bits=4, group_size=INT4_GROUP_SIZE, zero_point=True)
_WHAT_IF = {"gptq": _GPTQ_WHAT_IF, "gptq_marlin": _GPTQ_WHAT_IF, "marlin": _GPTQ_WHAT_IF,
            "awq": _AWQ_WHAT_IF, "awq_marlin": _AWQ_WHAT_IF,
            "auto_gptq": _GPTQ_WHAT_IF, "auto_awq": _AWQ_WHAT_IF,
            "fp8": CheckpointQuantization(method="fp8", weight_bits=8, scheme="FP8_W8A8"),
            "int8": CheckpointQuantization(method="int8", weight_bits=8, scheme="INT8_W8A8")}


@dataclass(frozen=True, kw_only=True)
class Precision:
    """Dtypes and byte sizes of one engine configuration.

    ``gemm_flops_dtype`` is the ``peak_flops_per_s`` key the linear layers run at: the
    activation dtype for unquantized and weight-only (int4, fp8 Marlin) models, whose weights
    are dequantized on the fly; ``"fp8"`` or ``"int8"`` for W8A8. Embeddings, LM head, norms,
    biases and the MoE router stay in ``activation_dtype`` (``unquantized_params``).
    ``quantization`` is the vLLM method that runs (``gptq_marlin`` for a GPTQ checkpoint on an A100),
    ``quant_kernel`` the kernel (a key of :data:`QUANT_KERNELS`), ``group_size`` the weights per scale
    (-1 per channel), ``quant_source`` ``"checkpoint"`` or ``"flag"``; all None when unquantized.
    """

    weight_dtype: str  # "float16" | "bfloat16" | "float32" | "fp8" | "int8" | "int4"
    weight_bytes_per_param: float  # bytes per quantizable (linear) weight, scales included
    activation_dtype: str  # "float16" | "bfloat16" | "float32"
    activation_bytes: int
    kv_cache_dtype: str  # "float16" | "bfloat16" | "float32" | "fp8" | "fp8_e4m3" | "fp8_e5m2"
    kv_bytes_per_element: int
    gemm_flops_dtype: str
    quantization: str | None = None
    quant_kernel: str | None = None
    group_size: int | None = None
    quant_source: str | None = None
    unquantized_params: tuple[str, ...] = UNQUANTIZED_PARAMS
    notes: tuple[str, ...] = ()  # what vLLM would warn about (fallbacks, slow kernels)
    # what the kernel choice of each layer depends on (perfmodel.cost.kernels.layer_families); None when quantized is
    # None or the Precision was built by hand (then quant_kernel alone names the family)
    kernel_facts: kernels.KernelFacts | None = field(default=None, compare=False, repr=False,
                                                     metadata={"report": False})

    def __post_init__(self) -> None:
        if self.weight_bytes_per_param <= 0 or self.activation_bytes <= 0 or self.kv_bytes_per_element <= 0:
            raise ValueError("Precision byte sizes must be positive")
        if self.quant_kernel is not None and self.quant_kernel not in QUANT_KERNELS:
            raise ValueError(f"unknown quant_kernel {self.quant_kernel!r}")


def weight_bytes(model: ModelShape, precision: Precision) -> float:
    """Total weight bytes: quantizable linear weights × ``weight_bytes_per_param`` + every other
    parameter (embeddings, LM head, norms, biases, router) × ``activation_bytes``."""
    quantized = model.num_quantizable_params()
    rest = model.num_params() - quantized
    return quantized * precision.weight_bytes_per_param + rest * precision.activation_bytes


def _gpu_facts(gpu: Any, gpu_name: str | None) -> tuple[Mapping[str, float], str, float]:
    """(peaks, display name, compute capability) from a GpuSpec-like object or a mapping."""
    peaks = getattr(gpu, "peak_flops_per_s", gpu)
    if not isinstance(peaks, Mapping):
        raise TypeError("gpu must be a GpuSpec or a mapping of peak_flops_per_s")
    name = gpu_name or getattr(gpu, "display_name", None) or getattr(gpu, "name", None) or "this GPU"
    capability = getattr(gpu, "compute_capability", None)
    if capability is not None:
        cc = float(capability)
    elif "fp8" in peaks:
        cc = 8.9
    elif "bfloat16" in peaks:
        cc = 8.0
    else:
        cc = 7.0
    return peaks, name, cc


def _activation_dtype(model: ModelShape, dtype: str, peaks: Mapping[str, float],
                      gpu_name: str) -> tuple[str, list[str]]:
    """Resolve ``--dtype`` as vLLM does; returns the dtype and notes."""
    is_gemma2 = model.architecture == "Gemma2ForCausalLM"
    has_bf16 = "bfloat16" in peaks
    if dtype != "auto":
        if dtype not in _DTYPE_ALIASES:
            raise UserError(f"unknown --dtype '{dtype}'; choose auto, float16, bfloat16 or float32")
        chosen = _DTYPE_ALIASES[dtype]
        if chosen == "bfloat16" and not has_bf16:
            raise UserError(f"{gpu_name} does not support bfloat16; use --dtype float16")
        if chosen == "float16" and is_gemma2:
            raise UserError(f"{model.name}: vLLM refuses float16 for Gemma-2 (numerical instability); "
                            "use --dtype bfloat16, or float32 on a GPU without bfloat16")
        return chosen, []
    supported = [d for d in ("bfloat16", "float16", "float32")
                 if (d != "bfloat16" or has_bf16) and not (d == "float16" and is_gemma2)]
    preferred = supported[0]
    config_dtype = _DTYPE_ALIASES.get(model.torch_dtype, "float32")
    if config_dtype == "float32":
        if preferred != "float32":
            return preferred, [f"float32 checkpoint downcast to {preferred}"]
        return "float32", []
    if config_dtype in supported:
        return config_dtype, []
    return preferred, [f"{gpu_name} does not support {config_dtype}; vLLM falls back to {preferred}"]


# ---- quantization: method (vLLM's rules), kernel, bytes -------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Quant:
    """The quantization decision for one GPU: vLLM method, checkpoint facts, kernel, W8A8 GEMM dtype."""

    method: str
    checkpoint: CheckpointQuantization
    source: str  # "checkpoint" | "flag"
    kernel: str = ""
    w8a8_dtype: str | None = None  # "fp8" | "int8" when activations are quantized too


def _auto_method(checkpoint_method: str, user: str | None, release: tuple[int, int, int]) -> str | None:
    """From ``AUTO_GPTQ_FROM`` / ``AUTO_AWQ_FROM``: AutoGPTQ / AutoAWQ take a GPTQ / AWQ checkpoint with no flag or
    any of their names (``override_quantization_method``, no compatibility check: the kernel is chosen per layer),
    or None."""
    for auto, (method, names, since) in _AUTO.items():
        if release >= since and checkpoint_method == method and (user is None or user in names):
            return auto
    return None


def _marlin_override(q: CheckpointQuantization, user: str | None, cc: float,
                     release: tuple[int, int, int]) -> str | None:
    """The method a GPTQ/AWQ checkpoint is converted to, or None: AutoGPTQ/AutoAWQ in the releases that have them,
    else vLLM 0.7.0's ``GPTQMarlinConfig`` / ``AWQMarlinConfig.override_quantization_method`` (Marlin from
    compute capability 8.0, 7.5 from vLLM 0.14.0)."""
    auto = _auto_method(q.method, user, release)
    if auto is not None:
        return auto
    if cc < kernels.marlin_min_cc(release) or q.group_size not in _MARLIN_GROUP_SIZES:
        return None
    if (q.method == "gptq" and user in (None, "marlin", "gptq_marlin") and q.sym is True
            and q.desc_act is not None and q.weight_bits in (4, 8)):
        return "gptq_marlin"
    if q.method == "awq" and user in (None, "marlin", "awq_marlin") and q.zero_point is True and q.weight_bits in (4, 8):
        return "awq_marlin"
    return None


def _choose_method(model: ModelShape, user: str | None, cc: float, name: str,
                   release: tuple[int, int, int]) -> _Quant | None:
    """Which vLLM quantization method runs, as ``ModelConfig._verify_quantization`` decides it."""
    q = model.checkpoint_quantization
    if user is not None and user not in QUANTIZATION_CHOICES:
        raise UserError(f"unknown --quantization '{user}'; choose one of {', '.join(QUANTIZATION_CHOICES)}")
    if user in _AUTO and release < _AUTO[user][2]:
        since = release_text(_AUTO[user][2])
        raise UserError(f"--quantization {user} is a vLLM {since} method; vLLM {release_text(release)} has none: use "
                        f"{_AUTO[user][0]} or {_AUTO[user][0]}_marlin, or --vllm-version {since} or later")
    if q is None:
        if user is None:
            return None
        if user not in _WHAT_IF:
            raise UserError(f"--quantization {user} needs a checkpoint whose config.json has a matching "
                            f"quantization_config; {model.name} has none (use gptq, awq, fp8 or int8)")
        what_if = _WHAT_IF[user]
        method = _auto_method(what_if.method, user, release) or ("gptq_marlin" if user == "marlin" else user)
        return _Quant(method=method, checkpoint=what_if, source="flag")
    override = _marlin_override(q, user, cc, release)
    if override is not None:
        return _Quant(method=override, checkpoint=q, source="checkpoint")
    if user is None or user == q.method:
        return _Quant(method=q.method, checkpoint=q, source="checkpoint")
    need = kernels.marlin_min_cc(release)
    why = (f"; Marlin needs compute capability {need:.1f} and {name} has {cc:.1f}"
           if user in ("marlin", "gptq_marlin", "awq_marlin") and cc < need else "")
    raise UserError(f"{model.name} is a {q.method} checkpoint but --quantization {user} was given (vLLM "
                    f"{release_text(release)} refuses the mismatch{why}); drop --quantization or use {q.method}")


def _check_auto(quant: _Quant, cc: float, name: str, release: tuple[int, int, int]) -> None:
    """What AutoGPTQ / AutoAWQ refuse at load time (vLLM 0.26 auto_gptq.py AutoGPTQConfig.__init__ TYPE_MAP,
    AutoGPTQLinearMethod.__init__ verify_marlin_supported; auto_awq.py AutoAWQConfig TYPE_MAP)."""
    q, v = quant.checkpoint, release_text(release)
    weights = "this checkpoint is" if quant.source == "checkpoint" else "the weights are"
    older = "use --vllm-version 0.21 or earlier, whose gptq method runs the exllama kernel"
    if quant.method == "auto_gptq":
        if (q.weight_bits, q.sym) not in ((4, True), (8, True)):
            kind = "symmetric" if q.sym else "asymmetric"
            raise UserError(f"vLLM {v}'s AutoGPTQ takes 4- or 8-bit symmetric GPTQ only; {weights} "
                            f"{q.weight_bits}-bit {kind}: {older}")
        need = kernels.marlin_min_cc(release)
        if cc < need:
            raise UserError(f"vLLM {v}'s AutoGPTQ needs Marlin for every layer, which needs compute capability "
                            f"{need:.1f}; {name} has {cc:.1f}: {older}")
        if q.group_size not in _MARLIN_GROUP_SIZES:
            raise UserError(f"vLLM {v}'s AutoGPTQ needs Marlin for every layer, which takes group sizes "
                            f"{', '.join(map(str, _MARLIN_GROUP_SIZES))}; {weights} of group size {q.group_size}: "
                            f"{older}")
    elif quant.method == "auto_awq" and q.weight_bits != 4:
        raise UserError(f"vLLM {v}'s AutoAWQ takes 4-bit AWQ only; {weights} {q.weight_bits}-bit")


def _min_capability(quant: _Quant, release: tuple[int, int, int]) -> float:
    """``get_min_capability`` of the method (compressed-tensors: of its scheme; FP8 W8A8 falls back to W8A16)."""
    if quant.method in ("gptq_marlin", "awq_marlin"):
        return kernels.marlin_min_cc(release)
    if quant.method != "compressed-tensors":
        return _MIN_CAPABILITY[quant.method]
    return 7.5 if quant.checkpoint.scheme == "INT8_W8A8" else 8.0


def _kernel_facts(quant: _Quant, cc: float, release: tuple[int, int, int]) -> kernels.KernelFacts:
    q = quant.checkpoint
    # act-order with one group per column is no act-order (GPTQMarlinConfig / AutoGPTQConfig.__init__ clear it)
    desc_act = False if q.group_size == -1 and quant.method in ("gptq_marlin", "auto_gptq") else q.desc_act
    return kernels.KernelFacts(method=quant.method, scheme=q.scheme, cc=cc, weight_bits=q.weight_bits,
                               group_size=q.group_size, desc_act=desc_act, sym=q.sym,
                               zero_point=q.zero_point, release=release)


def _check_kernel(kernel: str, q: CheckpointQuantization, peaks: Mapping[str, float], cc: float, name: str,
                  notes: list[str]) -> None:
    """What vLLM refuses or warns about once the kernel is chosen (perfmodel.cost.kernels selects it)."""
    if kernel == "machete" and q.desc_act:
        notes.append("act-order (desc_act) weights: Machete runs the layers whose input TP leaves whole, Marlin "
                     "the row-parallel ones when TP > 1 (MacheteLinearKernel.can_implement)")
    elif kernel == "fp8_w8a8" and "fp8" not in peaks:
        raise UserError(f"{name}: compute capability {cc:.1f} runs fp8 W8A8 but its catalog entry has no "
                        "fp8 peak_flops_per_s; add it")
    elif kernel == "fp8_marlin" and q.scheme == "FP8_W8A8":
        notes.append(f"{name} has no fp8 tensor cores: fp8 weights run weight-only (W8A16, FP8 Marlin)")
    elif kernel == "int8_w8a8" and "int8" not in peaks:
        raise UserError(f"{name} cannot run int8 W8A8 (needs int8 tensor cores, compute capability "
                        "7.5 or newer); use --quantization gptq or no quantization")


def _pick_kernel(quant: _Quant, peaks: Mapping[str, float], cc: float, name: str,
                 notes: list[str], release: tuple[int, int, int]) -> _Quant:
    """The kernel of the chosen method (perfmodel.cost.kernels' table), after the capability check."""
    need = _min_capability(quant, release)
    label = quant.method if quant.method != "compressed-tensors" else f"compressed-tensors {quant.checkpoint.scheme}"
    if cc < need:
        if quant.checkpoint.scheme in ("FP8_W8A8", "FP8_W8A16"):
            raise UserError(f"{name} does not support fp8 (vLLM 0.7.0 needs compute capability 8.0: W8A8 "
                            "from 8.9, weight-only FP8 Marlin from 8.0); use --quantization gptq or none")
        exllama = " (GPTQ's exllama kernel runs from 6.0 before vLLM 0.22)" if "gptq" in label else ""
        raise UserError(f"{name} (compute capability {cc:.1f}) cannot run {label}; vLLM {release_text(release)} needs "
                        f"{need:.1f} or newer{exllama}")
    _check_auto(quant, cc, name, release)
    kernel = kernels.method_kernel(_kernel_facts(quant, cc, release))
    if not kernel:  # choose_mp_linear_kernel: "Failed to find a kernel that can implement ..."
        q = quant.checkpoint
        raise UserError(f"vLLM {release_text(release)} has no kernel for {label} weights of {q.weight_bits} "
                        f"bits, group size {q.group_size} on {name} (compute capability {cc:.1f}); use another "
                        "checkpoint or release")
    _check_kernel(kernel, quant.checkpoint, peaks, cc, name, notes)
    w8a8 = kernels.BY_NAME[kernel].w8a8_dtype if kernel else None
    return _Quant(method=quant.method, checkpoint=quant.checkpoint, source=quant.source, kernel=kernel,
                  w8a8_dtype=w8a8)


def _quantized_bytes_per_param(q: CheckpointQuantization, w8a8: bool) -> float:
    """Bytes per quantized weight: ``(bits + (16 + zero_bits) / group_size) / 8`` for grouped integer
    weights (one fp16 scale and, for GPTQ/AWQ, one packed zero point per group); ``bits / 8`` per
    channel or for fp8/int8 (their per-channel or per-tensor scales are negligible)."""
    if w8a8 or q.scheme in ("FP8_W8A8", "FP8_W8A16", "INT8_W8A8") or not q.group_size or q.group_size <= 0:
        return q.weight_bits / 8
    zero_bits = q.weight_bits if q.has_zero_points else 0
    return (q.weight_bits + (16 + zero_bits) / q.group_size) / 8


def _quant_activation(model: ModelShape, quant: _Quant, activation: str, dtype: str,
                      notes: list[str]) -> str:
    """The activation dtype the kernel accepts (``get_supported_act_dtypes``)."""
    if activation == "float32":
        raise UserError(f"--quantization {quant.method} needs float16 or bfloat16 activations, not float32")
    if quant.method not in _FP16_ONLY_METHODS or activation == "float16":
        return activation
    marlin = "gptq_marlin" if quant.method == "gptq" else "awq_marlin"
    if quant.source == "checkpoint" or dtype != "auto" or model.architecture == "Gemma2ForCausalLM":
        raise UserError(f"the {quant.method} kernel runs only with float16 activations, not {activation} for "
                        f"{model.name} (vLLM refuses it); use --dtype float16 or --quantization {marlin}")
    notes.append(f"--quantization {quant.method} kernels take float16: activations run in float16")
    return "float16"


def _kv_cache(kv_cache_dtype: str, activation: str, peaks: Mapping[str, float], cc: float, name: str,
              notes: list[str]) -> tuple[str, int]:
    kv = str(kv_cache_dtype).lower()
    if kv == "auto":
        return activation, _DTYPE_BYTES[activation]
    if kv not in _FP8_KV:
        raise UserError(f"unknown --kv-cache-dtype '{kv_cache_dtype}'; choose one of "
                        f"{', '.join(KV_CACHE_DTYPE_CHOICES)}")
    if cc < 8.0:
        raise UserError(f"{name} does not support an fp8 KV cache; use --kv-cache-dtype auto")
    if "fp8" not in peaks:
        notes.append(f"fp8 KV cache on {name} is storage only: converted to {activation} for attention")
    return kv, 1


def resolve_precision(
    model: ModelShape,
    gpu: Any,
    dtype: str = "auto",
    quantization: str | None = None,
    kv_cache_dtype: str = "auto",
    *,
    gpu_name: str | None = None,
    vllm_version: str | None = None,
) -> Precision:
    """Resolve vLLM's ``--dtype``, ``--quantization`` and ``--kv-cache-dtype`` for a GPU.

    ``gpu`` is a ``hardware.spec.GpuSpec`` or a plain mapping of ``peak_flops_per_s``
    (dtype -> FLOP/s; a missing key = unsupported); ``gpu_name`` overrides the name used in
    messages. The checkpoint's own quantization comes from ``model.checkpoint_quantization``;
    ``quantization`` only overrides it where vLLM allows (module docstring); ``vllm_version`` is the release whose
    kernel choice applies (default: perfmodel's, ``kernels.DEFAULT_RELEASE``). Raises :class:`UserError` for
    combinations the GPU or vLLM cannot run.
    """
    release = parse_release(vllm_version) if vllm_version else kernels.DEFAULT_RELEASE
    peaks, name, cc = _gpu_facts(gpu, gpu_name)
    dtype = str(dtype).lower()
    activation, notes = _activation_dtype(model, dtype, peaks, name)
    quant = _choose_method(model, quantization.lower() if quantization else None, cc, name, release)
    if quant is None:
        weight_dtype, bytes_per_param, gemm = activation, float(_DTYPE_BYTES[activation]), activation
    else:
        if quant.source == "checkpoint" and quant.method != model.checkpoint_quantization.method:
            notes.append(f"{model.checkpoint_quantization.method} checkpoint runs as {quant.method} "
                         "(vLLM converts it at load time)")
        quant = _pick_kernel(quant, peaks, cc, name, notes, release)
        activation = _quant_activation(model, quant, activation, dtype, notes)
        q = quant.checkpoint
        weight_dtype = "fp8" if q.scheme in ("FP8_W8A8", "FP8_W8A16") else f"int{q.weight_bits}"
        bytes_per_param = _quantized_bytes_per_param(q, quant.w8a8_dtype is not None)
        gemm = quant.w8a8_dtype or activation
    kv_dtype, kv_bytes = _kv_cache(kv_cache_dtype, activation, peaks, cc, name, notes)
    return Precision(
        weight_dtype=weight_dtype,
        weight_bytes_per_param=bytes_per_param,
        activation_dtype=activation,
        activation_bytes=_DTYPE_BYTES[activation],
        kv_cache_dtype=kv_dtype,
        kv_bytes_per_element=kv_bytes,
        gemm_flops_dtype=gemm,
        quantization=quant.method if quant else None,
        quant_kernel=quant.kernel if quant else None,
        group_size=quant.checkpoint.group_size if quant else None,
        quant_source=quant.source if quant else None,
        notes=tuple(notes),
        kernel_facts=_kernel_facts(quant, cc, release) if quant else None,
    )
