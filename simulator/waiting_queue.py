"""The base of the schedulers: a FCFS queue of the requests waiting for admission (`WaitingQueue`)."""

from __future__ import annotations

from collections import deque


class WaitingQueue:
    """The FCFS queue of request indices both schedulers keep (continuous and static batching)."""

    def __init__(self) -> None:
        self.waiting: deque[int] = deque()

    def add_request(self, req: int) -> None:
        self.waiting.append(req)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

