"""Run a sweep: one worker process per engine configuration, results appended as each run finishes.

Runs already in the results file are skipped, so an interrupted sweep resumes where it stopped. A worker that
dies (out of memory, a crash, a timeout) has its unfinished runs recorded with `status: "error"` and the tail of
its log; the sweep goes on with the next engine configuration. Logs and worker specs are kept next to the
results file, in `<results>.logs/<engine_id>.log` and `.spec.json`.

    perfmodel calibrate run SWEEP.yaml --results results.jsonl [--only PATTERN] [--dry-run]  (perfmodel.cli.calibrate)
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

import calibrate
from calibrate.run import provenance
from calibrate.records.engine_spec import EngineSpec
from calibrate.run.modeldir import ResolvedModel, resolve_model
from calibrate.records.store import append_record, completed_run_ids, iter_new_records
from calibrate.records.sweep import RunConfig, Sweep
from calibrate.run.worker_record import error_tail, make_record
from perfmodel.atomic import write_text_atomic
from perfmodel.errors import UserError

# defaults for the worker's environment; the caller's environment wins
DEFAULT_ENV = {"VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false",
               "NCCL_NVLS_ENABLE": "0"}
POLL_S = 0.5


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    num_runs: int  # runs selected from the sweep
    num_skipped: int  # already in the results file
    num_ok: int
    num_error: int
    results_path: Path


def select_runs(sweep: Sweep, only: str | None, engine_id: str | None = None) -> list[RunConfig]:
    """Runs whose group name or description matches the glob `only`, or whose run_id starts with it; and of
    the engine configuration `engine_id` when given."""
    runs = [r for r in sweep.runs if engine_id is None or r.engine_id == engine_id]
    if not only:
        return runs
    return [r for r in runs if fnmatch.fnmatch(r.group, only) or r.run_id.startswith(only)
            or fnmatch.fnmatch(r.describe(), f"*{only}*")]


def with_backend(sweep: Sweep, backend: str | None) -> Sweep:
    """The sweep with every engine's `distributed_executor_backend` set (e.g. "ray" for multi-node jobs)."""
    if backend is None:
        return sweep
    runs = tuple(dataclasses.replace(r, engine=dataclasses.replace(r.engine, distributed_executor_backend=backend))
                 for r in sweep.runs)
    return dataclasses.replace(sweep, runs=runs)


