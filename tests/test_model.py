"""Model shapes: parameter counts against published sizes, KV bytes by hand, loading errors."""

import json
from pathlib import Path

import pytest

from perfmodel.model.checkpoint import hf_hub_cache_dir
from perfmodel.errors import UserError
from perfmodel.model.shape import (
    SUPPORTED_ARCHITECTURES,
    ModelShape,
    catalog_config_path,
    from_hf_config,
    list_models,
    load_model,
)

# Published parameter counts. "card" = the model card's stated size; "safetensors" = the total
# the Hugging Face Hub reports for the checkpoint's safetensors files.
PUBLISHED_PARAMS = {
    "llama-3.1-8b": 8.03e9,  # card "8B"; safetensors 8,030,261,248
    "llama-3.1-70b": 70.6e9,  # safetensors 70,553,706,496
    "llama-2-7b": 6.74e9,  # Llama 2 paper/HF: 6,738,415,616
    "llama-2-13b": 13.0e9,  # safetensors 13,015,864,320
    "llama-2-70b": 68.98e9,  # safetensors 68,976,648,192
    "qwen2.5-7b": 7.61e9,  # card: "Number of Parameters: 7.61B"
    "qwen2.5-14b": 14.7e9,  # card: "Number of Parameters: 14.7B"
    "qwen2.5-32b": 32.5e9,  # card: "Number of Parameters: 32.5B"
    "qwen2.5-72b": 72.7e9,  # card: "Number of Parameters: 72.7B"
    "gemma-2-9b": 9.24e9,  # safetensors 9,241,705,984
    "gemma-2-27b": 27.2e9,  # safetensors 27,227,128,320
    "mixtral-8x7b": 46.7e9,  # Mistral AI announcement: 46.7B total
    "deepseek-r1-distill-llama-8b": 8.03e9,  # safetensors 8,030,261,248 (BF16)
    "deepseek-r1-distill-qwen-7b": 7.62e9,  # safetensors 7.62B
    "deepseek-r1-distill-qwen-14b": 14.8e9,  # safetensors 14.8B
    "deepseek-r1-distill-qwen-32b": 32.8e9,  # safetensors 32.8B
    "command-r-plus": 104e9,  # CohereForAI/c4ai-command-r-plus card: "104 billion parameters"
    "command-r-plus-gptq": 104e9,  # same shape, GPTQ 4-bit weights
    "llama-3.1-405b-gptq-int4": 405e9,  # meta-llama/Llama-3.1-405B card: "405B"
    "llama-3.1-405b": 405e9,  # meta-llama/Llama-3.1-405B card: "405B"
    "qwen3-8b": 8.2e9,  # Qwen/Qwen3-8B card: "Number of Parameters: 8.2B"
    "qwen3-32b": 32.8e9,  # Qwen/Qwen3-32B card: "Number of Parameters: 32.8B"
    "qwen3-30b-a3b": 30.5e9,  # Qwen/Qwen3-30B-A3B card: "30.5B in total and 3.3B activated"
    "qwen3-235b-a22b": 235e9,  # Qwen/Qwen3-235B-A22B card: "235B in total and 22B activated"
}
# Activated parameters the model cards state for the MoE entries.
PUBLISHED_ACTIVE_PARAMS = {"qwen3-30b-a3b": 3.3e9, "qwen3-235b-a22b": 22e9, "mixtral-8x7b": 12.9e9}
FIXTURES = Path(__file__).parent / "fixtures" / "models"


def test_catalog_lists_all_models():
    assert sorted(PUBLISHED_PARAMS) == list_models()


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_num_params_matches_published_size(name):
    model = load_model(name)
    assert model.num_params() == pytest.approx(PUBLISHED_PARAMS[name], rel=0.01)


@pytest.mark.parametrize("name", sorted(PUBLISHED_ACTIVE_PARAMS))
def test_moe_active_params_match_published(name):
    assert load_model(name).num_active_params() == pytest.approx(PUBLISHED_ACTIVE_PARAMS[name], rel=0.02)


def test_qwen3_shared_qk_norm_and_separate_head_dim():
    m = load_model("qwen3-32b")
    assert m.head_dim == 128 and m.hidden_size // m.num_attention_heads == 80  # head_dim is its own key
    assert m.qk_norm and m.qk_norm_shared
    assert m.num_norm_params() == (m.num_layers * 2 + 1) * m.hidden_size + m.num_layers * 2 * 128


