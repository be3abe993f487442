#!/usr/bin/env bash
# Blind predictions for the seed H100 PCIe offline table (a GPU never calibrated, an older vLLM): six models at
# 100 input / 600 output tokens, 300 prompts, offline, one H100 PCIe, with vLLM 0.7's V0 engine and with 0.26's V1.
# One JSON line per model and release: the exact command and its output. Run from the repository root.
set -euo pipefail
out=${1:-data/h100-pcie-blind/predictions.jsonl}
perfmodel=${PERFMODEL:-.venv/bin/perfmodel}
: > "$out.tmp"
for model in gemma-2-9b gemma-2-27b deepseek-r1-distill-llama-8b deepseek-r1-distill-qwen-7b \
             deepseek-r1-distill-qwen-14b deepseek-r1-distill-qwen-32b; do
  for version in 0.7.0 0.26; do
    cmd="perfmodel predict --hardware h100-pcie --model $model --gpus 1 --input-len 100 --output-len 600 --num-prompts 300 --vllm-version $version --format json"
    output=$($perfmodel ${cmd#perfmodel })
    python3 -c 'import json,sys; print(json.dumps({"command": sys.argv[1], "output": json.loads(sys.argv[2])}, sort_keys=True))' \
      "$cmd" "$output" >> "$out.tmp"
  done
done
mv "$out.tmp" "$out"
echo "wrote $out"
