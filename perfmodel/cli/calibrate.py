"""`perfmodel calibrate run | import | slurm` (and `fit | check | predict | uncertainty` from
perfmodel.cli.calibrate_fit).

vLLM is never imported here: only the worker processes import it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perfmodel.cli.options import GPUS, HARDWARE, MODEL, TOKENS
from perfmodel.cli.validate import (ENV_SETUP, INTERFACE_NAME, MAX_NUM_SEQS, MODULE_NAME, SCRIPT_PATH, SLURM_NAME,
                                    input_file, integer, output_dir, output_file, real)
from perfmodel.errors import UserError

RESULTS_OUT = output_file  # a results file to append to: its folder must exist


def add_calibrate_subcommands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add `calibrate` with `run`, `import` and `slurm` to a top-level subparsers action; returns the
    `calibrate` subparsers action, for more subcommands. Each leaf sets `handler(args) -> exit code`."""
    cal = subparsers.add_parser("calibrate", help="measure real vLLM runs, import results, write SLURM jobs")
    sub = cal.add_subparsers(dest="calibrate_command", required=True, metavar="ACTION")

    from perfmodel.cli.calibrate_run import add_run_arguments

    run = sub.add_parser("run", help="run a sweep on this machine (results appended; completed runs skipped)")
    add_run_arguments(run)
    run.set_defaults(handler=cmd_run)

    imp = sub.add_parser("import", help="add vLLM benchmark outputs (bench throughput/serve JSON, CSV)")
    imp.add_argument("files", nargs="+", metavar="FILE", type=input_file("text"))
    imp.add_argument("--results", required=True, type=RESULTS_OUT, help="results file to append to")
    imp.add_argument("--model", type=MODEL, help="model name (catalog name or HF id) when the file does not say")
    imp.add_argument("--hardware", type=HARDWARE, help="hardware catalog name the runs were measured on")
    imp.add_argument("--tensor-parallel-size", "--tp", "-tp", dest="tensor_parallel_size", type=GPUS)
    imp.add_argument("--pipeline-parallel-size", "--pp", "-pp", dest="pipeline_parallel_size", type=GPUS)
    imp.add_argument("--max-num-seqs", type=integer(1, MAX_NUM_SEQS))
    imp.add_argument("--max-num-batched-tokens", type=TOKENS)
    imp.add_argument("--max-model-len", type=TOKENS)
    imp.add_argument("--dtype")
    imp.add_argument("--enforce-eager", action="store_true", default=None)
    imp.add_argument("--input-len", type=TOKENS)
    imp.add_argument("--output-len", type=TOKENS)
    imp.add_argument("--vllm-version")
    imp.set_defaults(handler=cmd_import)

    sl = sub.add_parser("slurm", help="write SLURM batch scripts for a sweep (one job per engine configuration)")
    sl.add_argument("sweep", type=input_file("yaml"), help="sweep YAML file")
    sl.add_argument("--cluster", required=True, type=HARDWARE, help="hardware cluster name (e.g. taiwania2)")
    sl.add_argument("--account", required=True, type=SLURM_NAME)
    sl.add_argument("--partition", required=True, type=SLURM_NAME)
    sl.add_argument("--out", required=True, type=output_dir, help="folder for the scripts, logs and results (shared filesystem)")
    sl.add_argument("--array", action="store_true", help="job arrays (one per node count) instead of one job each")
    sl.add_argument("--time", type=real(0, 1e8, low_open=True), default=None, metavar="SECONDS", help="job time limit (default: cluster max)")
    sl.add_argument("--module", action="append", default=[], type=MODULE_NAME, help="`module load` this (repeatable)")
    sl.add_argument("--env-setup", default="", type=ENV_SETUP, help="shell line(s) run before the job (e.g. activate a venv)")
    sl.add_argument("--python", default="python", type=SCRIPT_PATH, help="python of the job environment (default: python)")
    sl.add_argument("--cpus-per-task", type=integer(1, 4096), default=None, help="CPUs per node for Ray (default: 4 per GPU)")
    sl.add_argument("--network-interface", default=None, metavar="IFNAME", type=INTERFACE_NAME,
                    help="interface the nodes reach each other on (default: ib0 on InfiniBand, else eth0)")
    sl.set_defaults(handler=cmd_slurm)
    from perfmodel.cli.calibrate_fit import add_fit_subcommands

    add_fit_subcommands(sub)
    return sub


def cmd_run(args) -> int:
    from calibrate.run.runner import run_sweep, with_backend
    from calibrate.records.sweep import load_sweep

    sweep = with_backend(load_sweep(args.sweep), args.distributed_executor_backend)
    summary = run_sweep(sweep, args.results, only=args.only, engine_id=args.engine, dry_run=args.dry_run,
                        retry_errors=args.retry_errors, engine_timeout_s=args.engine_timeout)
    if not args.dry_run:
        print(f"done: {summary.num_ok} ok, {summary.num_error} errors, {summary.num_skipped} skipped "
              f"-> {summary.results_path}", file=sys.stderr)
    return 0 if summary.num_error == 0 else 1


_IMPORT_OVERRIDES = ("model", "hardware", "tensor_parallel_size", "pipeline_parallel_size", "max_num_seqs",
                     "max_num_batched_tokens", "max_model_len", "dtype", "enforce_eager", "input_len", "output_len",
                     "vllm_version")


def cmd_import(args) -> int:
    from calibrate.records.importers import import_files
    from calibrate.records.store import append_record, completed_run_ids

    overrides = {k: getattr(args, k) for k in _IMPORT_OVERRIDES if getattr(args, k, None) is not None}
    records = import_files(args.files, overrides)
    have = completed_run_ids(args.results)
    new = [r for r in records if r["run_id"] not in have]
    for rec in new:
        append_record(args.results, rec)
    print(f"imported {len(new)} records ({len(records) - len(new)} already there) -> {args.results}",
          file=sys.stderr)
    return 0


def cmd_slurm(args) -> int:
    from calibrate.run.slurm import write_slurm_jobs
    from calibrate.records.sweep import load_sweep

    try:
        from hardware import load_hardware
    except ImportError as exc:  # pragma: no cover - the hardware package ships with perfmodel
        raise UserError(f"hardware catalog unavailable: {exc}") from None
    cluster = load_hardware(args.cluster)
    sweep = load_sweep(args.sweep)
    scripts = write_slurm_jobs(sweep, cluster, args.account, args.partition, Path(args.out), modules=args.module,
                               env_setup=args.env_setup, time_limit_s=args.time, array=args.array,
                               python=args.python, cpus_per_task=args.cpus_per_task,
                               network_interface=args.network_interface)
    for path in scripts:
        print(path)
    print(f"{len(scripts)} job scripts; submit them all with: bash {Path(args.out) / 'submit.sh'}", file=sys.stderr)
    return 0
