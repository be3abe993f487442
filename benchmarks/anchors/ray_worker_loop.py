"""Time, on this CPU, a stand-in for vLLM 0.7.0's stop and restart of its Ray workers' execution loop when the engine
goes idle (vLLM's calls mimicked with Ray actors, not its code run): the anchor of the stop and start that a closed
loop of requests pays before every wave. The per-worker cost depends on the machine's cores (the actors' wake-ups
share them): timed on 2 cores here, and on one (``taskset -c 0``) by a reviewer, 0.54 ms to start and 0.73 ms to
stop per worker against 0.34-0.44 ms on two.

What vLLM 0.7.0 does (read in the wheel). With pipeline parallelism ``AsyncLLMEngine.run_engine_loop``
(vllm/engine/async_llm_engine.py), once no virtual engine has work, awaits
``DistributedExecutorBase.stop_remote_worker_execution_loop_async`` (vllm/executor/executor_base.py) before it waits
for new requests: ``_driver_execute_model_async()`` with no request (stage 0's driver in a thread of the engine
process, ``make_async``; every other stage's driver through ``execute_method.remote``, vllm/executor/
ray_distributed_executor.py), each driver broadcasting the stop to its TP workers, then it awaits the task holding
the ``start_worker_execution_loop`` calls of all non-driver workers, which return once they read the stop. With one
stage, ``LLMEngine.step`` (vllm/engine/llm_engine.py) calls the synchronous ``stop_remote_worker_execution_loop``
after the step that leaves nothing unfinished (``ray.get`` of the same calls). The next ``execute_model(_async)``
starts the loops again: ``_start_worker_execution_loop`` (one ``execute_method.remote("start_worker_execution_loop")``
per non-driver worker, gathered in an asyncio task) or ``_run_workers(..., async_run_tensor_parallel_workers_only=
True)``, while the drivers already broadcast the first step.

What is timed. ``num_cpus=0`` Ray actors stand for the non-driver workers (and, with ``--stages 2``, one for the
second stage's driver). A worker's loop blocks reading a FIFO, where vLLM's worker blocks in
``broadcast_tensor_dict``'s shared-memory ring buffer (a spinning reader; a FIFO wakes a blocked process instead,
which on a 2-core machine shared by 15 processes is the fairer stand-in). Per trial: ``restart_s``, from the first
``.remote`` submission to the last worker's entry into its loop (CLOCK_MONOTONIC is one clock for every process);
``stop_s``, from the driver's broadcast of the stop (stage 1's: a ``.remote`` call to its driver, which writes to its
own workers) to the engine having every loop call's result back. Not in it: the second node's network hops (the
Taiwania nodes' Ray traffic crosses IPoIB or Ethernet), NCCL, the GPU, and the overlap of the start with the drivers'
own preparation of the first step (vLLM submits the start calls, then prepares and broadcasts: only what is left of
the start after that is on the step's critical path; the simulator charges all of it).

    python3 -m venv /tmp/rayenv && /tmp/rayenv/bin/pip install ray numpy
    /tmp/rayenv/bin/python benchmarks/anchors/ray_worker_loop.py --trials 200 --out data/anchors/ray-worker-loop.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


class LoopWorker:
    """A non-driver worker: ``loop`` blocks until its FIFO says stop, and returns when it entered."""

    def __init__(self, fifo: str) -> None:
        self.fifo = fifo

    def loop(self) -> float:
        entered = time.monotonic()
        with open(self.fifo, "rb", buffering=0) as f:
            f.read(1)
        return entered


class StageDriver:
    """A later stage's driver: told to stop (an empty ``execute_model``), it broadcasts to its own workers."""

    def __init__(self, fifos: list[str]) -> None:
        self.fifos = fifos

    def execute_method(self, _method: str, _request) -> None:
        broadcast(self.fifos)


def broadcast(fifos: list[str]) -> None:
    for path in fifos:
        with open(path, "wb", buffering=0) as f:
            f.write(b"x")


