"""Time, on this CPU, the host-side Python that vLLM 0.7.0's V0 GPU model runner runs every step before the model
and in the sampler, for the parts that need no GPU:

- ``model_input``: ``GPUModelRunnerBase._prepare_model_input_tensors`` (vllm/worker/model_runner.py):
  ``ModelInputForGPUBuilder.prepare`` + ``add_seq_group`` per group + ``build``, with the XFormers attention
  backend's ``XFormersMetadataBuilder`` (vllm/attention/backends/xformers.py, ``CommonMetadataBuilder`` in
  vllm/attention/backends/utils.py), as a Volta GPU runs it (CUDA graphs on, so decode batches take the
  ``graph_block_tables`` path);
- ``sampling_metadata``: ``SamplingMetadata.prepare`` (vllm/model_executor/sampling_metadata.py) with the runner's
  own generators and cache (``ModelRunner.prepare_model_input``);
- ``sampling_tensors``: ``SamplingTensors.from_sampling_metadata`` (same file), which ``Sampler._init_sampling_tensors``
  (vllm/model_executor/layers/sampler.py) runs on every step.

Tensors go to device "cpu" with pin_memory False: the host-to-device copies and everything after (graph launch,
the sampler's kernels) are not timed. The batches are what vLLM 0.7.0's own ``Scheduler.schedule()`` hands the
runner for the Taiwania 2 configuration (Qwen2.5-72B config, max_model_len 2048, block size 16, TP 8 x PP 2, the
default sampling parameters of an OpenAI completion request with ignore_eos, built by the wheel's
``CompletionRequest.to_sampling_params``): a decode step of N running sequences after prompts of 498 tokens, and
the first prefill step of 1-4 such prompts. With PP 2 the runner has no ``SamplingMetadataCache`` (its __init__).

The wheel is entered as ``v0_scheduler.py`` does. The runner itself is vLLM's ``ModelRunner``, built from a real
``VllmConfig``; to let it import and select XFormers without a GPU and with this venv's newer torch/triton:
``xformers`` is an empty fake (the metadata builder calls no xformers op); ``vllm._C`` (the CUDA op library, built
for torch 2.5) is an empty module; ``triton`` is hidden (this venv's triton lacks what vllm/triton_utils imports; it
only decides whether the prefix-prefill kernel is imported); the platform is vLLM's own ``NonNvmlCudaPlatform`` (no
NVML here), whose instance answers False to is_pin_memory_available (no CUDA allocator to pin with; the runner and
``SamplingTensors.from_lists`` ask it), with ``VLLM_ATTENTION_BACKEND=XFORMERS`` as
CudaPlatformBase.get_attn_backend_cls picks for capability < 8.0; the model config is the Taiwania checkpoint's
config.json without its quantization_config (GPTQ verification imports triton kernels; quantization does not enter
input preparation). No vLLM Python is replaced or edited. ``gguf`` and ``nvidia-ml-py`` (imported by vLLM modules,
not called) go in --deps.

    pip install --no-deps --target /tmp/tr/v070 vllm-0.7.0-cp38-abi3-manylinux1_x86_64.whl
    pip install --no-deps --target /tmp/tr/v0deps gguf nvidia-ml-py
    PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/anchors/v0_model_input.py --vllm070 /tmp/tr/v070 \\
        --deps /tmp/tr/v0deps --out data/anchors/v0-model-input.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from v0_scheduler import BLOCK_SIZE, enter_wheel  # noqa: E402
from v1_scheduler import line_fit, provenance, write_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TAIWANIA_CONFIG = ROOT / "data/taiwania/qwen2.5-72b-instruct-gptq-int4/config.json"
DECODE_BATCHES = (1, 2, 4, 8, 16, 32, 64)
PREFILL_BATCHES = (1, 2, 3, 4)
MAX_MODEL_LEN = 2048  # the Taiwania runs' --max-model-len; also max_num_batched_tokens (chunked prefill off)


def install_stand_ins() -> None:
    """Modules that vLLM imports but input preparation never calls (see the module docstring)."""
    os.environ["VLLM_ATTENTION_BACKEND"] = "XFORMERS"
    xformers = types.ModuleType("xformers")
    xformers.ops = types.ModuleType("xformers.ops")
    xformers.ops.fmha = types.ModuleType("xformers.ops.fmha")
    attn_bias = xformers.ops.fmha.attn_bias = types.ModuleType("xformers.ops.fmha.attn_bias")
    for name in ("AttentionBias", "BlockDiagonalCausalMask", "BlockDiagonalMask", "LowerTriangularMaskWithTensorBias"):
        setattr(attn_bias, name, type(name, (), {}))
    sys.modules.update({"xformers": xformers, "xformers.ops": xformers.ops, "xformers.ops.fmha": xformers.ops.fmha,
                        "xformers.ops.fmha.attn_bias": attn_bias, "vllm._C": types.ModuleType("vllm._C"),
                        "triton": None})
    import vllm.platforms
    from vllm.platforms.cuda import NonNvmlCudaPlatform

    platform = NonNvmlCudaPlatform()
    platform.is_pin_memory_available = lambda: False  # no CUDA allocator to pin host memory with here
    vllm.platforms._current_platform = platform


def make_runner(model_dir: Path):
    from vllm.config import CacheConfig, DeviceConfig, ModelConfig, ParallelConfig, SchedulerConfig, VllmConfig
    from vllm.worker.model_runner import ModelRunner

    model = ModelConfig(model=str(model_dir), task="generate", tokenizer=str(model_dir), tokenizer_mode="auto",
                        trust_remote_code=False, dtype="float16", seed=0, max_model_len=MAX_MODEL_LEN)
    cache = CacheConfig(block_size=BLOCK_SIZE, gpu_memory_utilization=0.9, swap_space=0, cache_dtype="auto")
    scheduler = SchedulerConfig(runner_type="generate", max_num_batched_tokens=MAX_MODEL_LEN, max_num_seqs=256,
                                max_model_len=MAX_MODEL_LEN)
    parallel = ParallelConfig(pipeline_parallel_size=2, tensor_parallel_size=8, distributed_executor_backend="mp")
    config = VllmConfig(model_config=model, cache_config=cache, parallel_config=parallel, scheduler_config=scheduler,
                        device_config=DeviceConfig("cpu"))
    return ModelRunner(config, kv_cache_dtype="auto", is_driver_worker=True)


def sampled(seq_id: int, logprob: float = 0.0):
    """One sampled token of a sequence (its id picked from the sequence's), as the sampler hands it on."""
    from vllm.sequence import CompletionSequenceGroupOutput, Logprob, SequenceOutput

    token = 1000 + seq_id % 7
    return CompletionSequenceGroupOutput([SequenceOutput(seq_id, token, {token: Logprob(logprob)})], None)


def running_scheduler(num_seqs: int, prompt_len: int, max_tokens: int, scheduler_config, cache_config):
    """vLLM 0.7.0's Scheduler holding ``num_seqs`` requests of ``prompt_len``-token prompts with the sampling
    parameters of an OpenAI completion request (ignore_eos), and the output processor that appends their tokens."""
    from vllm.core.scheduler import Scheduler
    from vllm.engine.output_processor.single_step import SingleStepOutputProcessor
    from vllm.engine.output_processor.stop_checker import StopChecker
    from vllm.entrypoints.openai.protocol import CompletionRequest
    from vllm.inputs import token_inputs
    from vllm.sequence import Sequence, SequenceGroup
    from vllm.utils import Counter

    scheduler = Scheduler(scheduler_config, cache_config, None)
    processor = SingleStepOutputProcessor(scheduler_config, None, [scheduler], Counter(),
                                          StopChecker(MAX_MODEL_LEN, lambda seq: None))
    params = CompletionRequest(model="m", prompt="x", max_tokens=max_tokens, ignore_eos=True).to_sampling_params(
        max_tokens, None, {})
    for i in range(num_seqs):
        seq = Sequence(i, token_inputs([(i * 31 + j) % 30000 for j in range(prompt_len)]), BLOCK_SIZE)
        scheduler.add_seq_group(SequenceGroup(request_id=str(i), seqs=[seq], arrival_time=time.time(),
                                              sampling_params=params))
    return scheduler, processor


def apply_samples(processor, metadata, outputs, logprob: float = 0.0) -> None:
    """What the engine does with a step's samples: count the computed tokens, append each sampled token."""
    for meta, scheduled in zip(metadata, outputs.scheduled_seq_groups):
        group = scheduled.seq_group
        group.update_num_computed_tokens(meta.token_chunk_size or 0)
        if meta.do_sample:
            processor.process_outputs(group, [sampled(group.seqs[0].seq_id, logprob)], False)


def scheduled_batch(num_seqs: int, prompt_len: int, want_decode: bool, scheduler_config, cache_config):
    """The seq_group_metadata_list that vLLM 0.7.0's Scheduler.schedule() hands the runner: the first prefill step,
    or the first decode step with all ``num_seqs`` running (sampled tokens appended as the output processor does)."""
    from copy import copy

    cache = copy(cache_config)
    cache.num_gpu_blocks = num_seqs * (prompt_len + 64) // BLOCK_SIZE + 64
    cache.num_cpu_blocks = 0
    scheduler, processor = running_scheduler(num_seqs, prompt_len, 128, copy(scheduler_config), cache)
    for _ in range(num_seqs + 8):
        metadata, outputs, _ = scheduler.schedule()
        decode = outputs.num_prefill_groups == 0
        if decode == want_decode and (not decode or len(metadata) == num_seqs):
            return metadata
        apply_samples(processor, metadata, outputs)
    raise RuntimeError(f"no {'decode' if want_decode else 'prefill'} step of {num_seqs} sequences")


def stats(timings: list[float]) -> dict:
    ordered = sorted(timings)
    return {"repetitions": len(ordered), "median_s": statistics.median(ordered),
            "p10_s": ordered[len(ordered) // 10], "p90_s": ordered[9 * len(ordered) // 10]}


def time_parts(runner, metadata, repetitions: int) -> dict[str, dict]:
    import torch

    from vllm.model_executor.sampling_metadata import SamplingMetadata, SamplingTensors

    vocab_size = runner.model_config.get_vocab_size()
    timings: dict[str, list[float]] = {"model_input": [], "sampling_metadata": [], "sampling_tensors": []}
    for _ in range(repetitions + 5):
        t0 = time.perf_counter()
        model_input = runner._prepare_model_input_tensors(metadata, [])
        t1 = time.perf_counter()
        sampling = SamplingMetadata.prepare(metadata, model_input.seq_lens, model_input.query_lens, runner.device,
                                            runner.pin_memory, runner.get_generators([]),
                                            runner.sampling_metadata_cache)
        t2 = time.perf_counter()
        SamplingTensors.from_sampling_metadata(sampling, vocab_size, torch.device(runner.device), torch.float16)
        t3 = time.perf_counter()
        for part, dt in zip(timings, (t1 - t0, t2 - t1, t3 - t2)):
            timings[part].append(dt)
    return {part: stats(values[5:]) for part, values in timings.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vllm070", type=Path, required=True, help="vllm 0.7.0 wheel installed with --target here")
    parser.add_argument("--deps", type=Path, required=True, help="gguf and nvidia-ml-py installed with --target here")
    parser.add_argument("--repetitions", type=int, default=300)
    parser.add_argument("--prompt-len", type=int, default=498)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.deps))
    enter_wheel(args.vllm070)
    install_stand_ins()
    from vllm.version import __version__

    config = json.loads(TAIWANIA_CONFIG.read_text())
    config.pop("quantization_config", None)
    model_dir = Path(tempfile.mkdtemp(prefix="v0-model-input-"))
    (model_dir / "config.json").write_text(json.dumps(config))
    runner = make_runner(model_dir)
    scheduler_config, cache_config = runner.scheduler_config, runner.cache_config

    prov = {**provenance(__version__), "vllm_source": "wheel vllm-0.7.0-cp38-abi3-manylinux1_x86_64.whl, --no-deps",
            "attention_backend": runner.attn_backend.get_name(), "device": "cpu", "pin_memory": False,
            "model_config": str(TAIWANIA_CONFIG.relative_to(ROOT)) + " without quantization_config",
            "prompt_len": args.prompt_len}
    rows = []
    for what, batches in (("decode", DECODE_BATCHES), ("prefill", PREFILL_BATCHES)):
        for n in batches:
            metadata = scheduled_batch(n, args.prompt_len, what == "decode", scheduler_config, cache_config)
            for part, row in time_parts(runner, metadata, args.repetitions).items():
                rows.append({"anchor": f"v0_{part}", "step": what, "num_seqs": n, **row, **prov})
                print(f"{part:18s} {what:7s} {n:3d} seqs: {1e6 * row['median_s']:8.1f} us (p10 "
                      f"{1e6 * row['p10_s']:.1f}, p90 {1e6 * row['p90_s']:.1f})", flush=True)
    for part in ("model_input", "sampling_metadata", "sampling_tensors"):
        for what in ("decode", "prefill"):
            sel = [{**r, "num_running": r["num_seqs"]} for r in rows if r["anchor"] == f"v0_{part}"
                   and r["step"] == what]
            fit = {key: line_fit(sel, key) for key in ("p10_s", "median_s", "p90_s")}
            rows.append({"anchor": f"v0_{part}_fit", "step": what, "per_step_s": fit["p10_s"][0],
                         "per_seq_s": fit["p10_s"][1], "statistic": "p10",
                         **{f"{k}_from_{s[:-2]}": fit[s][i] for s in ("median_s", "p90_s")
                            for i, k in enumerate(("per_step_s", "per_seq_s"))}, **prov})
            print(f"fit {part} {what}: {1e6 * fit['p10_s'][0]:.1f} us per step + {1e6 * fit['p10_s'][1]:.2f} us "
                  f"per sequence (p10); medians {1e6 * fit['median_s'][0]:.1f} + {1e6 * fit['median_s'][1]:.2f}")
    write_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
