"""Model shapes read from a Hugging Face ``config.json``.

A :class:`ModelShape` holds only what the memory and cost models need: the sizes of every
weight matrix, the attention geometry (GQA heads, head size, sliding-window layers) and the
mixture-of-experts fan-out. Parameter counts are exact for the supported families
(Llama, Mistral, Qwen2, Gemma-2, Mixtral, Cohere Command R/R+) and match the published sizes.
A shape also carries the checkpoint's own quantization (``checkpoint_quantization``, from its
``quantization_config``), which :func:`perfmodel.model.precision.resolve_precision` honours as vLLM does.

Catalog configs live in ``perfmodel/catalog/<name>.json``; they are the models' real
``config.json`` contents (shape keys at least), so vLLM can load them with dummy weights.
:func:`load_model` resolves a path, then a catalog name or HF id, then the local HF cache.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from perfmodel.model.checkpoint import CheckpointQuantization, find_in_hf_cache, hf_hub_cache_dir, parse_quantization_config
from perfmodel.errors import UserError

CATALOG_DIR = Path(__file__).resolve().parent.parent / "catalog"
DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # measured sets (a source checkout; absent when installed)

SUPPORTED_ARCHITECTURES: tuple[str, ...] = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Gemma2ForCausalLM",
    "MixtralForCausalLM",
    "CohereForCausalLM",
    "Qwen3ForCausalLM",
    "Qwen3MoeForCausalLM",
)

# Other names vLLM's registry maps to the same implementation (vLLM 0.11.2 vllm/model_executor/models/registry.py
# _TEXT_GENERATION_MODELS: each of these -> ("llama", "LlamaForCausalLM")); their config.json reads as Llama's.
# vLLM's LlamaAttention adds a bias to QKV and O when the config's ``bias`` is set (InternLM v1), which a shape
# here cannot hold (only a QKV bias): such configs are refused.
_ALIASES = {name: "LlamaForCausalLM" for name in ("LLaMAForCausalLM", "AquilaModel", "AquilaForCausalLM",
                                                   "CwmForCausalLM", "InternLMForCausalLM", "InternLM3ForCausalLM",
                                                   "XverseForCausalLM")}
# Qwen3 MoE's experts: ``num_experts`` routed experts of width ``moe_intermediate_size``, no shared expert
# (vLLM 0.11.2 vllm/model_executor/models/qwen3_moe.py Qwen3MoeSparseMoeBlock); a layer is sparse unless listed
# in ``mlp_only_layers`` or ``(i + 1) % decoder_sparse_step != 0`` (Qwen3MoeDecoderLayer.__init__).
_MOE_KEYS = {"Qwen3MoeForCausalLM": ("num_experts", "moe_intermediate_size")}

# Gemma-2 puts a norm before and after both attention and MLP; the others one before each, except
# Cohere, whose attention and MLP run in parallel on one LayerNorm's output (vLLM 0.7.0
# vllm/model_executor/models/commandr.py CohereDecoderLayer: residual + attn(x) + mlp(x)).
_NORMS_PER_LAYER = {"Gemma2ForCausalLM": 4, "CohereForCausalLM": 1}
_PARALLEL_ATTN_MLP = {"CohereForCausalLM"}
# transformers' config defaults where config.json may omit the key (CohereConfig ties embeddings,
# and vLLM's CohereForCausalLM asserts it).
_TIED_BY_DEFAULT = {"Gemma2ForCausalLM", "CohereForCausalLM"}
_QKV_BIAS_ARCHITECTURES = {"Qwen2ForCausalLM"}
# Qwen3 normalises every head of Q and K with one shared RMSNorm of head_dim weights each (vLLM 0.11.2
# vllm/model_executor/models/qwen3.py Qwen3Attention.q_norm/k_norm), always, without a config key.
_SHARED_QK_NORM = {"Qwen3ForCausalLM", "Qwen3MoeForCausalLM"}


@dataclass(frozen=True, kw_only=True)
class Linear:
    """One weight matrix (GEMM) of a decoder layer.

    ``parallel`` says how tensor parallelism splits it: ``"column"`` splits ``out_features``,
    ``"row"`` splits ``in_features`` (followed by an all-reduce), ``"replicated"`` keeps the
    whole matrix on every rank (the MoE router, as vLLM does).
    ``num_experts`` copies of the matrix exist (1 when dense); each token passes through
    ``num_per_token_active`` of them (1 when dense, top-k for experts).
    """

    name: str
    in_features: int
    out_features: int
    parallel: Literal["column", "row", "replicated"]
    num_per_token_active: int = 1
    num_experts: int = 1
    bias: bool = False
    quantizable: bool = True

    @property
    def num_params(self) -> int:
        """Parameters of all copies: (in·out + out if bias) · num_experts."""
        per_copy = self.in_features * self.out_features + (self.out_features if self.bias else 0)
        return per_copy * self.num_experts

    @property
    def num_active_params(self) -> int:
        """Parameters one token multiplies by: (in·out + bias) · num_per_token_active."""
        return self.num_params // self.num_experts * self.num_per_token_active


@dataclass(frozen=True, kw_only=True)
class ModelShape:
    """Shape of a decoder-only transformer, as vLLM builds it.

    ``layer_is_sliding[i]`` is true when layer ``i`` attends only to the last
    ``sliding_window`` tokens. ``num_experts == 0`` means a dense MLP.
    ``parallel_attn_mlp``: attention and MLP read the same normed input and both add to the
    residual (Cohere), so a layer has one norm. ``qk_norm``: per-head norms on Q and K, with
    (heads + kv_heads) · head_dim weights per layer (Command R+ ``use_qk_norm``). ``logit_scale``
    multiplies the LM head's logits (no cost). ``checkpoint_quantization`` is the
    checkpoint's ``quantization_config`` (None when unquantized).
    """

    name: str
    architecture: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    num_experts: int = 0
    num_experts_per_tok: int = 0
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    sliding_window: int | None = None
    layer_is_sliding: tuple[bool, ...] = ()
    max_position_embeddings: int = 4096
    torch_dtype: str = "float16"
    parallel_attn_mlp: bool = False
    qk_norm: bool = False
    qk_norm_shared: bool = False  # one head_dim norm for all Q heads and one for all K heads (Qwen3)
    logit_scale: float = 1.0
    checkpoint_quantization: CheckpointQuantization | None = None

    def __post_init__(self) -> None:
        for field in ("hidden_size", "num_layers", "num_attention_heads", "num_kv_heads",
                      "head_dim", "intermediate_size", "vocab_size", "max_position_embeddings"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UserError(f"model {self.name}: {field} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_kv_heads:
            raise UserError(f"model {self.name}: num_attention_heads ({self.num_attention_heads}) "
                            f"is not a multiple of num_key_value_heads ({self.num_kv_heads})")
        if len(self.layer_is_sliding) != self.num_layers:
            raise UserError(f"model {self.name}: layer_is_sliding has {len(self.layer_is_sliding)} "
                            f"entries for {self.num_layers} layers")
        if any(self.layer_is_sliding) and not self.sliding_window:
            raise UserError(f"model {self.name}: sliding layers need a sliding_window")
        if self.num_experts < 0 or (self.num_experts and not 0 < self.num_experts_per_tok <= self.num_experts):
            raise UserError(f"model {self.name}: num_experts_per_tok ({self.num_experts_per_tok}) "
                            f"must be between 1 and num_experts ({self.num_experts})")

    # ---- structure -------------------------------------------------------------------------

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def has_expert_gemms(self) -> bool:
        """More than one expert per layer: the GEMMs perfmodel.cost.step prices as vLLM's fused MoE kernel."""
        return self.num_experts > 1

    @property
    def num_sliding_layers(self) -> int:
        return sum(self.layer_is_sliding)

    @property
    def num_norms_per_layer(self) -> int:
        return _NORMS_PER_LAYER.get(self.architecture, 2)

    def linear_layers(self) -> tuple[Linear, ...]:
        """The GEMMs of one decoder layer, fused as vLLM runs them.

        ``qkv``: hidden -> (heads + 2·kv_heads)·head_dim (column); ``o``: heads·head_dim -> hidden
        (row); dense MLP ``gate_up``: hidden -> 2·intermediate (column), ``down``: intermediate ->
        hidden (row). An MoE layer has a replicated ``router`` (hidden -> num_experts) and
        ``num_experts`` copies of ``gate_up``/``down``, of which each token uses top-k.
        """
        q_size = self.num_attention_heads * self.head_dim
        kv_size = self.num_kv_heads * self.head_dim
        layers = [
            Linear(name="qkv", in_features=self.hidden_size, out_features=q_size + 2 * kv_size,
                   parallel="column", bias=self.qkv_bias),
            Linear(name="o", in_features=q_size, out_features=self.hidden_size, parallel="row"),
        ]
        if self.is_moe:
            experts = dict(num_experts=self.num_experts, num_per_token_active=self.num_experts_per_tok)
            layers += [
                Linear(name="router", in_features=self.hidden_size, out_features=self.num_experts,
                       parallel="replicated", quantizable=False),
                Linear(name="experts_gate_up", in_features=self.hidden_size,
                       out_features=2 * self.intermediate_size, parallel="column", **experts),
                Linear(name="experts_down", in_features=self.intermediate_size,
                       out_features=self.hidden_size, parallel="row", **experts),
            ]
        else:
            layers += [
                Linear(name="gate_up", in_features=self.hidden_size,
                       out_features=2 * self.intermediate_size, parallel="column"),
                Linear(name="down", in_features=self.intermediate_size, out_features=self.hidden_size,
                       parallel="row"),
            ]
        return tuple(layers)

    # ---- parameter counts ------------------------------------------------------------------

    def num_embedding_params(self) -> int:
        """Input embedding plus the LM head when it is a separate matrix."""
        embed = self.vocab_size * self.hidden_size
        return embed if self.tie_word_embeddings else 2 * embed

    def num_norm_params(self) -> int:
        """Norm weights: per-layer norms plus the final norm (hidden_size each, no bias), plus the
        per-head Q/K norms ((heads + kv_heads) · head_dim per layer, 2 · head_dim when shared) when ``qk_norm``."""
        heads = 2 if self.qk_norm_shared else self.num_attention_heads + self.num_kv_heads
        qk = heads * self.head_dim if self.qk_norm else 0
        return (self.num_layers * self.num_norms_per_layer + 1) * self.hidden_size + self.num_layers * qk

    def num_quantizable_params(self) -> int:
        """Weights a GPTQ/AWQ/FP8/INT8 checkpoint stores quantized: every decoder linear
        weight except the router; biases, norms, embeddings and LM head stay unquantized."""
        per_layer = sum(lin.in_features * lin.out_features * lin.num_experts
                        for lin in self.linear_layers() if lin.quantizable)
        return self.num_layers * per_layer

    def num_params(self) -> int:
        """All parameters: embeddings (+ LM head unless tied) + layers · (linears incl. biases,
        all experts, router) + norms."""
        per_layer = sum(lin.num_params for lin in self.linear_layers())
        return self.num_embedding_params() + self.num_layers * per_layer + self.num_norm_params()

    def num_active_params(self) -> int:
        """Parameters one token touches: as :meth:`num_params` with only top-k experts."""
        per_layer = sum(lin.num_active_params for lin in self.linear_layers())
        return self.num_embedding_params() + self.num_layers * per_layer + self.num_norm_params()

    def kv_bytes_per_token(self, kv_bytes_per_element: float) -> float:
        """KV-cache bytes one token occupies in all layers: 2 (K and V) · layers · kv_heads ·
        head_dim · bytes per element. Sliding layers are counted in full (an upper bound: vLLM
        may free their blocks outside the window)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * kv_bytes_per_element


# ---- reading config.json -------------------------------------------------------------------


def _require(config: Mapping[str, Any], field: str, source: str) -> Any:
    if config.get(field) is None:
        raise UserError(f"{source}: config is missing required field '{field}'")
    return config[field]


def _positive_int(config: Mapping[str, Any], field: str, source: str) -> int:
    value = _require(config, field, source)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UserError(f"{source}: field '{field}' must be a positive integer, got {value!r}")
    return value


def _sliding_layers(config: Mapping[str, Any], architecture: str, num_layers: int,
                    source: str) -> tuple[int | None, tuple[bool, ...]]:
    """Which layers use sliding-window attention, following transformers/vLLM per family."""
    window = config.get("sliding_window")
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list) and len(layer_types) == num_layers:
        sliding = tuple(t == "sliding_attention" for t in layer_types)
    elif architecture == "Gemma2ForCausalLM":
        sliding = tuple(i % 2 == 0 for i in range(num_layers))  # even layers local, odd global
    elif architecture in ("Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM"):
        if config.get("use_sliding_window", False):
            first = config.get("max_window_layers", num_layers)
            sliding = tuple(i >= first for i in range(num_layers))
        else:
            sliding = (False,) * num_layers
    else:  # Llama: no window; Mistral/Mixtral: every layer when sliding_window is set
        sliding = (window is not None and architecture != "LlamaForCausalLM",) * num_layers
    if not any(sliding):
        return None, sliding
    if not isinstance(window, int) or window <= 0:
        raise UserError(f"{source}: sliding layers need a positive integer 'sliding_window', got {window!r}")
    return window, sliding


def _sparse_mlp(config: Mapping[str, Any], architecture: str, num_layers: int, source: str) -> tuple[int, int]:
    """(experts, expert width) of a model whose MLPs are all sparse; a config that keeps some layers dense
    (``mlp_only_layers``, ``decoder_sparse_step`` > 1) is refused: a shape holds one MLP kind for all layers."""
    experts_key, width_key = _MOE_KEYS[architecture]
    num_experts = _positive_int(config, experts_key, source)
    step = config.get("decoder_sparse_step") or 1
    dense = set(config.get("mlp_only_layers") or ())
    dense |= {i for i in range(num_layers) if (i + 1) % step}
    if dense and num_experts:
        raise UserError(f"{source}: layers {sorted(dense)[:4]}... keep a dense MLP (mlp_only_layers / "
                        f"decoder_sparse_step); perfmodel models every layer alike, so only all-sparse configs are read")
    return num_experts, _positive_int(config, width_key, source)


def from_hf_config(config: Mapping[str, Any], name: str, *, source: str | None = None) -> ModelShape:
    """Build a :class:`ModelShape` from the contents of an HF ``config.json``.

    ``source`` names the file in error messages (defaults to ``name``).
    """
    source = source or name
    architectures = _require(config, "architectures", source)
    if not isinstance(architectures, list) or not architectures:
        raise UserError(f"{source}: field 'architectures' must be a non-empty list")
    architecture = _ALIASES.get(architectures[0], architectures[0])
    if architectures[0] in _ALIASES and config.get("bias"):
        raise UserError(f"{source}: {architectures[0]} with 'bias': true puts a bias on the attention output too, "
                        f"which perfmodel does not model")
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise UserError(f"{source}: architecture '{architecture}' is not supported; "
                        f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")

    hidden_size = _positive_int(config, "hidden_size", source)
    num_layers = _positive_int(config, "num_hidden_layers", source)
    num_heads = _positive_int(config, "num_attention_heads", source)
    num_kv_heads = config.get("num_key_value_heads") or num_heads
    head_dim = config.get("head_dim") or hidden_size // num_heads
    num_experts = config.get("num_local_experts") or 0
    if "num_local_experts" in config and not (isinstance(config["num_local_experts"], int)
                                              and config["num_local_experts"] >= 1):  # 0 is no MoE, not dense
        raise UserError(f"{source}: num_local_experts must be a positive integer, got "
                        f"{config['num_local_experts']!r}")
    intermediate_size = _positive_int(config, "intermediate_size", source)
    if architecture in _MOE_KEYS:
        num_experts, intermediate_size = _sparse_mlp(config, architecture, num_layers, source)
    window, sliding = _sliding_layers(config, architecture, num_layers, source)
    tied = config.get("tie_word_embeddings", architecture in _TIED_BY_DEFAULT)
    qkv_bias = bool(config.get("attention_bias", architecture in _QKV_BIAS_ARCHITECTURES))
    torch_dtype = config.get("torch_dtype") or config.get("dtype") or "float32"
    return ModelShape(
        name=name,
        architecture=architecture,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_attention_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate_size,
        vocab_size=_positive_int(config, "vocab_size", source),
        num_experts=num_experts,
        num_experts_per_tok=config.get("num_experts_per_tok", 0) if num_experts else 0,
        tie_word_embeddings=bool(tied),
        qkv_bias=qkv_bias,
        sliding_window=window,
        layer_is_sliding=sliding,
        max_position_embeddings=config.get("max_position_embeddings") or 4096,
        torch_dtype=str(torch_dtype),
        parallel_attn_mlp=architecture in _PARALLEL_ATTN_MLP,
        qk_norm=bool(config.get("use_qk_norm", False)) or architecture in _SHARED_QK_NORM,
        qk_norm_shared=architecture in _SHARED_QK_NORM,
        logit_scale=float(config.get("logit_scale") or 1.0),
        checkpoint_quantization=parse_quantization_config(config, source),
    )


# ---- catalog and loading -------------------------------------------------------------------


def list_models() -> list[str]:
    """Names of the catalog models, sorted."""
    return sorted(path.stem for path in CATALOG_DIR.glob("*.json"))


_HF_SUFFIX = re.compile(r"(-(hf|chat|instruct|it|base|v\d+(\.\d+)*))+$")


def _catalog_name(name: str) -> str | None:
    """Map a catalog name or an HF id (any case, with -Instruct/-it/-hf/-chat/-v0.1 suffixes)
    to a catalog name; None when it is not in the catalog."""
    known = list_models()
    key = name.strip().lower()
    if key in known:
        return key
    for model in known:
        if _read_json(CATALOG_DIR / f"{model}.json").get("_name_or_path", "").lower() == key:
            return model
    short = key.rsplit("/", 1)[-1]
    short = _HF_SUFFIX.sub("", short.removeprefix("meta-"))
    return short if short in known else None


def _unknown_model(name: str) -> UserError:
    return UserError(f"unknown model '{name}'; known models: {', '.join(list_models())} (or give a directory "
                     f"holding config.json, a .json file, or an HF id cached under {hf_hub_cache_dir()})")


def catalog_config_path(name: str) -> Path:
    """Path of the catalog ``config.json`` for a catalog name or HF id."""
    model = _catalog_name(name)
    if model is None:
        raise _unknown_model(name)
    return CATALOG_DIR / f"{model}.json"


MAX_CONFIG_BYTES = 16 * 2**20  # a config.json is a few KB; a FIFO or a device would block or never end


def _read_json(path: Path) -> dict[str, Any]:
    if path.exists() and not path.is_file():
        raise UserError(f"{path}: not a regular file (a pipe or a device); expected a JSON config")
    if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: {path.stat().st_size:,} bytes; a config.json is limited to {MAX_CONFIG_BYTES:,}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); expected a JSON config") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object at the top level")
    return data


def _load_file(path: Path, name: str) -> ModelShape:
    return from_hf_config(_read_json(path), name, source=str(path))


def shipped_checkpoint_config(repo_id: str) -> Path | None:
    """``config.json`` of a checkpoint this repository ships with its measurements (``data/<set>/<name>/``, e.g.
    data/taiwania/qwen2.5-72b-instruct-gptq-int4 for Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4); None elsewhere."""
    parts = repo_id.strip().split("/")
    if len(parts) != 2 or not all(parts) or parts[1] in (".", ".."):
        return None
    found = sorted(DATA_DIR.glob(f"*/{parts[1].lower()}/config.json")) if DATA_DIR.is_dir() else []
    return found[0] if len(found) == 1 else None


def load_model(name_or_path: str | Path) -> ModelShape:
    """Load a model shape, trying in order:

    1. a path: a directory holding ``config.json`` (the shape is named after the directory) or a
       ``.json`` file (named after the file, or its directory for ``config.json``);
    2. a catalog name or HF id that maps to the catalog (see :func:`_catalog_name`);
    3. an HF id ``org/name`` in the local Hugging Face cache, offline (:func:`find_in_hf_cache`);
       the shape is named by the id.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise UserError(f"{path}: directory has no config.json")
        return _load_file(config_path, path.resolve().name)
    if path.is_file():
        return _load_file(path, path.resolve().parent.name if path.name == "config.json" else path.stem)
    text = str(name_or_path)
    model = _catalog_name(text)
    if model is not None:
        return _load_file(CATALOG_DIR / f"{model}.json", model)
    cached = find_in_hf_cache(text) or shipped_checkpoint_config(text)
    if cached is not None:
        return _load_file(cached, text.strip())
    if text.endswith(".json"):
        raise UserError(f"{name_or_path}: no such file")
    raise _unknown_model(text)
