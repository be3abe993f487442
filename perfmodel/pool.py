"""Run a function over tasks in worker processes, or inline when one worker is asked for."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os

from perfmodel.errors import UserError


class Inline:
    """The executor interface, run in this process (one worker, or where processes are not wanted)."""

    _max_workers = 1

    def submit(self, fn, *args, **kwargs) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001  (re-raised by future.result())
            future.set_exception(exc)
        return future

    def __enter__(self) -> "Inline":
        return self

    def __exit__(self, *exc) -> None:
        return None


def executor(workers: int | None):
    workers = workers or os.cpu_count() or 1
    if not 1 <= workers <= 4 * (os.cpu_count() or 1):
        raise UserError(f"--workers must be from 1 to {4 * (os.cpu_count() or 1)} (4 per core), got {workers}")
    if workers == 1:
        return Inline()
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=context)
