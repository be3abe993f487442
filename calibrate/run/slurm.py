"""SLURM batch scripts for a sweep: one job per engine configuration (or job arrays).

A job asks for ceil(tp*pp / gpus_per_node) nodes and runs `python -m perfmodel.cli calibrate run` for the runs of
its engine configuration, appending to `<out_dir>/results/<engine_id>.jsonl` on the shared filesystem (one file per
job, so jobs running at once never write the same file; `load_results(<out_dir>/results)` reads them all). A job on
several nodes first starts a Ray cluster (perfmodel.deploy.sbatch.ray_block, shared with `perfmodel predict
--emit-sbatch`: vLLM's multi-node recipe), waits until Ray sees every GPU, and runs vLLM with
`--distributed-executor-backend ray`. The cluster's limits (`max_nodes_per_job`, `max_job_time_s`) are enforced
when the scripts are written; hardware without SLURM limits (a bare GPU name) is refused.
"""
from __future__ import annotations

import dataclasses
import math
import shlex
from pathlib import Path
from typing import Any, Sequence

from calibrate.records.engine_spec import EngineSpec
from calibrate.records.sweep import Sweep
from perfmodel.atomic import write_text_atomic
from perfmodel.errors import UserError
from perfmodel.deploy.sbatch import (JobSpec, checked_script, default_cpus_per_task, default_network_interface,
                              has_slurm_limits, hms, interface_name_problem, job_header, log_pattern, ray_block,
                              script_path_problem, slurm_name_problem)

DEFAULT_TIME_S = 3600.0
JOB_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # with perfmodel.deploy.sbatch.JOB_ENV


