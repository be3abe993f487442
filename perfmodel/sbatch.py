"""SLURM job-script text shared by ``perfmodel predict --emit-sbatch`` (a ``vllm serve`` job) and ``calibrate
slurm`` (calibration runs): the ``#SBATCH`` header, the environment, and the Ray cluster of a multi-node job.

The Ray block follows vLLM's multi-node recipe (vLLM docs "Distributed inference and serving", running
``ray start --head`` on one node and ``ray start --address`` on the others, with ``VLLM_HOST_IP`` set on every
node to that node's address; vLLM 0.7.0 vllm/envs.py reads ``VLLM_HOST_IP``, vllm/utils.py get_ip prefers it):

- every node's address is the IPv4 address of one chosen network interface (``PERFMODEL_NET_IF``, default the
  cluster's fabric: ``ib0`` for InfiniBand), not ``hostname --ip-address``, which can name another interface;
  ``GLOO_SOCKET_IFNAME`` and ``NCCL_SOCKET_IFNAME`` name the same interface;
- each node's Ray gets the job's CPUs (``#SBATCH --cpus-per-task``, ``ray start --num-cpus``);
- the job waits until ``ray status`` counts every GPU of the job (at most ``RAY_WAIT_S``), not a fixed sleep;
- ``set -u`` comes after ``module load`` and the environment setup (module scripts read unset variables).

Text only: nothing here writes files or imports SLURM.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

RAY_PORT = 6379
RAY_WAIT_S = 300
RAY_POLL_S = 5
CPUS_PER_GPU = 4  # default CPU request per GPU: Ray's raylet plus one vLLM worker process per GPU
JOB_ENV = {"VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """What the ``#SBATCH`` header and the environment of one job say.

    ``account``/``partition`` None: the user's SLURM defaults (the line is left out). ``output`` is the log path
    pattern (``%x`` job name, ``%j`` job id). ``env_setup`` is pasted after ``module load`` (e.g. activating a venv).
    """

    name: str
    nodes: int
    gpus_per_node: int
    cpus_per_task: int
    time_s: float
    output: str
    account: str | None = None
    partition: str | None = None
    modules: tuple[str, ...] = ()
    env_setup: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    extra_directives: tuple[str, ...] = ()  # e.g. ("--array=0-3",)
    comment: str = ""

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.gpus_per_node < 1 or self.cpus_per_task < 1:
            raise ValueError("a job needs at least one node, one GPU and one CPU per node")
        if self.time_s <= 0:
            raise ValueError(f"time limit must be > 0 s, got {self.time_s:g}")


def has_slurm_limits(cluster) -> bool:
    """A batch cluster states its SLURM limits; a bare GPU name (one node, e.g. h200-sxm) has none."""
    limits = (getattr(cluster, "max_nodes_per_job", None), getattr(cluster, "max_job_time_s", None))
    return any(limit is not None for limit in limits)


def hms(seconds: float) -> str:
    """SLURM's ``--time`` format, rounded up to the second: 3600 -> ``01:00:00``."""
    s = int(math.ceil(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def default_cpus_per_task(gpus_per_node: int) -> int:
    return CPUS_PER_GPU * gpus_per_node


def default_network_interface(cluster) -> str:
    """The interface the nodes reach each other on: ``ib0`` over InfiniBand, else ``eth0``."""
    link = getattr(cluster, "inter_node_link", None)
    return "ib0" if link is not None and str(link.name).lower().startswith("ib") else "eth0"


def job_header(job: JobSpec) -> str:
    """``#!/bin/bash``, the directives, ``module load``, the setup, ``set -u``, the job's environment."""
    directives = [f"--job-name={job.name}"]
    directives += [f"--account={job.account}"] if job.account else []
    directives += [f"--partition={job.partition}"] if job.partition else []
    directives += [f"--nodes={job.nodes}", "--ntasks-per-node=1", f"--cpus-per-task={job.cpus_per_task}",
                   f"--gres=gpu:{job.gpus_per_node}", f"--time={hms(job.time_s)}",
                   f"--output={_dq(job.output)}", *job.extra_directives]
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives)]
    lines += [f"# {line}" for line in job.comment.splitlines()]
    lines.append("set -eo pipefail")
    lines += [f"module load {shlex.quote(m)}" for m in job.modules]
    if job.env_setup.strip():
        lines.append(job.env_setup.rstrip())
    lines.append("set -u  # only now: module scripts and venv activation read unset variables")
    lines += [f"export {k}={shlex.quote(str(v))}" for k, v in {**JOB_ENV, **job.env}.items()]
    return "\n".join(lines) + "\n"


