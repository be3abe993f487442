"""Numeric precision of weights, activations and KV cache, from vLLM's flags.

:func:`resolve_precision` turns ``--dtype``, ``--quantization`` and ``--kv-cache-dtype`` into a
:class:`Precision`, following vLLM's own choices and refusing what the GPU cannot run.

What a GPU supports is read from its ``peak_flops_per_s`` keys (a missing key = unsupported)
and, when given, its ``compute_capability``. With only a mapping of peaks the compute
capability is inferred conservatively: an ``fp8`` peak means >= 8.9 (Ada/Hopper), a
``bfloat16`` peak means >= 8.0 (Ampere), neither means 7.0 (Volta).

Sources for the rules (vLLM documentation and source, 2024-2025):
- ``dtype=auto``: the config's ``torch_dtype``; float32 checkpoints are downcast to the GPU's
  preferred half type (bfloat16 from compute capability 8.0, else float16); bfloat16 on a GPU
  without it falls back to float16 with a warning. Gemma-2 refuses float16 (numerical
  instability), so on a GPU without bfloat16 it runs in float32.
- FP8 weights: W8A8 on compute capability >= 8.9; weight-only W8A16 through the FP8 Marlin
  kernel on >= 7.5 (Turing, Ampere). Not on Volta.
- FP8 KV cache: stored as fp8 and converted in the attention kernel. Allowed here from compute
  capability 8.0 (Ampere); refused on Volta, where vLLM's current attention backends offer no
  fp8 cache path (uncertain for old V0 releases, which had a software conversion).
- INT8 W8A8 (compressed-tensors): CUTLASS kernels need compute capability >= 7.5.
- AWQ needs >= 7.5; GPTQ's exllama kernel runs from 6.0; the Marlin variants need >= 8.0.
  The gptq and awq kernels take float16 activations only (a bfloat16 config with dtype=auto
  runs in float16 here, as the quantized checkpoints are saved in float16); Marlin takes both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from perfmodel.errors import UserError
from perfmodel.model import ModelShape

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
_INT4_METHODS = {"gptq": 6.0, "awq": 7.5, "gptq_marlin": 8.0, "awq_marlin": 8.0}
# The exllama GPTQ and the AWQ GEMM kernels accept float16 activations only (Marlin also bfloat16).
_FP16_ONLY_METHODS = ("gptq", "awq")
_FP8_KV = ("fp8", "fp8_e4m3", "fp8_e5m2")
QUANTIZATION_CHOICES = (*_INT4_METHODS, "fp8", "int8")
DTYPE_CHOICES = ("auto", "float16", "bfloat16", "half")  # --dtype values perfmodel models ("half" = float16)
KV_CACHE_DTYPE_CHOICES = ("auto", "fp8")
KV_CACHE_DTYPE_CHOICES = ("auto", *_FP8_KV)
# Parameters a quantized checkpoint leaves in the activation dtype.
UNQUANTIZED_PARAMS = ("embed_tokens", "lm_head", "norms", "biases", "router")


@dataclass(frozen=True, kw_only=True)
class Precision:
    """Dtypes and byte sizes of one engine configuration.

    ``gemm_flops_dtype`` is the ``peak_flops_per_s`` key the linear layers run at: the
    activation dtype for unquantized and weight-only (int4, fp8 Marlin) models, whose weights
    are dequantized on the fly; ``"fp8"`` or ``"int8"`` for W8A8. Embeddings, LM head, norms,
    biases and the MoE router stay in ``activation_dtype`` (``unquantized_params``).
    """

    weight_dtype: str  # "float16" | "bfloat16" | "float32" | "fp8" | "int8" | "int4"
    weight_bytes_per_param: float  # bytes per quantizable (linear) weight, scales included
    activation_dtype: str  # "float16" | "bfloat16" | "float32"
    activation_bytes: int
    kv_cache_dtype: str  # "float16" | "bfloat16" | "float32" | "fp8" | "fp8_e4m3" | "fp8_e5m2"
    kv_bytes_per_element: int
    gemm_flops_dtype: str
    quantization: str | None = None
    unquantized_params: tuple[str, ...] = UNQUANTIZED_PARAMS
    notes: tuple[str, ...] = ()  # what vLLM would warn about (fallbacks, slow kernels)

    def __post_init__(self) -> None:
        if self.weight_bytes_per_param <= 0 or self.activation_bytes <= 0 or self.kv_bytes_per_element <= 0:
            raise ValueError("Precision byte sizes must be positive")


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


def resolve_precision(
    model: ModelShape,
    gpu: Any,
    dtype: str = "auto",
    quantization: str | None = None,
    kv_cache_dtype: str = "auto",
    *,
    gpu_name: str | None = None,
) -> Precision:
    """Resolve vLLM's ``--dtype``, ``--quantization`` and ``--kv-cache-dtype`` for a GPU.

    ``gpu`` is a ``hardware.spec.GpuSpec`` or a plain mapping of ``peak_flops_per_s``
    (dtype -> FLOP/s; a missing key = unsupported); ``gpu_name`` overrides the name used in
    messages. Raises :class:`UserError` for combinations the GPU or vLLM cannot run.
    """
    peaks, name, cc = _gpu_facts(gpu, gpu_name)
    activation, notes = _activation_dtype(model, str(dtype).lower(), peaks, name)
    activation_bytes = _DTYPE_BYTES[activation]

    method = quantization.lower() if quantization else None
    if method is None:
        weight_dtype, bytes_per_param, gemm = activation, float(activation_bytes), activation
    elif method in _INT4_METHODS:
        if cc < _INT4_METHODS[method]:
            raise UserError(f"{name} (compute capability {cc:.1f}) cannot run --quantization {method}; "
                            f"it needs {_INT4_METHODS[method]:.1f} or newer (gptq runs from 6.0)")
        if method in _FP16_ONLY_METHODS and activation != "float16":
            if str(dtype).lower() != "auto" or model.architecture == "Gemma2ForCausalLM":
                raise UserError(f"--quantization {method} runs only with float16 activations, not "
                                f"{activation} for {model.name}; use --quantization {method}_marlin")
            notes.append(f"--quantization {method} kernels take float16: activations run in float16")
            activation, activation_bytes = "float16", 2
        if activation == "float32":
            raise UserError(f"--quantization {method} needs float16 or bfloat16 activations, not float32")
        weight_dtype, bytes_per_param, gemm = "int4", INT4_BYTES_PER_PARAM, activation
    elif method == "fp8":
        weight_dtype, bytes_per_param = "fp8", INT8_BYTES_PER_PARAM
        if "fp8" in peaks:
            gemm = "fp8"
        elif cc >= 7.5:
            gemm = activation
            notes.append(f"{name} has no fp8 tensor cores: fp8 weights run weight-only (W8A16, Marlin)")
        else:
            raise UserError(f"{name} does not support fp8 (W8A8 needs compute capability 8.9, "
                            "weight-only fp8 7.5); use --quantization gptq or no quantization")
    elif method == "int8":
        if cc < 7.5 or "int8" not in peaks:
            raise UserError(f"{name} cannot run int8 W8A8 (needs int8 tensor cores, compute capability "
                            "7.5 or newer); use --quantization gptq or no quantization")
        weight_dtype, bytes_per_param, gemm = "int8", INT8_BYTES_PER_PARAM, "int8"
    else:
        raise UserError(f"unknown --quantization '{quantization}'; choose one of "
                        f"{', '.join(QUANTIZATION_CHOICES)}")

    kv = str(kv_cache_dtype).lower()
    if kv == "auto":
        kv_dtype, kv_bytes = activation, activation_bytes
    elif kv in _FP8_KV:
        if cc < 8.0:
            raise UserError(f"{name} does not support an fp8 KV cache; use --kv-cache-dtype auto")
        kv_dtype, kv_bytes = kv, 1
        if "fp8" not in peaks:
            notes.append(f"fp8 KV cache on {name} is storage only: converted to {activation} for attention")
    else:
        raise UserError(f"unknown --kv-cache-dtype '{kv_cache_dtype}'; choose one of "
                        f"{', '.join(KV_CACHE_DTYPE_CHOICES)}")

    return Precision(
        weight_dtype=weight_dtype,
        weight_bytes_per_param=bytes_per_param,
        activation_dtype=activation,
        activation_bytes=activation_bytes,
        kv_cache_dtype=kv_dtype,
        kv_bytes_per_element=kv_bytes,
        gemm_flops_dtype=gemm,
        quantization=method,
        notes=tuple(notes),
    )
