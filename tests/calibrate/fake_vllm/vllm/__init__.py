"""Fake vLLM for the worker subprocess in tests (see ../README.md): the subset calibrate.run.worker_offline uses.

It logs the two KV-cache lines a real engine logs (calibrate.run.provenance.parse_engine_log reads them) and exposes
the config objects calibrate.run.worker_offline.engine_facts reads.
"""
import os
import sys
import time
from types import SimpleNamespace

__version__ = "0.0.0+fake"
TOKEN_ID = 3


class SamplingParams(SimpleNamespace):
    pass


class LLM:
    def __init__(self, **kwargs):
        crash = os.environ.get("FAKE_VLLM_CRASH_SEQS")
        if crash and kwargs.get("max_num_seqs") == int(crash):
            print("RuntimeError: fake out of memory", file=sys.stderr, flush=True)
            os._exit(3)
        self.kwargs = kwargs
        print("INFO fake [kv_cache_utils.py] GPU KV cache size: 4,096 tokens", file=sys.stderr, flush=True)
        print("INFO fake Available KV cache memory: 0.5 GiB", file=sys.stderr, flush=True)
        self.llm_engine = SimpleNamespace(vllm_config=SimpleNamespace(
            cache_config=SimpleNamespace(num_gpu_blocks=256, block_size=16, enable_prefix_caching=True),
            scheduler_config=SimpleNamespace(max_num_batched_tokens=kwargs.get("max_num_batched_tokens", 8192),
                                             max_num_seqs=kwargs.get("max_num_seqs", 256),
                                             chunked_prefill_enabled=True),
            model_config=SimpleNamespace(enforce_eager=kwargs.get("enforce_eager", False),
                                         max_model_len=kwargs.get("max_model_len", 2048),
                                         get_vocab_size=lambda: 1000)))

    def generate(self, prompts, params, use_tqdm=False):
        time.sleep(float(os.environ.get("FAKE_VLLM_DELAY_S", "0.01")))
        plist = params if isinstance(params, list) else [params] * len(prompts)
        return [SimpleNamespace(prompt_token_ids=p["prompt_token_ids"],
                                outputs=[SimpleNamespace(token_ids=[TOKEN_ID] * sp.max_tokens)])
                for p, sp in zip(prompts, plist)]
