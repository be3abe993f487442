"""Checks every generated multi-node job script must pass (calibrate slurm and predict --emit-sbatch)."""

import re


def directive(text: str, name: str) -> str:
    return re.search(rf"^#SBATCH --{name}=(.*)$", text, re.M).group(1)


def assert_multi_node_recipe(text: str) -> None:
    """vLLM's multi-node recipe, hardened (issue 12): per-node VLLM_HOST_IP from a chosen interface, CPU requests,
    wait on `ray status` rather than a fixed sleep, quoted --output, `set -u` only after `module load`."""
    assert "hostname --ip-address" not in text and "sleep 15" not in text
    assert 'PERFMODEL_NET_IF="${PERFMODEL_NET_IF:-ib0}"' in text  # taiwania2's fabric is InfiniBand
    assert 'ip -o -4 addr show dev "$PERFMODEL_NET_IF"' in text
    assert text.count("export VLLM_HOST_IP=") == 2  # the head's, and each worker's own inside its srun
    assert 'VLLM_HOST_IP="$ip"' in text and '--node-ip-address="$ip"' in text
    assert int(directive(text, "cpus-per-task")) >= 1 and text.count('--num-cpus="$SLURM_CPUS_PER_TASK"') == 2
    assert re.search(r'^#SBATCH --output=".+"$', text, re.M)
    lines = text.splitlines()
    set_u = lines.index(next(line for line in lines if line.startswith("set -u")))
    assert all(i < set_u for i, line in enumerate(lines) if line.startswith(("module load", "source ")))
    assert "set -euo" not in text
