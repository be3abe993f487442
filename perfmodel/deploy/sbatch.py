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

A job script is code, so every value a user gives is checked against the rules below (``*_problem``: None or
one line) and written shell-quoted; ``env_setup`` is the one value that is shell by intent and must parse.
``checked_script`` runs ``bash -n`` on the finished text. Text only: nothing here writes files or imports SLURM.
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
import subprocess
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
        if not (math.isfinite(self.time_s) and 0 < self.time_s <= MAX_TIME_S):
            raise ValueError(f"time limit must be in (0, {MAX_TIME_S:g}] s, got {self.time_s:g}")
        problems = [slurm_name_problem(self.name, "job name"), script_path_problem(self.output, "log path"),
                    env_setup_problem(self.env_setup)]
        problems += [slurm_name_problem(v, k) for k, v in (("account", self.account), ("partition", self.partition))
                     if v is not None]
        problems += [module_name_problem(m) for m in self.modules]
        problems += [f"environment variable name {k!r} is not a shell name" for k in self.env
                     if not _ENV_NAME.fullmatch(k)]
        problem = next((p for p in problems if p), None)
        if problem:
            raise ValueError(problem)


# -- the rules for values written into a job script -------------------------------------------------------------
MAX_TIME_S = 1e8  # ~3 years: far above any cluster's limit, and hms() stays a short string
# account and partition: SLURM prints and parses them as bare words in #SBATCH lines, scontrol and sacctmgr
# output; names made of letters, digits, '_', '-' and '.' are what every site uses (sacctmgr lowercases accounts).
_SLURM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
# Linux net/core/dev.c dev_valid_name: 1-15 bytes (IFNAMSIZ 16 with the NUL), not '.' or '..', no '/', ':' or
# space; we also keep to the characters interface names use (ib0, enp1s0f0, ib0.8001, bond0), so nothing needs
# shell quoting.
_INTERFACE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_MODULE = re.compile(r"[A-Za-z0-9_.+/@:,=-]{1,200}")  # Lmod/Environment Modules names: cuda/12.1, gcc@11.2
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def slurm_name_problem(text: str, what: str = "SLURM name") -> str | None:
    if _SLURM_NAME.fullmatch(text):
        return None
    return (f"{what} must be 1-64 letters, digits, '_', '-' or '.' (SLURM account/partition names), "
            f"got {_shown(text)}")


def interface_name_problem(text: str) -> str | None:
    if _INTERFACE.fullmatch(text) and text not in (".", ".."):
        return None
    return f"a network interface name is 1-15 letters, digits, '_', '-' or '.' (e.g. ib0, eth0), got {_shown(text)}"


def module_name_problem(text: str) -> str | None:
    if _MODULE.fullmatch(text):
        return None
    return f"a module name is 1-200 letters, digits or _.+/@:,=- (e.g. cuda/12.1), got {_shown(text)}"


def script_path_problem(text: str, what: str = "path") -> str | None:
    """A path or program written into a script (quoted there): not empty, no control characters (a newline
    would end an ``#SBATCH`` line and start a new one)."""
    if not text:
        return f"{what} is empty"
    if any(not c.isprintable() for c in text):
        return f"{what} has a control character (newline, tab, ...): {_shown(text)}"
    return None


def env_setup_problem(text: str) -> str | None:
    """``env_setup`` is shell by intent (e.g. ``source venv/bin/activate``): it must parse on its own."""
    if "\x00" in text:
        return "--env-setup has a NUL byte"
    return _bash_syntax_problem(text, "--env-setup") if text.strip() else None


def _bash_syntax_problem(text: str, what: str) -> str | None:
    bash = shutil.which("bash")
    if bash is None:  # nowhere to check: the written script is still quoted
        return None
    done = subprocess.run([bash, "-n"], input=text.encode(), capture_output=True, timeout=30)
    if done.returncode == 0:
        return None
    first = next((line for line in done.stderr.decode(errors="replace").splitlines() if line.strip()), "")
    return f"{what} is not valid bash: {re.sub(r'^.*?bash: ', '', first)[:160]}"


def checked_script(text: str) -> str:
    """``text`` when ``bash -n`` accepts it; ValueError otherwise (a writer's bug, never the user's script)."""
    problem = _bash_syntax_problem(text, "the job script")
    if problem:
        raise ValueError(problem)
    return text


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
    problem = interface_name_problem(network_interface)
    if problem:
        raise ValueError(problem)
    iface = network_interface  # inside "${...:-ib0}" quotes would be literal: the name rule keeps it plain
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


def log_pattern(folder: str) -> str:
    """``--output`` for a job's log in ``folder``: ``%x-%j.out`` (job name, id); a '%' of the folder itself is
    written '%%', sbatch's literal percent (sbatch man page, "filename pattern")."""
    return f"{folder.rstrip('/').replace('%', '%%')}/%x-%j.out"


def _dq(text: str) -> str:
    """Double-quoted for an ``#SBATCH`` line: sbatch groups quoted characters and takes a backslash as escaping
    the next one (SLURM src/sbatch/opt.c _get_argument), so spaces, quotes and backslashes in paths survive."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def shell_join(words: Sequence[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)
