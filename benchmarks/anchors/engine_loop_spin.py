"""Time, on this CPU, how much vLLM 0.7.0's engine-loop spin slows a thread running torch ops: a stand-in for stage 0's
driver worker with pipeline parallelism while a virtual engine is idle.

What vLLM 0.7.0 does (read in the wheel). ``AsyncLLMEngine.run_engine_loop`` (vllm/engine/async_llm_engine.py) keeps
one task per virtual engine in ``requests_in_progress``; an engine whose step returned nothing and that has no
unfinished request is marked idle, but its finished task stays in that list, so ``asyncio.wait(requests_in_progress,
return_when=FIRST_COMPLETED)`` returns at once on every pass: while any virtual engine is idle and another busy, the
event loop spins (one ``asyncio.wait`` and three ``asyncio.sleep(0)`` per pass). Stage 0's driver worker runs in a
thread of the same process (``RayDistributedExecutor.driver_exec_method = make_async(...)``, a ThreadPoolExecutor
thread), and every torch op releases the GIL and takes it back.

What is timed: the same loop shape in the main thread (a finished task in the wait set) against an idle loop, while a
``run_in_executor`` thread runs N tiny torch ops (16-element adds, one thread) or pure Python; medians of 30 runs.

    .venv/bin/python benchmarks/anchors/engine_loop_spin.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time


def torch_ops(n: int) -> float:
    import torch

    a, b = torch.ones(16), torch.ones(16)
    t0 = time.perf_counter()
    for _ in range(n):
        a = a + b
    return time.perf_counter() - t0


def python_loop(n: int) -> float:
    t0 = time.perf_counter()
    s = 0
    for i in range(n):
        s += i
    return time.perf_counter() - t0


async def timed(spin: bool, work, n: int, reps: int) -> float:
    loop = asyncio.get_running_loop()
    idle_engine = asyncio.create_task(asyncio.sleep(0))  # an idle virtual engine's finished task
    await idle_engine
    stop = False

    async def engine_loop():  # run_engine_loop's passes while another engine's step runs
        while not stop:
            await asyncio.wait([idle_engine], return_when=asyncio.FIRST_COMPLETED)
            for _ in range(2):  # `for _ in range(pipeline_parallel_size): await asyncio.sleep(0)`
                await asyncio.sleep(0)
            await asyncio.sleep(0)

    spinner = asyncio.create_task(engine_loop()) if spin else None
    times = [await loop.run_in_executor(None, work, n) for _ in range(reps)]
    stop = True
    if spinner is not None:
        await spinner
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    for name, work, n in (("torch ops", torch_ops, args.ops), ("pure Python", python_loop, 100 * args.ops)):
        idle = asyncio.run(timed(False, work, n, args.reps))
        spun = asyncio.run(timed(True, work, n, args.reps))
        extra = f", {1e6 * (spun - idle) / n:.2f} us more per op" if work is torch_ops else ""
        print(f"{name}: {1e3 * idle:.2f} ms with an idle loop, {1e3 * spun:.2f} ms with the spin "
              f"(x{spun / idle:.2f}{extra})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
