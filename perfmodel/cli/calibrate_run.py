"""The flags of `calibrate run` (in a module of their own: building `perfmodel --help` imports no runner)."""

from __future__ import annotations


def add_run_arguments(ap) -> None:
    from perfmodel.cli.validate import input_file, output_file, real

    ap.add_argument("sweep", type=input_file("yaml"), help="sweep YAML file")
    ap.add_argument("--results", required=True, type=output_file, help="results file (JSON lines; appended)")
    ap.add_argument("--only", help="run only runs whose group/description matches this glob, or a run_id prefix")
    ap.add_argument("--engine", metavar="ENGINE_ID", help="run only the runs of this engine configuration")
    ap.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    ap.add_argument("--retry-errors", action="store_true", help="run again the runs recorded with an error")
    ap.add_argument("--distributed-executor-backend", choices=["mp", "ray"], default=None,
                    help="set vLLM's executor backend for every engine (ray for multi-node jobs)")
    ap.add_argument("--engine-timeout", type=real(0, 1e8, low_open=True), default=None, metavar="SECONDS",
                    help="kill an engine configuration after this long and record its runs as errors")