def ray_block(*, gpus_per_node: int, total_gpus: int | str, network_interface: str) -> str:
    """Bash that starts Ray over the job's nodes and returns once it holds ``total_gpus`` GPUs.

    Runs in the batch script, i.e. on the job's first node: the head starts there (daemonised, stopped on
    exit), one worker per other node through ``srun -w NODE`` (blocking, in the background). ``total_gpus``
    may be a bash expression (a job array's per-task count). Afterwards ``RAY_ADDRESS`` and ``VLLM_HOST_IP``
    (the head's address) are exported for the vLLM process started next on this node.
    """
    want = total_gpus if isinstance(total_gpus, str) else str(int(total_gpus))
    iface = shlex.quote(network_interface)
    worker = ('ip=$(iface_ip); export VLLM_HOST_IP="$ip"; exec ray start --address="$RAY_ADDRESS" '
              f'--node-ip-address="$ip" --num-cpus="$SLURM_CPUS_PER_TASK" --num-gpus={gpus_per_node} --block')
    return f"""
# Ray over the job's nodes (vLLM's multi-node recipe): head on this node, one worker per other node; every node
# announces its own address on PERFMODEL_NET_IF as VLLM_HOST_IP (override the interface when submitting).
export PERFMODEL_NET_IF="${{PERFMODEL_NET_IF:-{iface}}}"
export GLOO_SOCKET_IFNAME="$PERFMODEL_NET_IF" NCCL_SOCKET_IFNAME="$PERFMODEL_NET_IF"
iface_ip() {{ ip -o -4 addr show dev "$PERFMODEL_NET_IF" 2>/dev/null | awk '{{print $4}}' | cut -d/ -f1 | head -n 1; }}
export -f iface_ip
nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
head_ip=$(iface_ip)
if [ -z "$head_ip" ]; then
    echo "no IPv4 address on interface $PERFMODEL_NET_IF of $(hostname); set PERFMODEL_NET_IF (see: ip -o -4 addr)" >&2
    exit 1
fi
export VLLM_HOST_IP="$head_ip" RAY_ADDRESS="$head_ip:{RAY_PORT}"
cleanup() {{ ray stop --force >/dev/null 2>&1 || true; kill $(jobs -p) >/dev/null 2>&1 || true; }}
trap cleanup EXIT
ray start --head --node-ip-address="$head_ip" --port={RAY_PORT} --num-cpus="$SLURM_CPUS_PER_TASK" \\
    --num-gpus={gpus_per_node}
for node in "${{nodes[@]:1}}"; do
    srun --nodes=1 --ntasks=1 -w "$node" bash -c {shlex.quote(worker)} &
done
# wait until Ray holds all {want} GPUs of the job (at most {RAY_WAIT_S} s)
ray_gpus=0
for _ in $(seq 1 {RAY_WAIT_S // RAY_POLL_S}); do
    ray_gpus=$(ray status 2>/dev/null | grep -oE '[0-9.]+/[0-9.]+ GPU' | head -n 1 \\
        | sed -E 's#^[0-9.]+/([0-9.]+) GPU#\\1#' || true)
    ray_gpus=${{ray_gpus%.*}}
    if [ -n "$ray_gpus" ] && [ "$ray_gpus" -ge {want} ]; then break; fi
    sleep {RAY_POLL_S}
done
if [ -z "$ray_gpus" ] || [ "$ray_gpus" -lt {want} ]; then
    echo "Ray cluster has ${{ray_gpus:-0}} of {want} GPUs after {RAY_WAIT_S} s" >&2
    exit 1
fi
"""


def _dq(text: str) -> str:
    """Double-quoted for an ``#SBATCH`` line (sbatch strips the quotes; spaces in paths survive)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def shell_join(words: Sequence[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)