def test_qwen3_moe_experts_use_moe_intermediate_size():
    m = load_model("qwen3-235b-a22b")
    assert (m.num_experts, m.num_experts_per_tok, m.intermediate_size) == (128, 8, 1536)
    gate_up = next(lin for lin in m.linear_layers() if lin.name == "experts_gate_up")
    assert gate_up.out_features == 2 * 1536 and gate_up.num_experts == 128


def test_qwen3_moe_with_dense_layers_is_refused(tmp_path):
    config = json.loads(catalog_config_path("qwen3-30b-a3b").read_text())
    config["mlp_only_layers"] = [0]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    with pytest.raises(UserError, match="dense MLP"):
        load_model(str(path))


def test_registry_aliases_of_llama_read_as_llama(tmp_path):
    config = json.loads(catalog_config_path("llama-3.1-8b").read_text())
    for alias in ("InternLM3ForCausalLM", "XverseForCausalLM", "LLaMAForCausalLM"):
        path = tmp_path / f"{alias}.json"
        path.write_text(json.dumps({**config, "architectures": [alias]}))
        m = load_model(str(path))
        assert m.architecture == "LlamaForCausalLM" and m.num_params() == load_model("llama-3.1-8b").num_params()
    path.write_text(json.dumps({**config, "architectures": ["InternLMForCausalLM"], "bias": True}))
    with pytest.raises(UserError, match="bias"):
        load_model(str(path))


def test_exact_checkpoint_count_llama_3_1_8b():
    # Hub metadata of deepseek-ai/DeepSeek-R1-Distill-Llama-8B (same shape): 8,030,261,248 BF16.
    assert load_model("llama-3.1-8b").num_params() == 8_030_261_248


def test_mixtral_active_params():
    model = load_model("mixtral-8x7b")
    assert model.num_experts == 8 and model.num_experts_per_tok == 2
    assert model.num_active_params() == pytest.approx(12.9e9, rel=0.01)  # Mistral AI: 12.9B active


def test_dense_active_equals_total():
    model = load_model("qwen2.5-7b")
    assert model.num_active_params() == model.num_params()


def test_kv_bytes_per_token_by_hand():
    # 2 (K,V) · 32 layers · 8 kv heads · 128 head_dim · 2 bytes
    assert load_model("llama-3.1-8b").kv_bytes_per_token(2) == 2 * 32 * 8 * 128 * 2 == 131072
    # Llama-2-7B has no GQA: 2 · 32 · 32 · 128 · 2
    assert load_model("llama-2-7b").kv_bytes_per_token(2) == 524288
    # fp8 cache halves it
    assert load_model("llama-3.1-8b").kv_bytes_per_token(1) == 65536
    # Gemma-2-9B: head_dim 256 comes from config, not hidden/heads (3584/16 = 224)
    assert load_model("gemma-2-9b").kv_bytes_per_token(2) == 2 * 42 * 8 * 256 * 2


def test_gemma2_alternates_sliding_and_global_layers():
    model = load_model("gemma-2-9b")
    assert model.head_dim == 256
    assert model.sliding_window == 4096
    assert model.layer_is_sliding[:4] == (True, False, True, False)
    assert model.num_sliding_layers == 21 and len(model.layer_is_sliding) == 42
    assert model.tie_word_embeddings  # Gemma-2 config omits the key; transformers defaults to tied
    assert model.num_norms_per_layer == 4


def test_qwen2_without_use_sliding_window_has_no_sliding_layers():
    model = load_model("qwen2.5-7b")
    assert model.sliding_window is None and not any(model.layer_is_sliding)
    assert model.qkv_bias


def test_qwen2_with_use_sliding_window_slides_from_max_window_layers():
    config = json.loads(catalog_config_path("qwen2.5-7b").read_text())
    config.update(use_sliding_window=True, max_window_layers=20, sliding_window=4096)
    model = from_hf_config(config, "qwen-swa")
    assert model.sliding_window == 4096
    assert model.layer_is_sliding == tuple(i >= 20 for i in range(28))


def test_llama_has_no_bias_and_untied_embeddings():
    model = load_model("llama-3.1-70b")
    assert not model.qkv_bias and not model.tie_word_embeddings
    assert model.head_dim == 128 and model.num_kv_heads == 8


