#!/usr/bin/env bash
# Run the H200 calibration sweeps on a lent 4-GPU H200 machine, one engine per GPU where the layout allows.
#   bash benchmarks/device/h200_sweep.sh single|multi-a|multi-b|holdout [DEADLINE_S]
# Needs vLLM 0.26 unpacked in /tmp/site (../shared/vllm_device/). Results accumulate in /tmp/runs/h200 on the
# machine (append-only JSON lines; a re-run skips finished runs), and are packed into $OUT/<phase>.tgz with
# every vLLM log when the phase ends or its deadline passes.
set -u
phase=${1:?single|multi-a|multi-b|holdout}
deadline=${2:-530}
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
  VLLM_USE_FLASHINFER_SAMPLER=0 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \
  PYTHONUNBUFFERED=1
runs=/tmp/runs/h200
mkdir -p "$runs" "${OUT:-/tmp/out}"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader

# lane GPUS SWEEP RESULTS PATTERN...: run the sweep's runs matching each pattern, in order, on GPUS.
lane() {
  local gpus=$1 sweep=$2 results=$3; shift 3
  for pattern in "$@"; do
    CUDA_VISIBLE_DEVICES=$gpus python3 -m perfmodel.cli calibrate run "sweeps/$sweep.yaml" --results "$runs/$results.jsonl" \
      --only "$pattern" --engine-timeout 420
  done
}

run_phase() {
  case $phase in
    single)
      lane 0 h200-single single-gpu0 "llama-3.1-8b *" "qwen2.5-32b *" &
      lane 1 h200-single single-gpu1 "qwen2.5-7b *" "gemma-2-27b *" &
      lane 2 h200-single single-gpu2 "qwen2.5-14b *" "gemma-2-9b *" &
      lane 3 h200-online online-gpu3 "*" &
      wait ;;
    multi-a)
      lane 0,1,2,3 h200-multi multi-4gpu "gpus4-llama-3.1-70b-tp4pp1-*"
      lane 0,1 h200-multi multi-2gpu-a "gpus2-llama-3.1-8b-*" &
      lane 2,3 h200-multi multi-2gpu-b "gpus2-qwen2.5-*" &
      wait ;;
    holdout)
      lane 0 h200-holdout holdout "*" ;;
    multi-b)
      lane 0,1,2,3 h200-multi multi-4gpu "gpus4-llama-3.1-70b-tp2pp2-*" "gpus4-llama-3.1-70b-tp1pp4-*" ;;
    *) echo "unknown phase $phase" >&2; return 2 ;;
  esac
}

export -f lane run_phase
export phase runs
timeout --signal=TERM "$deadline" bash -c run_phase
echo "phase $phase ended with $?"
for f in "$runs"/*.jsonl; do echo "$f: $(grep -c '"status": "ok"' "$f") ok, $(grep -c '"status": "error"' "$f") errors"; done
tar -czf "${OUT:-/tmp/out}/$phase.tgz" -C /tmp/runs h200
ls -la "${OUT:-/tmp/out}"
