"""Where and with what a measurement was made: versions, devices, host, date, and the engine's own log lines."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import socket
import subprocess
import sys
from typing import Any

from hardware.spec import GIB

# vLLM logs e.g. "GPU KV cache size: 1,234,560 tokens" (CPU backend: "CPU KV cache size: ...").
_KV_TOKENS = re.compile(r"\b(?:GPU|CPU|XPU|TPU)?\s*KV cache size:\s*([\d,]+)\s*tokens")
_KV_MEMORY = re.compile(r"Available KV cache memory:\s*([\d.]+)\s*GiB")
_CPU_KV = re.compile(r"Auto set \(([\d.]+)/[\d.]+\) GiB for KV cache")
_MAX_CONC = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request:\s*([\d.]+)x")
_GPU_BLOCKS = re.compile(r"# (?:GPU|CUDA) blocks:\s*(\d+)")  # vLLM V0 (0.7)
_BATCHED = re.compile(r"max_num_batched_tokens=(\d+)")
_SEQ_LEN = re.compile(r"max_seq_len=(\d+)")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def parse_engine_log(text: str) -> dict[str, Any]:
    """KV-cache facts from vLLM's log (the last occurrence of each line counts)."""
    out: dict[str, Any] = {"kv_cache_tokens_log": None, "kv_cache_memory_bytes_log": None,
                           "max_concurrency_log": None, "num_gpu_blocks_log": None,
                           "max_num_batched_tokens_log": None, "max_model_len_log": None}
    if m := _last(_KV_TOKENS, text):
        out["kv_cache_tokens_log"] = int(m.group(1).replace(",", ""))
    if m := _last(_KV_MEMORY, text) or _last(_CPU_KV, text):
        out["kv_cache_memory_bytes_log"] = int(float(m.group(1)) * GIB)
    if m := _last(_MAX_CONC, text):
        out["max_concurrency_log"] = float(m.group(2))
    if m := _last(_GPU_BLOCKS, text):
        out["num_gpu_blocks_log"] = int(m.group(1))
    if m := _last(_BATCHED, text):
        out["max_num_batched_tokens_log"] = int(m.group(1))
    if m := _last(_SEQ_LEN, text):
        out["max_model_len_log"] = int(m.group(1))
    return out


def _last(pattern: re.Pattern, text: str):
    m = None
    for m in pattern.finditer(text):
        pass
    return m


def environment() -> dict[str, Any]:
    """Versions and devices seen by this process (imports torch and vLLM if present)."""
    env: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "date_utc": utc_now(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "vllm_version": _version("vllm"),
        "torch_version": None, "cuda_version": None, "driver_version": None,
        "gpu_name": None, "gpu_count": 0, "gpu_memory_bytes": None,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        env["torch_version"] = torch.__version__
        env["cuda_version"] = torch.version.cuda
        if torch.cuda.is_available():
            env["gpu_count"] = torch.cuda.device_count()
            props = torch.cuda.get_device_properties(0)
            env["gpu_name"] = props.name
            env["gpu_memory_bytes"] = int(props.total_memory)
    except Exception:  # noqa: BLE001 - provenance is best effort
        pass
    smi = nvidia_smi()
    if smi:
        env["driver_version"] = smi[0]["driver_version"]
        env["gpu_name"] = env["gpu_name"] or smi[0]["name"]
        env["nvidia_smi_gpus"] = smi
    if env["gpu_name"] is None:
        env["gpu_name"] = f"cpu:{platform.processor() or platform.machine()}"
    return env


def nvidia_smi() -> list[dict[str, str]]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    rows = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            rows.append(dict(zip(("index", "name", "driver_version", "memory_total"), parts)))
    return rows


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001
        return None
    return getattr(mod, "__version__", None)


def command_line() -> str:
    return " ".join([sys.executable, *sys.argv])
