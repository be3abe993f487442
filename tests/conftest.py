"""Project-wide test settings.

Hypothesis runs the same examples every time (derandomized, no example database, no wall-clock deadline), so a
test's result depends only on the code and hypothesis's version.

Tests marked `vllm` drive a real vLLM engine: skipped where vLLM cannot be imported, failed under CI.
CI (`.ci/run`, environment CI=true) installs vLLM's CPU build on purpose, so a vLLM that is missing or does
not import there is a broken install, and the real-engine tests must fail rather than skip quietly.
Whether vLLM imports is checked once, in a child interpreter (importing it pulls in torch, ~10 s, and
must not change this process), and only when a `vllm`-marked test is about to run.
"""
import functools
import os
import subprocess
import sys

import pytest
from hypothesis import settings

settings.register_profile("perfmodel", derandomize=True, database=None, deadline=None)
settings.load_profile("perfmodel")


def running_under_ci() -> bool:
    """CI=true (or any value but empty/0/false) marks a CI run, as GitHub Actions and GitLab set it."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@functools.cache
def vllm_import_problem() -> str | None:
    """None when `import vllm` works in this interpreter, else the last line of its error."""
    try:
        proc = subprocess.run([sys.executable, "-c", "import vllm"], capture_output=True, text=True,
                              timeout=600)
    except subprocess.TimeoutExpired:
        return "`import vllm` took over 600 s"
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"`import vllm` exited with status {proc.returncode}"


def pytest_runtest_setup(item):
    if item.get_closest_marker("vllm") is None or running_under_ci():
        return
    problem = vllm_import_problem()
    if problem is not None:
        pytest.skip(f"vllm cannot be imported ({problem}); install with: bash scripts/install.sh --test")


def pytest_runtest_call(item):
    if item.get_closest_marker("vllm") is None or not running_under_ci():
        return
    problem = vllm_import_problem()
    if problem is not None:
        pytest.fail(f"CI=true but vllm cannot be imported ({problem}): the install is broken", pytrace=False)
