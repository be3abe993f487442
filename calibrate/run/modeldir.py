"""Turn a sweep's `model` (catalog name, HF id, folder, or path to a config.json) into what vLLM loads.

vLLM loads a folder holding `config.json`; with dummy weights nothing else is needed. A catalog entry or a
loose `*.json` file is copied into `<cache_dir>/<name>-<hash>/config.json` (written atomically; the same
config always lands in the same folder).

Quantized checkpoints with dummy weights: vLLM reads the quantization method and its layout from the
`quantization_config` of `config.json` (vLLM 0.26 vllm/config/model.py ModelConfig._verify_quantization, and each
method's `from_config`, e.g. vllm/model_executor/layers/quantization/auto_gptq.py AutoGPTQConfig.from_config).
`with_checkpoint_quantization` writes a copy of the folder's config with the config a real checkpoint of that
method carries (`CHECKPOINT_QUANT_CONFIGS`), so that `quantization: gptq_marlin` on a config-only model loads the
same int4 layout and kernels as a GPTQ-Int4 checkpoint.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfmodel.atomic import write_text_atomic
from perfmodel.errors import UserError


# The `quantization_config` a checkpoint of each method carries, as published quantized checkpoints write it:
# GPTQ and AWQ int4 with group size 128 (GPTQ symmetric without act-order, AWQ with zero points, GEMM layout);
# FP8 W8A8 with fp8 weights and per-tensor scales stored, activations quantized dynamically. vLLM 0.26 maps
# gptq/gptq_marlin -> auto_gptq and awq/awq_marlin -> auto_awq and picks the kernel itself (Marlin or Machete on
# Hopper). Other methods (e.g. vLLM's online "fp8_per_tensor") need no checkpoint config.
# GPTQ must name its quantized modules: without `modules_in_block_to_quantize` vLLM 0.26 reads them from the
# safetensors' dtypes (auto_gptq.py AutoGPTQConfig.maybe_update_config), finds none with dummy weights and leaves
# every layer in bf16 (seen on an H200, 2026-12-01: 15.0 GiB of weights for Llama-3.1-8B). The names are the
# decoder's linear layers of Llama/Qwen2/Mistral/Gemma-2, matched as substrings (utils/gptq_utils.py
# is_layer_gptq_quantized), as GPTQModel checkpoints write them.
_GPTQ_MODULES = [["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"], ["self_attn.o_proj"],
                 ["mlp.up_proj", "mlp.gate_proj"], ["mlp.down_proj"]]
_GPTQ_INT4 = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True,
              "lm_head": False, "damp_percent": 0.01, "static_groups": False, "true_sequential": True,
              "modules_in_block_to_quantize": _GPTQ_MODULES}
_AWQ_INT4 = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}
CHECKPOINT_QUANT_CONFIGS: dict[str, dict[str, Any]] = {
    "gptq": _GPTQ_INT4, "gptq_marlin": _GPTQ_INT4, "auto_gptq": _GPTQ_INT4,
    "awq": _AWQ_INT4, "awq_marlin": _AWQ_INT4, "auto_awq": _AWQ_INT4,
    "fp8": {"quant_method": "fp8", "activation_scheme": "dynamic"},
}


class ModelDirError(UserError, ValueError):
    """The model named in a sweep cannot be found: one line."""


@dataclass(frozen=True, kw_only=True)
class ResolvedModel:
    spec: str  # as written in the sweep
    path: str  # what vLLM gets as `model`: a local folder, or an HF id
    config: dict[str, Any] | None  # the HF config, when known locally
    config_hash: str | None  # sha256 (16 hex) of the canonical config JSON

    @property
    def vocab_size(self) -> int | None:
        if self.config is None:
            return None
        text = self.config.get("text_config") or {}
        return self.config.get("vocab_size") or text.get("vocab_size")


def config_hash(config: dict[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve_model(spec: str, *, base_dir: Path, cache_dir: Path) -> ResolvedModel:
    """Resolve `spec`; relative paths are taken relative to `base_dir` first, then the working directory."""
    for candidate in (base_dir / spec, Path(spec)):
        if candidate.is_dir():
            cfg_file = candidate / "config.json"
            if not cfg_file.is_file():
                raise ModelDirError(f"model '{spec}': folder {candidate} has no config.json")
            cfg = _read_config(cfg_file, spec)
            return ResolvedModel(spec=spec, path=str(candidate.resolve()), config=cfg, config_hash=config_hash(cfg))
        if candidate.is_file():
            cfg = _read_config(candidate, spec)
            if candidate.name == "config.json":
                path = candidate.resolve().parent
            else:
                path = materialize(cfg, candidate.stem, cache_dir)
            return ResolvedModel(spec=spec, path=str(path), config=cfg, config_hash=config_hash(cfg))
    catalog = _catalog_path(spec)
    if catalog is not None:
        cfg = _read_config(catalog, spec)
        path = materialize(cfg, spec, cache_dir)
        return ResolvedModel(spec=spec, path=str(path), config=cfg, config_hash=config_hash(cfg))
    if "/" in spec and not spec.startswith((".", "/")) and spec.count("/") == 1:
        return ResolvedModel(spec=spec, path=spec, config=None, config_hash=None)  # a Hugging Face id
    raise ModelDirError(f"model '{spec}': not a folder, a config.json, a catalog name or an HF id (org/name)")


def materialize(config: dict[str, Any], name: str, cache_dir: Path) -> Path:
    """Write `config` as `<cache_dir>/<name>-<hash>/config.json` (atomically) and return the folder."""
    folder = Path(cache_dir) / f"{Path(name).name}-{config_hash(config)}"
    target = folder / "config.json"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder.resolve()


def with_checkpoint_quantization(model_path: str, quantization: str | None) -> tuple[str, dict[str, Any] | None]:
    """(folder vLLM should load, the quantization_config it will read) for `quantization` on `model_path`.

    A folder whose config.json lacks a `quantization_config`, run with a method of `CHECKPOINT_QUANT_CONFIGS`, is
    copied (config only) to a sibling folder `<name>-<method>-<hash>` whose config.json carries that method's
    config; any other folder (or an HF id, or no quantization) is returned unchanged, with its own config if any.
    """
    cfg_file = Path(model_path) / "config.json"
    if not cfg_file.is_file():
        return model_path, None
    cfg = _read_config(cfg_file, model_path)
    if "quantization_config" in cfg or not quantization or quantization.lower() not in CHECKPOINT_QUANT_CONFIGS:
        return model_path, cfg.get("quantization_config")
    qcfg = dict(CHECKPOINT_QUANT_CONFIGS[quantization.lower()])
    folder = materialize({**cfg, "quantization_config": qcfg}, f"{Path(model_path).name}-{quantization.lower()}",
                         Path(model_path).parent)
    return str(folder), qcfg


def write_tokenizer(folder: Path, vocab_size: int) -> Path:
    """A word-level `tokenizer.json` with tokens `t0 ... t{vocab_size-1}` for tools that insist on a tokenizer
    (e.g. `vllm bench serve`'s random dataset). Needs the `tokenizers` package (a vLLM dependency)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"t{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder = Path(folder)
    tok.save(str(folder / "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "t0", "bos_token": "t1", "eos_token": "t2",
           "model_max_length": 1 << 20}
    _atomic_write(folder / "tokenizer_config.json", json.dumps(cfg, indent=2) + "\n")
    return folder / "tokenizer.json"


def _catalog_path(name: str) -> Path | None:
    try:
        from perfmodel.model.shape import catalog_config_path
    except ImportError:
        catalog_config_path = None
    if catalog_config_path is not None:
        try:
            p = Path(catalog_config_path(name))
            return p if p.is_file() else None
        except (ValueError, LookupError, OSError):
            return None
    p = Path(__file__).resolve().parents[2] / "perfmodel" / "catalog" / f"{name}.json"
    return p if p.is_file() else None


def _read_config(path: Path, spec: str) -> dict[str, Any]:
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"model '{spec}': cannot read {path}: {exc}") from None
    if not isinstance(cfg, dict):
        raise ModelDirError(f"model '{spec}': {path} is not a JSON object")
    return cfg


def _atomic_write(path: Path, text: str) -> None:
    write_text_atomic(path, text)