def test_command_r_plus_shape_and_count_by_hand():
    model = load_model("CohereForAI/c4ai-command-r-plus")
    assert model.name == "command-r-plus" and model.architecture == "CohereForCausalLM"
    assert model.parallel_attn_mlp and model.num_norms_per_layer == 1
    assert model.tie_word_embeddings  # config omits the key; CohereConfig ties, vLLM asserts it
    assert model.qk_norm and not model.qkv_bias
    assert model.logit_scale == pytest.approx(0.8333333333333334)
    assert model.checkpoint_quantization is None
    h, layers, heads, kv, d, inter, vocab = 12288, 64, 96, 8, 128, 33792, 256000
    linears = h * (heads + 2 * kv) * d + heads * d * h + 3 * h * inter
    norms = layers * h + h + layers * (heads + kv) * d  # input LayerNorm, final norm, per-head q/k norms
    assert model.num_params() == vocab * h + layers * linears + norms == 103_810_674_688
    assert model.num_quantizable_params() == layers * linears


def test_command_r_plus_gptq_variant_reads_its_quantization_config():
    q = load_model("command-r-plus-gptq").checkpoint_quantization
    assert (q.method, q.weight_bits, q.group_size, q.desc_act, q.sym) == ("gptq", 4, 128, True, True)


def test_llama_405b_gptq_fixture_is_int4_checkpoint():
    model = load_model(FIXTURES / "llama-3.1-405b-gptq-int4")
    assert model.name == "llama-3.1-405b-gptq-int4"
    assert (model.num_layers, model.hidden_size, model.num_attention_heads, model.num_kv_heads,
            model.intermediate_size, model.vocab_size) == (126, 16384, 128, 8, 53248, 128256)
    assert model.num_params() == 405_853_388_800  # Llama-3.1-405B's safetensors total
    q = model.checkpoint_quantization  # the hugging-quants export is act-order (fixtures PROVENANCE.md)
    assert (q.method, q.weight_bits, q.group_size, q.desc_act, q.sym) == ("gptq", 4, 128, True, True)
    # the catalog entry is the same config
    fixture = json.loads((FIXTURES / "llama-3.1-405b-gptq-int4" / "config.json").read_text())
    assert json.loads(catalog_config_path("llama-3.1-405b-gptq-int4").read_text()) == fixture
    assert load_model("hugging-quants/Meta-Llama-3.1-405B-Instruct-GPTQ-INT4").name == "llama-3.1-405b-gptq-int4"


def test_linear_layers_dense():
    model = load_model("llama-3.1-8b")
    layers = {lin.name: lin for lin in model.linear_layers()}
    assert set(layers) == {"qkv", "o", "gate_up", "down"}
    assert (layers["qkv"].in_features, layers["qkv"].out_features) == (4096, (32 + 2 * 8) * 128)
    assert layers["qkv"].parallel == "column" and layers["o"].parallel == "row"
    assert layers["gate_up"].out_features == 2 * 14336 and layers["down"].in_features == 14336
    assert all(lin.num_per_token_active == 1 for lin in layers.values())


def test_linear_layers_moe():
    model = load_model("mixtral-8x7b")
    layers = {lin.name: lin for lin in model.linear_layers()}
    assert layers["router"].out_features == 8 and layers["router"].parallel == "replicated"
    assert not layers["router"].quantizable
    assert layers["experts_gate_up"].num_experts == 8
    assert layers["experts_gate_up"].num_per_token_active == 2
    assert layers["experts_down"].parallel == "row"


def test_model_shape_is_frozen():
    model = load_model("llama-2-7b")
    with pytest.raises(AttributeError):
        model.num_layers = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "hf_id, name",
    [
        ("meta-llama/Llama-3.1-70B", "llama-3.1-70b"),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("google/gemma-2-9b-it", "gemma-2-9b"),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
        ("meta-llama/Llama-2-13b-chat-hf", "llama-2-13b"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "deepseek-r1-distill-qwen-14b"),
        ("LLAMA-3.1-8B", "llama-3.1-8b"),
    ],
)
def test_hf_ids_resolve_to_catalog(hf_id, name):
    assert load_model(hf_id).name == name
    assert catalog_config_path(hf_id).stem == name


def test_load_from_directory_and_file(tmp_path):
    model_dir = tmp_path / "Qwen2.5-7B-Instruct"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(catalog_config_path("qwen2.5-7b").read_text())
    from_dir = load_model(model_dir)
    assert from_dir.name == "Qwen2.5-7B-Instruct"
    assert from_dir.num_params() == load_model("qwen2.5-7b").num_params()
    assert load_model(model_dir / "config.json").name == "Qwen2.5-7B-Instruct"
    other = tmp_path / "my-model.json"
    other.write_text(catalog_config_path("llama-2-7b").read_text())
    assert load_model(str(other)).name == "my-model"


