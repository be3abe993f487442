"""``perfmodel predict``: rank every TP/PP/DP layout of N GPUs."""

from __future__ import annotations

import argparse

from perfmodel.cli.intervals import add_interval_argument, csv_row, footnote, level, with_interval
from perfmodel.cli.options import GPUS, add_format_argument, add_scenario_arguments, scenario_options
from perfmodel.cli.validate import ENV_SETUP, INTERFACE_NAME, MODULE_NAME, SLURM_NAME, integer, output_file, real
from perfmodel.deploy.sbatch import MAX_TIME_S

PREDICT_COLUMNS = (
    ("rank", "#"), ("layout", "layout"), ("gpus", "GPUs"), ("fits", "fits"), ("weights_gib_per_gpu", "weights GiB/GPU"),
    ("kv_cache_tokens", "KV tokens/replica"), ("batch_size", "batch"), ("requests_per_second", "req/s"),
    ("tokens_per_second", "tok/s"), ("output_tokens_per_second", "out tok/s"), ("elapsed_time", "elapsed s"),
    ("method", "by"), ("reason", "note"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="rank every TP/PP/DP layout of N GPUs by offline throughput",
                       usage="perfmodel predict [options]\n       perfmodel predict vllm serve MODEL [vllm serve flags]"
                             " (a pasted `vllm serve` command)",
                       epilog="A `vllm serve` command can be pasted after `perfmodel predict`: its flags keep vLLM's "
                              "names and spellings (32k, -q gptq_marlin, --no-enable-chunked-prefill); flags with no "
                              "effect on performance are listed and ignored.")
    p.add_argument("--config", metavar="FILE.yaml",
                   help="a `vllm serve --config` YAML file (keys are flag names, model: included); the command "
                        "line wins; also --config=FILE")
    p.add_argument("--gpus", type=GPUS, default=16, help="GPUs to use (default: 16)")
    p.add_argument("--tensor-parallel-size", "--tp", "-tp", type=GPUS, default=None, help="pin TP")
    p.add_argument("--pipeline-parallel-size", "--pp", "-pp", type=GPUS, default=None, help="pin PP")
    p.add_argument("--simulate-top", type=integer(0, 1024), default=3, metavar="N",
                   help="simulate the N best layouts of the closed form and rank them by the simulation (default 3)")
    add_scenario_arguments(p)
    add_format_argument(p)
    add_sbatch_arguments(p)
    add_interval_argument(p)
    p.set_defaults(handler=run)


def add_sbatch_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("deployment (a SLURM job that serves the best or pinned layout)")
    g.add_argument("--emit-sbatch", metavar="FILE", type=output_file,
                   help="write a ready sbatch script running its vllm serve")
    g.add_argument("--account", type=SLURM_NAME, help="SLURM account (default: yours)")
    g.add_argument("--partition", type=SLURM_NAME, help="SLURM partition (default: the cluster's default)")
    g.add_argument("--time", type=real(0, MAX_TIME_S, low_open=True), default=None, metavar="SECONDS",
                   help="job time (default: cluster max)")
    g.add_argument("--module", action="append", default=[], type=MODULE_NAME,
                   help="`module load` this (repeatable)")
    g.add_argument("--env-setup", default="", type=ENV_SETUP,
                   help="shell line(s) after module load (e.g. activate a venv); must be valid bash")
    g.add_argument("--cpus-per-task", type=integer(1, 4096), default=None, help="CPUs per node (default: 4 per GPU)")
    g.add_argument("--network-interface", metavar="IFNAME", type=INTERFACE_NAME,
                   help="interface for Ray and VLLM_HOST_IP (default: ib0 on InfiniBand, else eth0)")


def run(args: argparse.Namespace) -> int:
    from perfmodel.analysis.predict import min_gpus_to_fit, predict_all
    from perfmodel.analysis.report import dumps_csv, dumps_json, table, to_jsonable
    from perfmodel.scenario import Scenario
    from perfmodel.uncertainty.intervals import PREDICT_FIGURES, plus_minus, predict_intervals

    scenario = Scenario.from_options(scenario_options(args))
    predictions = predict_all(scenario, args.gpus, tp=args.tensor_parallel_size, pp=args.pipeline_parallel_size,
                              simulate_top=args.simulate_top)
    dep = best_deployment(scenario, predictions, args)
    intervals = predict_intervals(scenario, predictions, level(args))
    layouts = [with_interval(to_jsonable(p), iv) for p, iv in zip(predictions, intervals)]
    if args.format == "json":
        out = {"model": scenario.model.name, "hardware": scenario.cluster.name, "gpus": args.gpus}
        if args.nodes is not None:  # the multi-node view (--nodes): the fabric and where each layout sits
            out.update(network(scenario))
            layouts = [{**row, **placement(scenario, p)} for row, p in zip(layouts, predictions)]
        if scenario.expert_parallel:  # EP = TP x DP for every layout (vLLM's --enable-expert-parallel)
            out["expert_parallel"] = True
            layouts = [{**row, "ep": scenario.expert_layout(p.layout).ep} for row, p in zip(layouts, predictions)]
        print(dumps_json({**out, "workload": scenario.workload, "engine": scenario.engine,
                          "precision": scenario.precision, "profile": scenario.profile.name,
                          "vllm_serve_command": dep.command if dep else None, "notes": list(scenario.notes),
                          "layouts": layouts}))
        return 0
    if args.format == "csv":
        print(dumps_csv([csv_row(p.__dict__, iv, PREDICT_FIGURES) for p, iv in zip(predictions, intervals)]), end="")
        return 0
    print(header(scenario, args.gpus))
    if args.nodes is not None:
        net = network(scenario)
        link = net["inter_node_link"]
        print(f"{net['nodes']} nodes of {scenario.cluster.gpus_per_node} GPUs joined by {link['name'] if link else 'nothing'}"
              + (f" ({scenario.cluster.nics_per_node} x {link['bandwidth_bytes_per_s'] / 1e9:g} GB/s per node)"
                 if link else "") + ("" if scenario.tp_across_nodes else "; TP groups stay inside a node"))
    for note in scenario.notes:
        print(f"note: {note}")
    rows = [{"rank": i if p.fits else "-", **p.__dict__, "layout": str(scenario.expert_layout(p.layout)),
             **(placement(scenario, p) if args.nodes is not None else {}),
             **{n: plus_minus(getattr(p, n), iv, n) for n in ("tokens_per_second", "output_tokens_per_second")
                if iv is not None}}
            for i, (p, iv) in enumerate(zip(predictions, intervals), 1)]
    columns = PREDICT_COLUMNS
    if args.nodes is not None:
        columns = (*PREDICT_COLUMNS[:3], ("nodes_per_replica", "nodes/replica"), ("crosses_nodes", "crosses"),
                   *PREDICT_COLUMNS[3:])
    print(table(rows, columns))
    shown = next((iv for iv in intervals if iv is not None), None)
    if shown is not None:
        print(footnote(shown, scenario.profile.name))
    if not any(p.fits for p in predictions):
        need = min_gpus_to_fit(scenario)
        hint = f"it needs at least {need} GPUs" if need else "it does not fit on any number of these GPUs"
        print(f"\nNo layout fits: {hint} (or try --quantization, a smaller --max-model-len or --max-num-seqs).")
    if dep is not None:
        each = f", each of {dep.layout.dp} replicas" if dep.layout.dp > 1 else ""
        print(f"\nvllm serve ({dep.layout}{each}): {dep.command}")
        from perfmodel.deploy.serve import checkpoint_note

        note = checkpoint_note(scenario, args.model)
        if note:
            print(f"note: {note}")
    if args.emit_sbatch and dep is not None:
        print(f"sbatch script ({dep.nodes} node(s)): {args.emit_sbatch}")
    return 0


def best_deployment(scenario, predictions, args: argparse.Namespace):
    """The ``Deployment`` of the best layout that fits (the pinned one when pinned), its job script written
    when ``--emit-sbatch`` asks; None when nothing fits."""
    from pathlib import Path

    from perfmodel.deploy.serve import JobOptions, deployment, serve_job_script
    from perfmodel.errors import UserError

    best = next((p for p in predictions if p.fits), None)
    if best is None:
        if args.emit_sbatch:
            raise UserError("no layout fits, so there is nothing to write to --emit-sbatch")
        return None
    dep = deployment(scenario, best.layout, args.model)
    if args.emit_sbatch:
        out = Path(args.emit_sbatch)
        options = JobOptions(account=args.account, partition=args.partition, time_s=args.time,
                             modules=tuple(args.module), env_setup=args.env_setup, cpus_per_task=args.cpus_per_task,
                             network_interface=args.network_interface, log_dir=str(out.resolve().parent))
        from perfmodel.atomic import write_text_atomic

        write_text_atomic(out, serve_job_script(scenario, dep, options))
    return dep


def network(scenario) -> dict:
    """The job's node count and its inter-node link (None on one node without a fabric)."""
    c = scenario.cluster
    link = c.inter_node_link
    return {"nodes": c.num_nodes, "gpus_per_node": c.gpus_per_node, "nics_per_node": c.nics_per_node,
            "tp_across_nodes": scenario.tp_across_nodes,
            "inter_node_link": None if link is None else {"name": link.name,
                                                          "bandwidth_bytes_per_s": link.bandwidth_bytes_per_s,
                                                          "latency_s": link.latency_s}}


def placement(scenario, prediction) -> dict:
    """Nodes one replica of the layout takes and which parallel dimension crosses the inter-node link."""
    from perfmodel.layout import place

    where = place(prediction.layout, scenario.cluster.gpus_per_node)
    crosses = "TP" if where.tp_spans_nodes else "PP" if where.pp_spans_nodes else ""
    if prediction.layout.gpus > scenario.cluster.gpus_per_node and not crosses:
        # replicas on different nodes: no traffic between them, unless EP all-gathers tokens over the DP group
        crosses = "EP" if scenario.expert_layout(prediction.layout).ep > 1 else "DP"
    return {"nodes_per_replica": where.nodes_per_replica, "crosses_nodes": crosses}


def header(scenario, num_gpus: int) -> str:
    """The first line of the table: what was assumed and where the coefficients come from."""
    w, e = scenario.workload, scenario.engine
    return (f"{scenario.model.name} ({scenario.model.num_params() / 1e9:.1f}B, {scenario.precision.weight_dtype}) on "
            f"{num_gpus} x {scenario.cluster.gpu.display_name} [{scenario.cluster.name}]; {w.num_prompts} prompts of "
            f"{w.input_len} in / {w.output_len} out, {scenario.batching} batching; vLLM {e.vllm_version} defaults "
            f"({e.engine_generation.upper()} engine): max_num_seqs {e.max_num_seqs}, "
            f"max_num_batched_tokens {e.max_num_batched_tokens}; coefficients: {scenario.profile.name} "
            f"({scenario.profile.status_for(scenario.cluster.gpu.name)})")
