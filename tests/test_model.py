"""Model shapes: parameter counts against published sizes, KV bytes by hand, loading errors."""

import json

import pytest

from perfmodel.errors import UserError
from perfmodel.model import (
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
}


def test_catalog_lists_all_models():
    assert sorted(PUBLISHED_PARAMS) == list_models()


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_num_params_matches_published_size(name):
    model = load_model(name)
    assert model.num_params() == pytest.approx(PUBLISHED_PARAMS[name], rel=0.01)


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
                      "intermediate_size", "vocab_size", "rms_norm_eps", "rope_theta", "torch_dtype"):
            assert field in config, (name, field)
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
    assert "FalconForCausalLM" in message and "Gemma2ForCausalLM" in message


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