class SlurmError(UserError, ValueError):
    """A job cannot be written within the cluster's limits: one line."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobPlan:
    engine: EngineSpec
    num_nodes: int
    gpus_per_node: int  # GPUs asked for on each node
    num_runs: int

    @property
    def multi_node(self) -> bool:
        return self.num_nodes > 1


def check_slurm_cluster(cluster: Any) -> None:
    """Refuse hardware without SLURM limits: a bare GPU name (one node, e.g. h200-sxm) is no batch cluster."""
    if not has_slurm_limits(cluster):
        raise SlurmError(f"{cluster.name} has no SLURM limits (max_nodes_per_job, max_job_time_s): it is not a "
                         "batch cluster; give a cluster name such as taiwania2, or a cluster YAML with those keys")


def plan_jobs(sweep: Sweep, cluster: Any, time_limit_s: float | None = None) -> tuple[list[JobPlan], float]:
    """One plan per engine configuration, and the job time limit (s); raises SlurmError past the limits.

    `cluster` needs `name`, `gpus_per_node`, `max_nodes_per_job` (None: no limit) and `max_job_time_s`.
    """
    max_time = getattr(cluster, "max_job_time_s", None)
    if max_time is None and getattr(cluster, "max_nodes_per_job", None) is None:
        raise SlurmError(f"{cluster.name} has no SLURM limits (max_job_time_s, max_nodes_per_job): it is one "
                         f"machine, not a batch cluster; run the sweep there with 'perfmodel calibrate run', or "
                         f"give --cluster a cluster (e.g. taiwania2, or a YAML with those limits)")
    limit = time_limit_s if time_limit_s is not None else (max_time or DEFAULT_TIME_S)
    if limit <= 0:
        raise SlurmError(f"time limit must be > 0 s, got {limit:g}")
    if max_time is not None and limit > max_time:
        raise SlurmError(f"time limit {hms(limit)} exceeds {cluster.name}'s maximum job time {hms(max_time)}")
    plans = []
    per_node = int(cluster.gpus_per_node)
    for engine, runs in sweep.by_engine().items():
        nodes = math.ceil(engine.num_gpus / per_node)
        max_nodes = getattr(cluster, "max_nodes_per_job", None)
        if max_nodes is not None and nodes > max_nodes:
            raise SlurmError(f"tp={engine.tensor_parallel_size} pp={engine.pipeline_parallel_size} needs {nodes} "
                             f"nodes of {per_node} GPUs; {cluster.name} allows at most {max_nodes} per job")
        if nodes > 1 and engine.num_gpus % per_node:
            raise SlurmError(f"tp*pp = {engine.num_gpus} GPUs over {nodes} nodes: use a multiple of {per_node}")
        plans.append(JobPlan(engine=engine, num_nodes=nodes, gpus_per_node=min(per_node, engine.num_gpus),
                             num_runs=len(runs)))
    return plans, limit


def write_slurm_jobs(sweep: Sweep, cluster: Any, account: str, partition: str, out_dir: str | Path, *,
                     modules: Sequence[str] = (), env_setup: str = "", time_limit_s: float | None = None,
                     array: bool = False, python: str = "python", workdir: str | Path | None = None,
                     cpus_per_task: int | None = None, network_interface: str | None = None) -> list[Path]:
    """Write the job scripts (and `submit.sh`, which sbatches them all); returns the job scripts' paths.

    Engines on several nodes get `distributed_executor_backend: ray`. `array=True` writes one job array per
    node count instead of one script per engine configuration. `env_setup` is pasted as-is after `module load`
    (e.g. `source ~/venvs/vllm/bin/activate`). `workdir` (default: this checkout) is where jobs run from.
    `cpus_per_task` (default 4 per GPU of a node) and `network_interface` (default from the cluster's fabric) go
    to the header and the Ray block.
    """
    check_slurm_cluster(cluster)
    if cpus_per_task is not None and cpus_per_task < 1:
        raise SlurmError(f"--cpus-per-task must be at least 1, got {cpus_per_task}")
    if sweep.path is None:
        raise SlurmError("the sweep must come from a file (jobs read it)")
    out = Path(out_dir).resolve()
    problems = [slurm_name_problem(account, "account"), slurm_name_problem(partition, "partition"),
                script_path_problem(python, "--python"), script_path_problem(str(out), "--out"),
                script_path_problem(str(Path(sweep.path).resolve()), "the sweep path"),
                interface_name_problem(network_interface) if network_interface is not None else None]
    problem = next((p for p in problems if p), None)
    if problem:
        raise SlurmError(problem)
    single_plans, limit = plan_jobs(sweep, cluster, time_limit_s)
    plans = []
    for plan in single_plans:  # engines spanning nodes use Ray; their engine ids change with the backend
        if plan.multi_node and plan.engine.distributed_executor_backend != "ray":
            engine = dataclasses.replace(plan.engine, distributed_executor_backend="ray")
            plan = dataclasses.replace(plan, engine=engine)
        plans.append(plan)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "results").mkdir(parents=True, exist_ok=True)
    ctx = _Context(sweep_path=Path(sweep.path).resolve(), out=out, account=account, partition=partition,
                   modules=tuple(modules), env_setup=env_setup, time_s=limit, python=python,
                   workdir=Path(workdir).resolve() if workdir else Path(__file__).resolve().parents[2],
                   cluster=cluster, sweep_name=sweep.name,
                   cpus_per_task=cpus_per_task or default_cpus_per_task(int(cluster.gpus_per_node)),
                   network_interface=network_interface or default_network_interface(cluster))
    try:
        texts = _scripts(ctx, plans, array)
    except ValueError as exc:  # a value that breaks the script's rules (perfmodel.deploy.sbatch): one line
        raise SlurmError(str(exc)) from None
    for path, text in texts.items():
        write_text_atomic(path, text)
    submit = out / "submit.sh"
    write_text_atomic(submit, checked_script("#!/bin/bash\nset -euo pipefail\n"
                                             + "".join(f"sbatch {shlex.quote(str(p))}\n" for p in texts)))
    submit.chmod(0o755)
    return list(texts)


def _scripts(ctx: "_Context", plans: Sequence[JobPlan], array: bool) -> dict[Path, str]:
    """Each job script's path and text (checked by ``bash -n``)."""
    out, name = ctx.out, _slug(ctx.sweep_name)
    scripts: dict[Path, str] = {}
    if array:
        by_nodes: dict[int, list[JobPlan]] = {}
        for plan in plans:
            by_nodes.setdefault(plan.num_nodes, []).append(plan)
        for nodes, group in sorted(by_nodes.items()):
            scripts[out / f"{name}-array-{nodes}node.sbatch"] = checked_script(_array_script(ctx, group))
    else:
        for plan in plans:
            scripts[out / f"{name}-{plan.engine.engine_id}.sbatch"] = checked_script(_job_script(ctx, plan))
    return scripts


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Context:
    sweep_path: Path
    out: Path
    account: str
    partition: str
    modules: tuple[str, ...]
    env_setup: str
    time_s: float
    python: str
    workdir: Path
    cluster: Any
    sweep_name: str
    cpus_per_task: int
    network_interface: str


def _header(ctx: _Context, name: str, nodes: int, gpus: int, extra: Sequence[str] = ()) -> str:
    job = JobSpec(name=name, nodes=nodes, gpus_per_node=gpus, cpus_per_task=ctx.cpus_per_task, time_s=ctx.time_s,
                  output=log_pattern(f"{ctx.out}/logs"), account=ctx.account, partition=ctx.partition,
                  modules=ctx.modules, env_setup=ctx.env_setup, env=JOB_ENV, extra_directives=tuple(extra),
                  comment=f"written by perfmodel calibrate slurm for sweep {ctx.sweep_name} on {ctx.cluster.name}")
    return job_header(job) + f"cd {shlex.quote(str(ctx.workdir))}\n"


def _runner_cmd(ctx: _Context, engine_id: str, ray: bool) -> str:
    cmd = [ctx.python, "-m", "perfmodel.cli", "calibrate", "run", str(ctx.sweep_path),
           "--results", f"{ctx.out}/results/{engine_id}.jsonl", "--engine", engine_id]
    if ray:
        cmd += ["--distributed-executor-backend", "ray"]
    return " ".join(shlex.quote(c) for c in cmd)


def _ray(ctx: _Context, gpus_per_node: int, total_gpus: int | str) -> str:
    return ray_block(gpus_per_node=gpus_per_node, total_gpus=total_gpus, network_interface=ctx.network_interface)


def _job_script(ctx: _Context, plan: JobPlan) -> str:
    e = plan.engine
    name = f"pm-{_slug(ctx.sweep_name)}-tp{e.tensor_parallel_size}pp{e.pipeline_parallel_size}-{e.engine_id[:8]}"
    text = _header(ctx, name, plan.num_nodes, plan.gpus_per_node)
    text += f"# engine {e.engine_id}: {plan.num_runs} runs, tp={e.tensor_parallel_size} " \
            f"pp={e.pipeline_parallel_size}, {plan.num_nodes} node(s)\n"
    if plan.multi_node:
        text += _ray(ctx, plan.gpus_per_node, e.num_gpus)
    text += _runner_cmd(ctx, e.engine_id, plan.multi_node) + "\n"
    return text


def _array_script(ctx: _Context, plans: Sequence[JobPlan]) -> str:
    nodes = plans[0].num_nodes
    gpus = max(p.gpus_per_node for p in plans)
    name = f"pm-{_slug(ctx.sweep_name)}-{nodes}node"
    text = _header(ctx, name, nodes, gpus, [f"--array=0-{len(plans) - 1}"])
    ids = " ".join(p.engine.engine_id for p in plans)
    totals = " ".join(str(p.engine.num_gpus) for p in plans)
    text += f"engines=({ids})\ntotal_gpus=({totals})\nengine=${{engines[$SLURM_ARRAY_TASK_ID]}}\n"
    if nodes > 1:
        text += _ray(ctx, gpus, '"${total_gpus[$SLURM_ARRAY_TASK_ID]}"')
    cmd = [ctx.python, "-m", "perfmodel.cli", "calibrate", "run", str(ctx.sweep_path)]
    results = shlex.quote(f"{ctx.out}/results/") + '"$engine.jsonl"'  # the folder quoted, $engine expanded
    text += " ".join(shlex.quote(c) for c in cmd) + f' --results {results} --engine "$engine"'
    text += " --distributed-executor-backend ray\n" if nodes > 1 else "\n"
    return text


def _slug(name: str) -> str:
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "-" for c in name)[:40] or "sweep"
