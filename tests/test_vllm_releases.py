"""vLLM release table: engine generation and defaults per release, as read from each release's source."""

from __future__ import annotations

import pytest

from perfmodel.errors import UserError
from perfmodel.engine.releases import engine_generation, parse_release, release_defaults

GIB = 1024**3
V100 = dict(gpu_memory_bytes=32 * GIB, compute_capability=7.0)
H200 = dict(gpu_memory_bytes=141 * GIB, compute_capability=9.0, gpu_name="NVIDIA H200")


def test_engine_generation_by_release():
    assert engine_generation("0.7.0") == "v0"
    assert engine_generation("0.6.3.post1") == "v0"
    assert engine_generation("0.8.0") == "v1"
    assert engine_generation("0.26") == "v1"
    # 0.8.0 falls back to V0 on Volta and with PP; 0.10.0 only on Volta
    assert engine_generation("0.8.0", compute_capability=7.0) == "v0"
    assert engine_generation("0.8.5", pipeline_parallel_size=2) == "v0"
    assert engine_generation("0.10.0", pipeline_parallel_size=2) == "v1"
    assert engine_generation("0.10.0", compute_capability=7.0) == "v0"


def test_v0_defaults_of_0_7_0_at_short_context():
    for entry in ("offline", "serve"):  # V0 has no per-entry-point budget
        d = release_defaults("0.7.0", entry_point=entry, max_model_len=4096, **V100)
        assert d.engine_generation == "v0"
        assert (d.max_num_seqs, d.max_num_batched_tokens, d.enable_chunked_prefill) == (256, 4096, False)
        assert (d.gpu_memory_utilization, d.block_size, d.max_seq_len_to_capture) == (0.90, 16, 4096)
        assert d.cuda_graph_prefill is False
    d = release_defaults("0.7.0", entry_point="serve", max_model_len=1024, **V100)
    assert d.max_num_batched_tokens == 2048  # max(max_model_len, 2048)
    assert d.cuda_graph_batch_sizes[:5] == (1, 2, 4, 8, 16)
    assert d.cuda_graph_batch_sizes[-1] == 256 and len(d.cuda_graph_batch_sizes) == 3 + 32
    assert release_defaults("0.7.0", entry_point="serve", max_model_len=131072, **V100).max_seq_len_to_capture == 8192


def test_v0_turns_chunked_prefill_on_above_32k_only():
    at = release_defaults("0.7.0", entry_point="serve", max_model_len=32768, **V100)
    above = release_defaults("0.7.0", entry_point="serve", max_model_len=32769, **V100)
    assert (at.enable_chunked_prefill, at.max_num_batched_tokens) == (False, 32768)
    assert (above.enable_chunked_prefill, above.max_num_batched_tokens) == (True, 2048)


def test_v1_defaults_of_0_8_0_by_gpu_name_and_0_26_by_memory():
    off = release_defaults("0.8.0", entry_point="offline", max_model_len=8192, **H200)
    srv = release_defaults("0.8.0", entry_point="serve", max_model_len=8192, **H200)
    assert (off.max_num_batched_tokens, srv.max_num_batched_tokens, off.max_num_seqs) == (16384, 8192, 1024)
    assert off.enable_chunked_prefill and off.cuda_graph_prefill
    assert off.cuda_graph_batch_sizes[-1] == 512
    a100 = release_defaults("0.8.0", entry_point="offline", max_model_len=8192, gpu_memory_bytes=80 * GIB,
                            gpu_name="NVIDIA A100-SXM4-80GB")
    assert (a100.max_num_batched_tokens, a100.max_num_seqs) == (8192, 1024)  # by name, not by memory
    assert release_defaults("0.10.0", entry_point="offline", max_model_len=8192, gpu_memory_bytes=80 * GIB,
                            gpu_name="NVIDIA A100-SXM4-80GB").max_num_seqs == 256
    new = release_defaults("0.26", entry_point="offline", max_model_len=8192, gpu_memory_bytes=141 * GIB)
    assert (new.max_num_batched_tokens, new.max_num_seqs, new.gpu_memory_utilization) == (16384, 1024, 0.92)
    small = release_defaults("0.26", entry_point="serve", max_model_len=8192, gpu_memory_bytes=48 * GIB)
    assert (small.max_num_batched_tokens, small.max_num_seqs) == (2048, 256)
    assert small.cuda_graph_batch_sizes[-1] == 512 and max(small.cuda_graph_batch_sizes) <= 2048


def test_0_8_on_volta_gets_v0_defaults():
    d = release_defaults("0.8.0", entry_point="offline", max_model_len=8192, **V100)
    assert (d.engine_generation, d.max_num_seqs, d.max_num_batched_tokens) == ("v0", 256, 8192)
    assert "0.8.0" in d.sources["max_num_seqs"]


def test_every_field_has_a_source():
    for version, hw in (("0.7.0", V100), ("0.8.0", H200), ("0.10.0", H200), ("0.26", H200), ("0.5.0", V100)):
        d = release_defaults(version, entry_point="serve", max_model_len=8192, **hw)
        for name in ("engine_generation", "max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill",
                     "gpu_memory_utilization", "block_size", "cuda_graph_batch_sizes", "cuda_graph_prefill",
                     "max_seq_len_to_capture"):
            assert d.sources[name], (version, name)
        with pytest.raises(TypeError):
            d.sources["max_num_seqs"] = "x"  # read-only
    assert "not checked" in release_defaults("0.5.0", entry_point="serve", max_model_len=8192,
                                             **V100).sources["max_num_seqs"]


def test_bad_input_is_one_clear_user_error():
    assert parse_release("v0.7.0") == (0, 7, 0) and parse_release("0.26") == (0, 26, 0)
    with pytest.raises(UserError, match="look like"):
        engine_generation("latest")
    with pytest.raises(UserError, match="entry point"):
        release_defaults("0.7.0", entry_point="api", max_model_len=8192, gpu_memory_bytes=GIB)
    with pytest.raises(UserError, match="max_model_len"):
        release_defaults("0.7.0", entry_point="serve", max_model_len=0, gpu_memory_bytes=GIB)


@pytest.mark.parametrize("version, entry_point, expected", [
    # vLLM 0.8.0 vllm/engine/arg_utils.py EngineArgs._set_default_args_v1: 16384/8192 only when the device name
    # has h100/h200; max_num_seqs 1024 on every GPU
    ("0.8.0", "offline", (1024, 8192)), ("0.8.0", "serve", (1024, 2048)),
    # vLLM 0.10.0 same function: the large budget and 1024 seqs need >= 70 GiB and "a100" not in the name
    ("0.10.0", "offline", (256, 8192)), ("0.10.0", "serve", (256, 2048)),
])
def test_an_a100_scenario_resolves_what_the_release_resolves(version, entry_point, expected):
    from perfmodel.scenario import Scenario

    engine = Scenario.build(model="llama-3.1-8b", hardware="dgx-a100", vllm_version=version,
                            entry_point=entry_point).engine
    assert (engine.max_num_seqs, engine.max_num_batched_tokens) == expected
