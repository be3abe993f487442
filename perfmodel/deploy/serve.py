"""What to run for a layout: the ``vllm serve`` command with the engine arguments perfmodel resolved, and a SLURM
job script that runs it (``perfmodel predict --emit-sbatch``).

The command pins every engine argument the prediction assumed (vLLM's defaults differ between ``LLM`` and
``vllm serve`` and between releases), so the server runs what was predicted. Flag names are vLLM's
(vLLM 0.7.0 vllm/engine/arg_utils.py EngineArgs.add_cli_args: ``-tp``, ``-pp``, ``--max-num-seqs``,
``--max-num-batched-tokens``, ``--gpu-memory-utilization``, ``--max-model-len``, ``--dtype``, ``--quantization``,
``--kv-cache-dtype``, ``--block-size``, ``--enforce-eager``, ``--distributed-executor-backend``; the same names in
later releases). A replica spanning nodes runs on Ray (``--distributed-executor-backend ray``). Data-parallel
replicas are separate servers (one port each, ``CUDA_VISIBLE_DEVICES`` picking a node's GPUs) behind a router.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from perfmodel.errors import UserError
from perfmodel.layout import Layout, place
from perfmodel.deploy.sbatch import JobSpec, default_cpus_per_task, default_network_interface, has_slurm_limits, hms
from perfmodel.deploy.sbatch import checked_script, job_header, log_pattern, ray_block, shell_join

if TYPE_CHECKING:
    from perfmodel.scenario import Scenario

BASE_PORT = 8000
DEFAULT_BLOCK_SIZE = 16  # vLLM's default --block-size on CUDA


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """One layout as ``vllm serve`` processes: ``serve_args`` is one replica's argv after ``vllm serve``."""

    layout: Layout
    nodes: int  # nodes of the whole job
    nodes_per_replica: int
    gpus_per_node: int
    serve_args: tuple[str, ...]

    @property
    def command(self) -> str:
        """One replica's command, shell-quoted (``vllm_serve_command`` in predict's JSON)."""
        return shell_join(["vllm", "serve", *self.serve_args])

    @property
    def replicas_per_node(self) -> int:
        return 1 if self.nodes_per_replica > 1 else self.layout.dp // self.nodes

    def node_commands(self) -> list[str]:
        """The commands of one node's replicas: GPUs ``[r*g, (r+1)*g)`` and port ``8000 + r`` for replica r."""
        if self.replicas_per_node == 1:
            return [self.command]
        g = self.layout.gpus_per_replica
        return [f"CUDA_VISIBLE_DEVICES={','.join(str(r * g + i) for i in range(g))} {self.command} "
                f"--port {BASE_PORT + r}" for r in range(self.replicas_per_node)]


# the checkpoint format a quantization method loads (vLLM's method names)
_CHECKPOINT_FORMAT = {"gptq": "GPTQ", "gptq_marlin": "GPTQ", "auto_gptq": "GPTQ", "awq": "AWQ", "awq_marlin": "AWQ",
                      "auto_awq": "AWQ", "int8": "INT8 W8A8"}


def checkpoint_note(scenario: "Scenario", model_spec: str) -> str | None:
    """A catalog model quantized by flag names an unquantized HF checkpoint: vLLM needs the quantized one."""
    from perfmodel.model.shape import _catalog_name

    if scenario.precision.quant_source == "flag" and _catalog_name(model_spec) == model_spec.strip().lower():
        method = scenario.precision.quantization
        checkpoint = _CHECKPOINT_FORMAT.get(method, method)
        return (f"--quantization {method} needs a {checkpoint} checkpoint: replace {serve_model_id(model_spec)} "
                "by its HF id or directory")
    return None


def serve_model_id(model_spec: str) -> str:
    """What ``vllm serve`` loads: a catalog name becomes its HF id; a path becomes absolute; an HF id stays."""
    from perfmodel.model.shape import _catalog_name, catalog_config_path

    path = Path(model_spec).expanduser()
    if path.exists():
        return str((path.parent if path.name == "config.json" else path).resolve())
    if _catalog_name(model_spec) == model_spec.strip().lower():
        name = json.loads(catalog_config_path(model_spec).read_text()).get("_name_or_path")
        return str(name or model_spec)
    return model_spec.strip()


def vllm_serve_args(scenario: "Scenario", layout: Layout, model_spec: str) -> list[str]:
    """One replica's ``vllm serve`` argv (after ``serve``): model, layout and every resolved engine argument."""
    e, p = scenario.engine, scenario.precision
    placement = place(layout, scenario.cluster.gpus_per_node)
    kv = "auto" if p.kv_cache_dtype == p.activation_dtype else p.kv_cache_dtype
    args = [serve_model_id(model_spec), "-tp", str(layout.tp), "-pp", str(layout.pp),
            "--max-num-seqs", str(e.max_num_seqs), "--max-num-batched-tokens", str(e.max_num_batched_tokens),
            "--gpu-memory-utilization", f"{e.gpu_memory_utilization:g}", "--max-model-len",
            str(scenario.max_model_len), "--dtype", p.activation_dtype]
    if p.quantization:
        args += ["--quantization", p.quantization]
    args += ["--kv-cache-dtype", kv]
    if e.block_size != DEFAULT_BLOCK_SIZE:
        args += ["--block-size", str(e.block_size)]
    if e.enforce_eager:
        args.append("--enforce-eager")
    if scenario.expert_layout(layout).ep > 1:  # EP couples the DP ranks: one server runs all of them
        args += ["--data-parallel-size", str(layout.dp)] if layout.dp > 1 else []
        args.append("--enable-expert-parallel")
    if placement.nodes_per_replica > 1:
        args += ["--distributed-executor-backend", "ray"]
    return args