async def trial(workers, fifos_stage0, stage_drivers, busy_s: float) -> tuple[float, float]:
    loop = asyncio.get_running_loop()

    async def start():  # RayDistributedExecutor._start_worker_execution_loop
        return await asyncio.gather(*[w.loop.remote() for w in workers])

    t_submit = time.monotonic()
    task = asyncio.create_task(start())
    await asyncio.sleep(busy_s)  # the engine's steps run meanwhile
    t_stop = time.monotonic()
    # _driver_execute_model_async(None): stage 0's driver in a thread, the later stages' drivers through Ray
    calls = [loop.run_in_executor(None, broadcast, fifos_stage0)]
    calls += [d.execute_method.remote("execute_model", None) for d in stage_drivers]
    await asyncio.gather(*calls)
    entered = await task
    t_done = time.monotonic()
    return max(entered) - t_submit, t_done - t_stop


def stats(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=10)
    return {"n": len(values), "median_s": statistics.median(values), "p10_s": q[0], "p90_s": q[-1],
            "mean_s": statistics.fmean(values)}


def line_fits(rows: list[dict]) -> list[dict]:
    """Least-squares lines through the medians: restart = fixed + per_worker * workers; stop = the same
    + per_stage * (stages - 1), the stop's Ray call to every later stage's driver."""
    import numpy as np

    fits = []
    for what, names in (("restart", ("fixed_s", "per_worker_s")), ("stop", ("fixed_s", "per_worker_s",
                                                                            "per_stage_s"))):
        sel = [r for r in rows if r["anchor"] == f"v0_worker_loop_{what}"]
        columns = [np.ones(len(sel)), np.array([r["non_driver_workers"] for r in sel], dtype=float)]
        if what == "stop":
            columns.append(np.array([r["pipeline_parallel_size"] - 1 for r in sel], dtype=float))
        x, y = np.column_stack(columns), np.array([r["median_s"] for r in sel])
        coef = np.linalg.lstsq(x, y, rcond=None)[0]
        fit = {"anchor": f"v0_worker_loop_{what}_fit", **dict(zip(names, map(float, coef))),
               "max_residual_s": float(np.max(np.abs(x @ coef - y))),
               "layouts": [f"TP{r['tensor_parallel_size']}xPP{r['pipeline_parallel_size']}" for r in sel]}
        fits.append(fit)
        print(f"{what}: " + ", ".join(f"{k} {1e3 * fit[k]:.3f} ms" for k in names)
              + f" (largest residual {1e3 * fit['max_residual_s']:.2f} ms)", flush=True)
    return fits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--busy-ms", type=float, default=30.0, help="time the loops run between start and stop")
    parser.add_argument("--layouts", default="1x2,1x4,1x8,2x4,2x8,4x2,4x4",
                        help="PPxTP layouts, comma-separated (Taiwania's: 1x8, 2x8, 4x4)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import ray

    layouts = [tuple(int(x) for x in item.lower().split("x")) for item in args.layouts.split(",")]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for stages, tp in layouts:
                fifos = [[os.path.join(tmp, f"pp{stages}tp{tp}s{s}w{i}") for i in range(tp - 1)] for s in range(stages)]
                for path in sum(fifos, []):
                    os.mkfifo(path)
                workers = [ray.remote(num_cpus=0)(LoopWorker).remote(p) for p in sum(fifos, [])]
                drivers = [ray.remote(num_cpus=0)(StageDriver).remote(fifos[s]) for s in range(1, stages)]
                ray.get([w.__ray_ready__.remote() for w in workers + drivers])
                restarts, stops = [], []
                for i in range(args.trials + 10):
                    r, s = asyncio.run(trial(workers, fifos[0], drivers, args.busy_ms / 1e3))
                    if i >= 10:  # warm-up
                        restarts.append(r)
                        stops.append(s)
                for what, values in (("restart", restarts), ("stop", stops)):
                    row = {"anchor": f"v0_worker_loop_{what}", "pipeline_parallel_size": stages,
                           "tensor_parallel_size": tp, "non_driver_workers": len(workers), **stats(values),
                           "ray": ray.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
                           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node()}
                    rows.append(row)
                    print(f"TP{tp}xPP{stages} {what}: median {1e3 * row['median_s']:.2f} ms "
                          f"(p10 {1e3 * row['p10_s']:.2f}, p90 {1e3 * row['p90_s']:.2f})", flush=True)
                for actor in workers + drivers:
                    ray.kill(actor)
    finally:
        ray.shutdown()
    rows += line_fits(rows)
    tmp_out = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp_out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp_out.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
