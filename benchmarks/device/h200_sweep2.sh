#!/usr/bin/env bash
# H200 sweep 2 (issue 14) on one lent H200:  bash benchmarks/device/h200_sweep2.sh DEADLINE_S SWEEP#N...
# Needs vLLM 0.26 unpacked in /tmp/site (../shared/vllm_device/). Results accumulate in /tmp/runs/sweep2 on the
# machine (a re-run skips finished runs; on a fresh machine, results carried in resume/*.jsonl are copied in
# first); see benchmarks/device/h200_sweep2.py for the engine order and the deadline.
set -u
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
  VLLM_USE_FLASHINFER_SAMPLER=0 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \
  PYTHONUNBUFFERED=1
runs=${RUNS_DIR:-/tmp/runs/sweep2}  # another sweep: RUNS_DIR=... and --results "$RUNS_DIR" --predictions FILE
mkdir -p "$runs" "${OUT:-/tmp/out}"
for f in resume/*.jsonl; do [ -f "$f" ] && [ ! -f "$runs/$(basename "$f")" ] && cp "$f" "$runs/"; done
nvidia-smi --query-gpu=index,name,memory.total,memory.used,driver_version,clocks.sm,clocks.mem --format=csv,noheader
date -u +%FT%TZ
python3 benchmarks/device/h200_sweep2.py "$@"
date -u +%FT%TZ