def deployment(scenario: "Scenario", layout: Layout, model_spec: str) -> Deployment:
    """The processes of ``layout``: replicas within a node share it, a larger replica spans whole nodes."""
    g = scenario.cluster.gpus_per_node
    per_replica = place(layout, g).nodes_per_replica
    if per_replica > 1:
        nodes = per_replica * layout.dp
    else:
        nodes = max(1, -(-layout.gpus // g))
        if layout.dp % nodes:
            raise UserError(f"{layout}: {layout.dp} replicas do not split evenly over {nodes} nodes")
    return Deployment(layout=layout, nodes=nodes, nodes_per_replica=per_replica,
                      gpus_per_node=min(g, layout.gpus), serve_args=tuple(vllm_serve_args(scenario, layout,
                                                                                          model_spec)))


@dataclass(frozen=True, kw_only=True)
class JobOptions:
    """``--emit-sbatch``'s settings; None: the cluster's limit (time), 4 CPUs per GPU, the fabric's interface."""

    account: str | None = None
    partition: str | None = None
    time_s: float | None = None
    modules: tuple[str, ...] = ()
    env_setup: str = ""
    cpus_per_task: int | None = None
    network_interface: str | None = None
    log_dir: str = "."


def serve_job_script(scenario: "Scenario", dep: Deployment, options: JobOptions) -> str:
    """A ready ``sbatch`` script that serves ``dep`` until the job's time limit; UserError past the limits."""
    cluster = scenario.cluster
    if not has_slurm_limits(cluster):
        raise UserError(f"{cluster.name} has no SLURM limits (max_nodes_per_job, max_job_time_s): --emit-sbatch "
                        "needs a batch cluster such as taiwania2, or a cluster YAML with those keys")
    time_s = options.time_s if options.time_s is not None else (cluster.max_job_time_s or 3600.0)
    if not math.isfinite(time_s) or time_s <= 0 or (cluster.max_job_time_s is not None
                                                    and time_s > cluster.max_job_time_s):
        most = f"{cluster.name}'s maximum {cluster.max_job_time_s:g} s" if cluster.max_job_time_s else "1e8 s"
        raise UserError(f"--time {time_s:g} s must be in (0, {most}]")
    if cluster.max_nodes_per_job is not None and dep.nodes > cluster.max_nodes_per_job:
        raise UserError(f"{dep.layout} needs {dep.nodes} nodes; {cluster.name} allows {cluster.max_nodes_per_job}")
    if dep.nodes_per_replica > 1 and dep.layout.dp > 1:
        raise UserError(f"{dep.layout}: replicas spanning nodes need one job each; pin --gpus to one replica's "
                        f"{dep.layout.gpus_per_replica} GPUs")
    if options.cpus_per_task is not None and options.cpus_per_task < 1:
        raise UserError(f"--cpus-per-task must be at least 1, got {options.cpus_per_task}")
    layout = dep.layout
    name = f"vllm-tp{layout.tp}pp{layout.pp}dp{layout.dp}"
    try:
        return checked_script(_serve_job_text(scenario, dep, options, name, time_s))
    except ValueError as exc:  # a value that breaks the script's rules (perfmodel.deploy.sbatch): one line
        raise UserError(str(exc)) from None


def _serve_job_text(scenario: "Scenario", dep: Deployment, options: JobOptions, name: str, time_s: float) -> str:
    cluster, layout = scenario.cluster, dep.layout
    job = JobSpec(name=name, nodes=dep.nodes, gpus_per_node=dep.gpus_per_node,
                  cpus_per_task=options.cpus_per_task or default_cpus_per_task(dep.gpus_per_node), time_s=time_s,
                  output=log_pattern(options.log_dir), account=options.account,
                  partition=options.partition, modules=options.modules, env_setup=options.env_setup,
                  comment=(f"written by perfmodel predict --emit-sbatch: {scenario.model.name} on {cluster.name}, "
                           f"{layout} ({dep.nodes} node(s), {hms(time_s)})"))
    text = job_header(job)
    if dep.nodes_per_replica > 1:
        interface = options.network_interface or default_network_interface(cluster)
        text += ray_block(gpus_per_node=dep.gpus_per_node, total_gpus=layout.gpus_per_replica,
                          network_interface=interface)
        return text + f'\n# the OpenAI-compatible server listens on "$VLLM_HOST_IP:{BASE_PORT}"\n{dep.command}\n'
    return text + _replica_launch(dep)


def _replica_launch(dep: Deployment) -> str:
    """One node, one replica: the server in the foreground. Several replicas: each in the background, one
    ``srun`` per node when the job has several nodes, then ``wait``."""
    commands = dep.node_commands()
    if dep.nodes == 1 and len(commands) == 1:
        return f"\n# the OpenAI-compatible server listens on port {BASE_PORT} of $(hostname)\n{commands[0]}\n"
    per_node = " & ".join(commands) + " & wait" if len(commands) > 1 else commands[0]
    ports = f"ports {BASE_PORT}-{BASE_PORT + len(commands) - 1}" if len(commands) > 1 else f"port {BASE_PORT}"
    if dep.nodes == 1:
        return f"\n# {len(commands)} replicas on {ports} of $(hostname): put a router in front\n{per_node}\n"
    return (f"\n# {dep.layout.dp} replicas, {len(commands)} per node on {ports} of each node: put a router in front\n"
            'for node in $(scontrol show hostnames "$SLURM_JOB_NODELIST"); do\n'
            f'    srun --nodes=1 --ntasks=1 -w "$node" bash -c {shell_join([per_node])} &\n'
            "done\nwait\n")
