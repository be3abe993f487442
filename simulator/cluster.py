"""Data-parallel replicas behind a router, and the client that sends the requests.

The client follows vLLM's `benchmark_serving`: a request reaches its replica `request_latency_s` after it is
sent (the server's path before the engine queue; 0 by default, latencies count from the send); request i is sent at its arrival time, or, with
`max_concurrency`, when fewer than `max_concurrency` requests are outstanding (a semaphore; requests keep
their order). A request finishing frees its slot at once, so the next one is sent at that same instant.

Routers: "round_robin" (in sending order), "least_loaded" (fewest outstanding requests, lowest index on ties),
"random" (uniform, from the simulation's seeded generator).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import simpy

from simulator.request import RequestTable

ROUTERS = ("round_robin", "least_loaded", "random")


class Router:
    """Chooses the replica for each request from the number of outstanding requests per replica."""

    def __init__(self, name: str, num_replicas: int, rng: np.random.Generator) -> None:
        if name not in ROUTERS:
            raise ValueError(f"unknown router {name!r}; choose one of {', '.join(ROUTERS)}")
        self.name = name
        self.num_replicas = num_replicas
        self._rng = rng
        self._next = 0

    def pick(self, outstanding: Sequence[int]) -> int:
        if self.name == "round_robin":
            r = self._next
            self._next = (r + 1) % self.num_replicas
            return r
        if self.name == "least_loaded":
            return min(range(self.num_replicas), key=outstanding.__getitem__)
        return int(self._rng.integers(self.num_replicas))


class Client:
    """Sends the requests of a `RequestTable` to replicas through a router (a SimPy process)."""

    def __init__(self, env: simpy.Environment, table: RequestTable, router: Router,
                 max_concurrency: int | None, request_latency_s: float = 0.0) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if not 0.0 <= request_latency_s < float("inf"):
            raise ValueError(f"request_latency_s must be finite and >= 0, got {request_latency_s}")
        # time from the client's send to the engine's queue (HTTP, tokenization, the server's engine client):
        # latencies are measured from the send, so TTFT and E2E include it, and a closed loop's next request
        # reaches the engine this much after the previous one finished
        self.request_latency_s = float(request_latency_s)
        self.env = env
        self.table = table
        self.router = router
        self.max_concurrency = max_concurrency
        self.replicas: list = []
        self.outstanding = [0] * router.num_replicas
        self.num_outstanding = 0
        self.max_outstanding_seen = 0
        self.num_finished = 0
        # sending order: by arrival time, ties by position
        self._order = np.argsort(np.asarray(table.arrival_s), kind="stable").tolist()
        self._pos = 0
        self._blocked = False  # waiting for a concurrency slot
        # Open loop with a state-independent router: every request's replica is known in advance, so each
        # replica can be told when its next request comes (it then needs no wake-up in a decode run).
        self._assignment: list[int] | None = None
        if max_concurrency is None and router.name in ("round_robin", "random"):
            self._assignment = [router.pick(self.outstanding) for _ in self._order]

    def arrivals_by_replica(self) -> list[list[float]] | None:
        """Each replica's arrival times in order, when known in advance (else None)."""
        if self._assignment is None:
            return None
        out: list[list[float]] = [[] for _ in range(self.router.num_replicas)]
        for req, r in zip(self._order, self._assignment):
            out[r].append(self.table.arrival_s[req] + self.request_latency_s)
        return out

    def start(self, replicas: list) -> None:
        self.replicas = replicas
        self.env.process(self._run())

    def _send(self, req: int) -> None:
        r = self._assignment[self._pos - 1] if self._assignment is not None else self.router.pick(self.outstanding)
        self.table.sent_s[req] = self.env.now
        self.table.replica[req] = r
        self.outstanding[r] += 1
        self.num_outstanding += 1
        if self.num_outstanding > self.max_outstanding_seen:
            self.max_outstanding_seen = self.num_outstanding
        if self.request_latency_s > 0:
            self.env.process(self._deliver(r, req))
        else:
            self.replicas[r].submit(req)

    def _deliver(self, replica: int, req: int):
        yield self.env.timeout(self.request_latency_s)
        self.replicas[replica].submit(req)

    def _run(self):
        env, order, arrival = self.env, self._order, self.table.arrival_s
        limit = self.max_concurrency
        while self._pos < len(order):
            req = order[self._pos]
            wait = arrival[req] - env.now
            if wait > 0:
                yield env.timeout(wait)
            if limit is not None and self.num_outstanding >= limit:
                self._blocked = True
                return  # on_finish resumes sending
            self._pos += 1
            self._send(req)  # _send reads the position of req as self._pos - 1

    def on_finish(self, req: int) -> None:
        r = self.table.replica[req]
        self.outstanding[r] -= 1
        self.num_outstanding -= 1
        self.num_finished += 1
        if not self._blocked:
            return
        # The sending process stopped at the concurrency limit: send what is due now, at this instant.
        order, arrival, now = self._order, self.table.arrival_s, self.env.now
        while self._pos < len(order) and self.num_outstanding < self.max_concurrency:
            req_next = order[self._pos]
            if arrival[req_next] > now:
                self._blocked = False
                self.env.process(self._run())
                return
            self._pos += 1
            self._send(req_next)
