"""What a checkpoint says beyond its shape: how it was quantized, and where the local HF cache keeps it.

:func:`parse_quantization_config` reads the ``quantization_config`` block of a ``config.json`` (or, when
that is absent, compressed-tensors' ``compression_config``), as vLLM 0.7.0 does in
``vllm/config.py ModelConfig._parse_quant_hf_config``. It only describes the checkpoint; which vLLM
method and kernel run it on a given GPU is decided in :mod:`perfmodel.model.precision`.

:func:`find_in_hf_cache` finds ``config.json`` of a Hugging Face repo id in the local hub cache, offline,
with the layout ``huggingface_hub`` writes::

    <cache>/models--<org>--<name>/refs/main            (a revision hash)
    <cache>/models--<org>--<name>/snapshots/<rev>/config.json

``<cache>`` is ``$HF_HUB_CACHE`` (legacy ``$HUGGINGFACE_HUB_CACHE``), else ``$HF_HOME/hub``, else
``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub`` (huggingface_hub's constants).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from perfmodel.errors import UserError

# quant_method values this project models; vLLM knows more (bitsandbytes, gguf, aqlm, ...).
SUPPORTED_QUANT_METHODS = ("gptq", "awq", "fp8", "fbgemm_fp8", "compressed-tensors")
# compressed-tensors formats whose activations are quantized too (vLLM 0.7.0
# compressed_tensors/utils.py is_activation_quantization_format).
_ACTIVATION_FORMATS = ("naive-quantized", "int-quantized", "float-quantized")


@dataclass(frozen=True, kw_only=True)
class CheckpointQuantization:
    """A checkpoint's quantization, as its ``config.json`` states it.

    ``method`` is ``quant_method`` lower-cased. ``weight_bits`` is 4 or 8; ``group_size`` is the number of
    input weights sharing one scale (-1 = one scale per output channel, None = per tensor or not stated).
    ``desc_act`` (GPTQ act-order, compressed-tensors ``actorder: group``), ``sym`` (GPTQ) and ``zero_point``
    (AWQ) are None when the config omits them, which matters: vLLM only converts a checkpoint to a Marlin
    kernel when every key it checks is present. ``scheme`` names the compressed-tensors scheme vLLM 0.7.0
    would build (``W4A16``, ``W8A16``, ``FP8_W8A8``, ``FP8_W8A16``, ``INT8_W8A8``); for ``fp8`` /
    ``fbgemm_fp8`` checkpoints it is ``FP8_W8A8`` (weights fp8, activations quantized at run time).
    """

    method: str
    weight_bits: int
    group_size: int | None = None
    desc_act: bool | None = None
    sym: bool | None = None
    zero_point: bool | None = None
    scheme: str | None = None
    checkpoint_format: str | None = None

    @property
    def has_zero_points(self) -> bool:
        """Whether per-group zero points are stored: always for GPTQ (``qzeros``, even when symmetric),
        for AWQ when ``zero_point``; never for compressed-tensors' symmetric WNA16."""
        return self.method == "gptq" or (self.method == "awq" and bool(self.zero_point))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool_or_none(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _first_linear_group(config: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    """The compressed-tensors config group that targets ``Linear`` layers (else the first group)."""
    groups = config.get("config_groups")
    if not isinstance(groups, Mapping) or not groups:
        raise UserError(f"{source}: compressed-tensors quantization_config has no config_groups")
    ordered = [g for g in groups.values() if isinstance(g, Mapping)]
    for group in ordered:
        if "Linear" in (group.get("targets") or ()):
            return group
    return ordered[0]


def _compressed_tensors(config: Mapping[str, Any], source: str) -> CheckpointQuantization:
    """The scheme vLLM 0.7.0 ``CompressedTensorsConfig._get_scheme_from_parts`` picks for Linear layers."""
    group = _first_linear_group(config, source)
    weights = group.get("weights") or {}
    fmt = str(config.get("format") or "")
    inputs = group.get("input_activations") if fmt in _ACTIVATION_FORMATS else None
    bits = _int_or_none(weights.get("num_bits"))
    strategy = weights.get("strategy")
    symmetric = weights.get("symmetric", True)
    static = not weights.get("dynamic", False)
    is_float = weights.get("type") == "float"
    group_size = -1 if strategy == "channel" else _int_or_none(weights.get("group_size"))
    desc_act = weights.get("actorder") == "group"
    scheme = None
    if (not inputs and not is_float and symmetric and static and strategy in ("channel", "group")
            and fmt == "pack-quantized" and bits in (4, 8)):
        scheme = f"W{bits}A16"
    elif fmt in _ACTIVATION_FORMATS and bits == 8 and symmetric and static and strategy in ("tensor", "channel"):
        if is_float:
            scheme = "FP8_W8A8" if inputs and inputs.get("type") == "float" else "FP8_W8A16"
        elif inputs and inputs.get("num_bits") == 8 and inputs.get("strategy") in ("tensor", "token"):
            scheme = "INT8_W8A8"
    if scheme is None or bits is None:
        raise UserError(f"{source}: compressed-tensors scheme (format {fmt or '?'}, weights {bits}-bit "
                        f"{strategy}) is not one perfmodel models; supported: W4A16, W8A16 (pack-quantized), "
                        "FP8 W8A8/W8A16, INT8 W8A8")
    return CheckpointQuantization(method="compressed-tensors", weight_bits=bits, group_size=group_size,
                                  desc_act=desc_act, sym=bool(symmetric), scheme=scheme, checkpoint_format=fmt)


def parse_quantization_config(config: Mapping[str, Any], source: str) -> CheckpointQuantization | None:
    """The quantization a ``config.json`` declares, or None for an unquantized checkpoint.

    Reads ``quantization_config``, else ``compression_config`` (vLLM 0.7.0
    ``ModelConfig._parse_quant_hf_config``); the keys per method are those the method's vLLM config
    class reads in ``from_config`` and ``override_quantization_method`` (gptq.py, gptq_marlin.py, awq.py,
    awq_marlin.py, fp8.py, fbgemm_fp8.py, compressed_tensors/compressed_tensors.py).
    """
    quant = config.get("quantization_config") or config.get("compression_config")
    if quant is None:
        return None
    if not isinstance(quant, Mapping):
        raise UserError(f"{source}: quantization_config must be a JSON object")
    method = str(quant.get("quant_method") or "").lower()
    if method == "gptq":
        if quant.get("checkpoint_format") in ("marlin", "marlin_24") or quant.get("is_marlin_format"):
            raise UserError(f"{source}: GPTQ checkpoints serialized in Marlin format are not modelled; "
                            "use a plain GPTQ checkpoint (vLLM converts it to Marlin itself)")
        _require_keys(quant, ("bits", "group_size", "desc_act"), "GPTQ", source)  # GPTQConfig.from_config
        bits = _int_or_none(quant.get("bits"))
        if bits not in (2, 3, 4, 8):
            raise UserError(f"{source}: GPTQ quantization_config needs 'bits' of 2, 3, 4 or 8, got {bits!r}")
        return CheckpointQuantization(method="gptq", weight_bits=bits,
                                      group_size=_int_or_none(quant.get("group_size")),
                                      desc_act=_bool_or_none(quant.get("desc_act")),
                                      sym=_bool_or_none(quant.get("sym")))
    if method == "awq":
        quant = {"bits": quant.get("w_bit"), "group_size": quant.get("q_group_size"), **quant}
        _require_keys(quant, ("bits", "group_size", "zero_point"), "AWQ", source)  # AWQConfig.from_config
        bits = _int_or_none(quant.get("bits"))
        if bits not in (4, 8):
            raise UserError(f"{source}: AWQ quantization_config needs 'bits' of 4 or 8, got {bits!r}")
        return CheckpointQuantization(method="awq", weight_bits=bits, group_size=_int_or_none(quant["group_size"]),
                                      zero_point=_bool_or_none(quant.get("zero_point")))
    if method in ("fp8", "fbgemm_fp8"):
        return CheckpointQuantization(method=method, weight_bits=8, scheme="FP8_W8A8")
    if method == "compressed-tensors":
        return _compressed_tensors(quant, source)
    raise UserError(f"{source}: quant_method '{method or '?'}' is not modelled; "
                    f"supported: {', '.join(SUPPORTED_QUANT_METHODS)}")


def _require_keys(quant: Mapping[str, Any], keys: tuple[str, ...], label: str, source: str) -> None:
    """The keys vLLM's config class reads with ``get_from_keys`` (it fails without them)."""
    missing = [key for key in keys if quant.get(key) is None]
    if missing:
        raise UserError(f"{source}: {label} quantization_config lacks {', '.join(missing)} (vLLM needs them)")


# ---- the local Hugging Face cache ----------------------------------------------------------


def hf_hub_cache_dir() -> Path:
    """The hub cache directory huggingface_hub uses, from the environment (see the module docstring)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _revision(ref: Path) -> str:
    """The commit hash ``refs/main`` names: hex (huggingface_hub writes a 40-hex sha), read bounded."""
    from perfmodel.errors import UserError

    try:
        with open(ref, "rb") as f:
            raw = f.read(256)
        text = raw.decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    if not re.fullmatch(r"[0-9A-Za-z._-]{1,128}", text) or text in (".", ".."):
        raise UserError(f"{ref}: not a revision (expected the commit hash huggingface_hub writes); "
                        "remove the file or re-download the model")
    return text


def find_in_hf_cache(repo_id: str) -> Path | None:
    """``config.json`` of ``org/name`` in the local hub cache, or None when it is not cached.

    The revision is the one ``refs/main`` names; without that file, the only snapshot that has a
    ``config.json`` (None when there are several: which one would be a guess).
    """
    parts = repo_id.strip().split("/")
    if len(parts) != 2 or not all(parts):
        return None
    repo_dir = hf_hub_cache_dir() / f"models--{parts[0]}--{parts[1]}"
    if not repo_dir.is_dir():
        return None
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        revision = _revision(ref)
        config = repo_dir / "snapshots" / revision / "config.json"
        return config if config.is_file() else None
    snapshots = sorted((repo_dir / "snapshots").glob("*/config.json"))
    return snapshots[0] if len(snapshots) == 1 else None