def run_sweep(sweep: Sweep, results: str | Path, *, only: str | None = None, engine_id: str | None = None,
              dry_run: bool = False,
              retry_errors: bool = False, python: str | None = None, engine_timeout_s: float | None = None,
              worker_env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> RunSummary:
    """Measure every selected run that the results file does not hold yet (see module docstring)."""
    stream = stream if stream is not None else sys.stderr
    results = Path(results)
    selected = select_runs(sweep, only, engine_id)
    done = completed_run_ids(results, include_errors=not retry_errors)
    pending = [r for r in selected if r.run_id not in done]
    groups: dict[EngineSpec, list[RunConfig]] = {}
    for run in pending:
        groups.setdefault(run.engine, []).append(run)
    if dry_run:  # list only engines that could start: a model that resolves, TP dividing its heads
        from calibrate.records.record_schema import planned_engine_problem

        for engine in groups:
            problem = planned_engine_problem(engine.model, engine.tensor_parallel_size, sweep.base_dir)
            if problem:
                raise UserError(f"sweep {sweep.name}: {problem}")
    print(f"sweep {sweep.name}: {len(selected)} runs, {len(selected) - len(pending)} already in {results}, "
          f"{len(pending)} to run on {len(groups)} engine configurations", file=stream, flush=True)
    if dry_run:
        for i, (engine, runs) in enumerate(groups.items(), 1):
            print(f"engine {i}/{len(groups)} {engine.engine_id}: {runs[0].describe().split(' seqs=')[0]}",
                  file=stream)
            for run in runs:
                print(f"  {run.run_id} {run.describe()}", file=stream)
        return RunSummary(num_runs=len(selected), num_skipped=len(selected) - len(pending), num_ok=0, num_error=0,
                          results_path=results)
    models = {m: resolve_model(m, base_dir=sweep.base_dir, cache_dir=results.parent / "models")
              for m in {e.model for e in groups}}  # fail early on a missing model
    progress = _Progress(len(pending), stream)
    num_ok = num_error = 0
    for engine, runs in groups.items():
        ok, err = _run_engine(models[engine.model], engine, runs, results, progress,
                              python=python or sys.executable,
                              timeout_s=engine_timeout_s, worker_env=worker_env)
        num_ok += ok
        num_error += err
    progress.finish()
    return RunSummary(num_runs=len(selected), num_skipped=len(selected) - len(pending), num_ok=num_ok,
                      num_error=num_error, results_path=results)


def _write_worker_spec(model: ResolvedModel, engine: EngineSpec, runs: Sequence[RunConfig], results: Path,
                       python: str) -> tuple[dict[str, Any], list[str], Path, int]:
    """Start the engine's section of its log and write the spec its worker reads: `<results>.logs/<engine_id>`
    `.log` and `.spec.json`. Returns the spec, the worker's command, the log file and the byte offset where this
    attempt's log starts (earlier attempts' output stays above it)."""
    log_dir = results.parent / f"{results.name}.logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"{engine.engine_id}.log"
    spec_file = log_dir / f"{engine.engine_id}.spec.json"
    with open(log_file, "ab") as log:
        log.write(f"\n===== {provenance.utc_now()} engine {engine.engine_id} ({len(runs)} runs)\n".encode())
        log_offset = log.tell()
    spec = {
        "engine_id": engine.engine_id,
        "engine": engine.to_dict(),
        "model_path": model.path,
        "model_config_hash": model.config_hash,
        "vocab_size": model.vocab_size,
        "results": str(results.resolve()),
        "log_file": str(log_file.resolve()),
        "log_offset": log_offset,
        "runs": [{"run_id": r.run_id, "sweep": r.sweep, "group": r.group, "workload": r.workload.to_dict()}
                 for r in runs],
    }
    cmd = [python, "-m", "calibrate.run.worker", str(spec_file.resolve())]
    spec["command"] = " ".join(cmd)
    write_text_atomic(spec_file, json.dumps(spec, indent=1))
    return spec, cmd, log_file, log_offset


def _run_engine(model: ResolvedModel, engine: EngineSpec, runs: Sequence[RunConfig], results: Path,
                progress: "_Progress", *, python: str, timeout_s: float | None,
                worker_env: Mapping[str, str] | None) -> tuple[int, int]:
    """Run one engine configuration's worker, report each run as its record appears, and record the runs it
    left unfinished as errors. Returns the number of ok and error records."""
    spec, cmd, log_file, log_offset = _write_worker_spec(model, engine, runs, results, python)
    env = {**DEFAULT_ENV, **os.environ, **(worker_env or {})}
    root = str(Path(calibrate.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    progress.engine(runs[0])
    wanted = {r.run_id: r for r in runs}
    seen: set[str] = set()
    counts = [0, 0]
    offset = results.stat().st_size if results.exists() else 0
    start = time.monotonic()

    def collect() -> None:
        nonlocal offset
        records, offset = iter_new_records(results, offset)
        for rec in records:
            rid = rec.get("run_id")
            if rid in wanted and rid not in seen:
                seen.add(rid)
                counts[rec.get("status") != "ok"] += 1
                progress.done(wanted[rid], rec.get("status", "?"), rec.get("metrics"))

    with open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        reason = None
        try:
            with _terminate_on_sigterm():
                while proc.poll() is None:
                    time.sleep(POLL_S)
                    collect()
                    if timeout_s is not None and time.monotonic() - start > timeout_s:
                        reason = f"timed out after {timeout_s:.0f} s"
                        _kill_group(proc)
        finally:
            if proc.poll() is None:
                _kill_group(proc)
    collect()
    missing = [r for r in runs if r.run_id not in seen]
    if missing:
        tail = error_tail(log_file.read_bytes()[log_offset:].decode(errors="replace"))
        why = reason or f"worker exited with code {proc.returncode}"
        env_info = {"hostname": os.uname().nodename, "date_utc": provenance.utc_now(), "command": " ".join(cmd),
                    "log_file": str(log_file)}
        for run in missing:
            rec = make_record(spec=spec, run=spec["runs"][runs.index(run)], status="error", metrics=None,
                              engine_info=None, env=env_info, error=f"{why}\n{tail}")
            append_record(results, rec)
        collect()
    return counts[0], counts[1]


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(15)
            return
        except subprocess.TimeoutExpired:
            continue


class _terminate_on_sigterm:
    """Turn SIGTERM into KeyboardInterrupt so the worker group is killed on the way out."""

    def __enter__(self):
        self.old = None
        try:
            self.old = signal.signal(signal.SIGTERM, self._raise)
        except ValueError:  # not the main thread
            pass
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
        return False


class _Progress:
    """`[k/N] description ok in X s` per run (perfmodel.progress draws the bar on a terminal)."""

    def __init__(self, total: int, stream: TextIO) -> None:
        from perfmodel.progress import Progress

        self.total, self.k = total, 0
        self.reporter = Progress(stream, label="runs", delay_s=0.0)
        self.t_last = time.monotonic()

    def engine(self, run: RunConfig) -> None:
        self.reporter.note(f"engine {run.engine_id}: starting {run.describe().split(' seqs=')[0]} "
                           f"seqs={run.engine.max_num_seqs}")
        self.t_last = time.monotonic()

    def done(self, run: RunConfig, status: str, metrics: Mapping[str, Any] | None) -> None:
        self.k += 1
        now = time.monotonic()
        extra = ""
        if status == "ok" and metrics and metrics.get("output_tokens_per_second"):
            extra = f", {metrics['output_tokens_per_second']:.1f} output tok/s"
        self.reporter.note(f"[{self.k}/{self.total}] {run.describe()} {status} in {now - self.t_last:.1f}s{extra}")
        self.t_last = now
        if self.reporter.tty:
            self.reporter(self.k, self.total)

    def finish(self) -> None:
        self.reporter.close()
