#!/usr/bin/env bash
# Regenerate the interval model of both shipped profiles and the coverage report (issue 13), one command:
#   scripts/intervals.sh            (about 10 minutes on 2 cores: H200 k-fold, leave-one-model-out and model
#                                    transfer, then Taiwania k-fold)
# Writes the `uncertainty:` sections of perfmodel/profiles/{h200-sxm,v100-sxm2-32gb}.yaml (coefficients untouched),
# docs/intervals-runs-*.csv and docs/intervals.md. Run it again after any refit of either profile.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
H200="data/h200/multi-2gpu-a.jsonl data/h200/multi-2gpu-b.jsonl data/h200/multi-4gpu.jsonl data/h200/online-gpu3.jsonl
      data/h200/single-gpu0.jsonl data/h200/single-gpu1.jsonl data/h200/single-gpu2.jsonl data/h200-holdout/results.jsonl
      data/h200-sweep2/bf16-offline.jsonl data/h200-holdout3/results.jsonl
      data/h200-sweep2/quantized-offline.jsonl"
H200_CSV=$(echo $H200 | tr ' ' ',')
$PY -m perfmodel.cli calibrate uncertainty $H200 --hardware h200-sxm --profile perfmodel/profiles/h200-sxm.yaml \
    --anchors data/anchors/h200-sxm.yaml --model-transfer \
    --transfer taiwania2-v100=taiwania2:data/taiwania/results.jsonl --transfer cpu=cpu-host:data/cpu/results.jsonl \
    --runs-csv docs/intervals-runs-h200-sxm.csv
# The Taiwania runs are of one model: the V100's intervals of other models borrow the H200's measured model
# transfer (written just above), pooled with its own k-fold residuals
$PY -m perfmodel.cli calibrate uncertainty data/taiwania/results.jsonl --hardware taiwania2 \
    --profile perfmodel/profiles/v100-sxm2-32gb.yaml --anchors data/anchors/v100-sxm2-32gb.yaml \
    --model-transfer-from perfmodel/profiles/h200-sxm.yaml --transfer "h200=h200-sxm:$H200_CSV" \
    --runs-csv docs/intervals-runs-v100-sxm2-32gb.csv
$PY scripts/intervals_report.py --out docs/intervals.md --notes docs/intervals-notes.md docs/intervals-runs-h200-sxm.csv docs/intervals-runs-v100-sxm2-32gb.csv