def test_catalog_files_are_loadable_hf_configs():
    for name in list_models():
        config = json.loads(catalog_config_path(name).read_text())
        assert config["architectures"][0] in SUPPORTED_ARCHITECTURES
        assert config["_name_or_path"]
        for field in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "intermediate_size", "vocab_size", "rope_theta", "torch_dtype"):
            assert field in config, (name, field)
        assert "rms_norm_eps" in config or "layer_norm_eps" in config, name  # Cohere uses LayerNorm
    assert json.loads(catalog_config_path("llama-3.1-8b").read_text())["rope_scaling"]["rope_type"] == "llama3"


# ---- errors: one clear line ------------------------------------------------------------------


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_unknown_name_lists_known_models():
    with pytest.raises(UserError) as excinfo:
        load_model("gpt-5")
    message = _one_line(excinfo)
    assert "gpt-5" in message and "llama-3.1-8b" in message and "mixtral-8x7b" in message


def test_malformed_json_names_file_and_position(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{\n  "hidden_size": 4096,\n  "oops" 1\n}')
    with pytest.raises(UserError) as excinfo:
        load_model(tmp_path)
    message = _one_line(excinfo)
    assert str(bad) in message and "line 3" in message and "column" in message


def test_missing_field_names_file_and_field(tmp_path):
    config = json.loads(catalog_config_path("llama-2-7b").read_text())
    del config["num_hidden_layers"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(UserError) as excinfo:
        load_model(tmp_path)
    message = _one_line(excinfo)
    assert str(path) in message and "num_hidden_layers" in message


def test_unsupported_architecture_lists_supported(tmp_path):
    config = json.loads(catalog_config_path("llama-2-7b").read_text())
    config["architectures"] = ["FalconForCausalLM"]
    path = tmp_path / "falcon.json"
    path.write_text(json.dumps(config))
    with pytest.raises(UserError) as excinfo:
        load_model(path)
    message = _one_line(excinfo)
    assert "FalconForCausalLM" in message and "Gemma2ForCausalLM" in message and "CohereForCausalLM" in message


def test_directory_without_config(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load_model(tmp_path)


def test_missing_json_file():
    with pytest.raises(UserError, match="no such file"):
        load_model("/nonexistent/model.json")


def test_shape_validation():
    with pytest.raises(UserError, match="multiple"):
        ModelShape(name="x", architecture="LlamaForCausalLM", hidden_size=64, num_layers=1,
                   num_attention_heads=6, num_kv_heads=4, head_dim=16, intermediate_size=128,
                   vocab_size=100, layer_is_sliding=(False,))


# ---- quantization_config parsing ------------------------------------------------------------


def _with_quant(quant: dict, key: str = "quantization_config") -> dict:
    config = json.loads(catalog_config_path("llama-3.1-8b").read_text())
    config[key] = quant
    return config


def test_awq_and_fp8_configs():
    awq = from_hf_config(_with_quant({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True,
                                      "version": "gemm"}), "awq").checkpoint_quantization
    assert (awq.method, awq.weight_bits, awq.group_size, awq.zero_point, awq.has_zero_points) == (
        "awq", 4, 128, True, True)
    fp8 = from_hf_config(_with_quant({"quant_method": "fp8", "activation_scheme": "dynamic"}),
                         "fp8").checkpoint_quantization
    assert (fp8.method, fp8.weight_bits, fp8.scheme) == ("fp8", 8, "FP8_W8A8")


def _ct(weights: dict, inputs: dict | None, fmt: str) -> dict:
    return {"quant_method": "compressed-tensors", "format": fmt,
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": inputs}}}


@pytest.mark.parametrize("weights, inputs, fmt, scheme, group_size", [
    ({"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 128},
     None, "pack-quantized", "W4A16", 128),
    ({"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"}, None, "pack-quantized", "W8A16", -1),
    ({"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel"},
     {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token", "dynamic": True},
     "float-quantized", "FP8_W8A8", -1),
    ({"num_bits": 8, "type": "float", "symmetric": True, "strategy": "tensor"}, None, "float-quantized",
     "FP8_W8A16", None),
    ({"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
     {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True},
     "int-quantized", "INT8_W8A8", -1),
])
def test_compressed_tensors_schemes(weights, inputs, fmt, scheme, group_size):
    q = from_hf_config(_with_quant(_ct(weights, inputs, fmt)), "ct").checkpoint_quantization
    assert (q.method, q.scheme, q.group_size, q.has_zero_points) == ("compressed-tensors", scheme, group_size, False)


def test_compression_config_is_read_when_quantization_config_is_absent():
    weights = {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 64}
    q = from_hf_config(_with_quant(_ct(weights, None, "pack-quantized"), key="compression_config"),
                       "ct").checkpoint_quantization
    assert (q.scheme, q.group_size) == ("W4A16", 64)


def test_unmodelled_quant_method_is_one_line_error():
    with pytest.raises(UserError) as excinfo:
        from_hf_config(_with_quant({"quant_method": "bitsandbytes", "load_in_4bit": True}), "bnb")
    message = _one_line(excinfo)
    assert "bitsandbytes" in message and "gptq" in message and "compressed-tensors" in message


# ---- the local Hugging Face cache ------------------------------------------------------------


def _cache_repo(cache: Path, repo_id: str, config: dict, revision: str = "abc123", *, ref: bool = True) -> Path:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(revision + "\n")
    return snapshot


@pytest.fixture
def no_hf_env(monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _gptq_405b_config() -> dict:
    return json.loads((FIXTURES / "llama-3.1-405b-gptq-int4" / "config.json").read_text())


def test_hf_cache_from_hf_hub_cache(tmp_path, no_hf_env):
    no_hf_env.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    _cache_repo(tmp_path / "hub", "someorg/Big-GPTQ", _gptq_405b_config())
    model = load_model("someorg/Big-GPTQ")
    assert model.name == "someorg/Big-GPTQ" and model.checkpoint_quantization.weight_bits == 4


def test_hf_cache_from_hf_home_and_default(tmp_path, no_hf_env):
    no_hf_env.setenv("HF_HOME", str(tmp_path / "hfhome"))
    assert hf_hub_cache_dir() == tmp_path / "hfhome" / "hub"
    _cache_repo(tmp_path / "hfhome" / "hub", "a/b", _gptq_405b_config())
    assert load_model("a/b").num_layers == 126
    no_hf_env.delenv("HF_HOME")
    no_hf_env.setenv("HOME", str(tmp_path / "home"))
    assert hf_hub_cache_dir() == tmp_path / "home" / ".cache" / "huggingface" / "hub"
    _cache_repo(tmp_path / "home" / ".cache" / "huggingface" / "hub", "c/d", _gptq_405b_config())
    assert load_model("c/d").hidden_size == 16384


def test_hf_cache_refs_main_picks_the_revision(tmp_path, no_hf_env):
    no_hf_env.setenv("HF_HUB_CACHE", str(tmp_path))
    old = json.loads(catalog_config_path("llama-2-7b").read_text())
    _cache_repo(tmp_path, "org/model", old, revision="0ld")
    _cache_repo(tmp_path, "org/model", _gptq_405b_config(), revision="n3w")  # refs/main now says n3w
    assert load_model("org/model").num_layers == 126
    (tmp_path / "models--org--model" / "refs" / "main").unlink()  # two snapshots and no ref: ambiguous
    with pytest.raises(UserError, match="unknown model 'org/model'"):
        load_model("org/model")


def test_path_then_catalog_then_cache(tmp_path, no_hf_env, monkeypatch):
    no_hf_env.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    # a cached copy of a catalog id does not shadow the catalog
    _cache_repo(tmp_path / "hub", "meta-llama/Llama-3.1-8B", _gptq_405b_config())
    assert load_model("meta-llama/Llama-3.1-8B").name == "llama-3.1-8b"
    # a local path with the same spelling wins over both
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "meta-llama" / "Llama-3.1-8B"
    local.mkdir(parents=True)
    (local / "config.json").write_text(catalog_config_path("llama-2-7b").read_text())
    assert load_model("meta-llama/Llama-3.1-8B").num_kv_heads == 32


def test_unknown_model_names_the_cache(tmp_path, no_hf_env):
    no_hf_env.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserError) as excinfo:
        load_model("nobody/nothing")
    message = _one_line(excinfo)
    assert "nobody/nothing" in message and str(tmp_path) in message and "command-r-plus" in message
