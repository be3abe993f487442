"""Discrete-event simulator of an LLM inference engine, generic over a step-cost function.

It knows nothing about GPUs: a `StepCost` turns a `BatchStats` (one engine step) into seconds.
Entry point: `simulate(requests, engine, step_cost, ...) -> SimResult`.
"""

from simulator.batch import BatchStats, LinearStepCost, StepCost
from simulator.config import EngineConfig
from simulator.metrics import Metrics
from simulator.request import Request, RequestResults, requests_from_arrays
from simulator.workload import LengthDistribution, arrival_times, load_trace, make_requests


def __getattr__(name: str):
    """``simulate`` and ``SimResult`` on first use: they need simpy, which a calibration worker on a GPU machine
    (calibrate/run/client.py draws its arrivals from simulator.workload) does not have."""
    if name in ("simulate", "SimResult"):
        from simulator import run

        return getattr(run, name)
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")


__all__ = [
    "BatchStats", "StepCost", "LinearStepCost", "EngineConfig", "Metrics", "Request", "RequestResults",
    "requests_from_arrays", "SimResult", "simulate", "LengthDistribution", "arrival_times", "load_trace",
    "make_requests",
]
