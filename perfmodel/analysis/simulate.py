"""Workloads for a Scenario's simulation, and what is built on ``Scenario.simulate``: the offline run of the
scenario's own workload, continuous vs static batching, timeline files.

    >>> from perfmodel.scenario import Scenario
    >>> from perfmodel.layout import Layout
    >>> from perfmodel.analysis.simulate import build_requests, length_distribution
    >>> scenario = Scenario.build(model="llama-3.1-8b", hardware="hgx-h200", entry_point="serve")
    >>> requests = build_requests(input_len=500, output_len=length_distribution("lognormal", 200, 0.6),
    ...                           num_prompts=1000, request_rate=20, seed=0)
    >>> result = scenario.simulate(Layout(tp=1, dp=8), requests)
    >>> result.metrics.ttft_s_p99
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from perfmodel.atomic import atomic_path
from perfmodel.errors import UserError
from perfmodel.layout import Layout
from perfmodel.scenario_options import DISTRIBUTIONS
from simulator.metrics import Metrics
from simulator.request import Request, requests_from_arrays
from simulator.run import SimResult
from simulator.stream import RequestStream
from simulator.workload import LengthDistribution, load_trace, stream_requests

DEFAULT_SPREAD = 0.5
MAX_ARRIVAL_S = 1e9  # a trace's latest arrival: beyond it a step's time is lost in the clock's rounding


# the widest spread per kind whose draws, rounded and clipped to >= 1 token, keep the mean asked for: a wider
# lognormal puts the median at mean * exp(-sigma^2 / 2) (sigma 50: every request 1 token, the mean in a tail no
# sample reaches); a normal twice as wide as its mean clips a third of its draws to 1 token
MAX_SPREAD = {"uniform": 1.0, "normal": 1.0, "lognormal": 2.0}


def length_distribution(kind: str, mean: int, spread: float | None = None, *,
                        flag: str = "--input") -> LengthDistribution:
    """A token-length distribution of mean ``mean`` from a CLI-style kind and one spread number.

    ``spread`` (default 0.5): lognormal: sigma of the underlying normal; normal: standard deviation / mean;
    uniform: half-width / mean, integers in ``[mean (1 - spread), mean (1 + spread)]`` (vLLM's
    ``--random-range-ratio``); fixed: ignored.
    """
    if kind not in DISTRIBUTIONS:
        raise UserError(f"{flag}-dist must be one of {', '.join(DISTRIBUTIONS)}, got {kind!r}")
    if mean < 1:
        raise UserError(f"{flag}-len must be at least 1, got {mean}")
    spread = DEFAULT_SPREAD if spread is None else spread
    widest = MAX_SPREAD.get(kind, math.inf)
    if not (0 <= spread < math.inf) or spread > widest or (kind == "uniform" and spread >= widest):
        raise UserError(f"{flag}-sigma must be from 0 to {widest:g}{' (exclusive)' if kind == 'uniform' else ''} "
                        f"for {kind} lengths, whose draws then keep their mean; got {spread}")
    if kind == "fixed":
        return LengthDistribution.fixed(mean)
    if kind == "uniform":
        return LengthDistribution.uniform(max(1, round(mean * (1 - spread))), max(1, round(mean * (1 + spread))))
    if kind == "normal":
        return LengthDistribution.normal(mean, spread * mean)
    return LengthDistribution.lognormal(mean, spread)


def as_length_distribution(value: int | LengthDistribution, flag: str) -> LengthDistribution:
    """``value`` as is when a distribution, else fixed lengths of ``value`` tokens (``flag`` names it in errors)."""
    if isinstance(value, LengthDistribution):
        return value
    if int(value) < 1:
        raise UserError(f"{flag} must be at least 1, got {value}")
    return LengthDistribution.fixed(int(value))


def build_requests(*, input_len: int | LengthDistribution = 100, output_len: int | LengthDistribution = 600,
                   num_prompts: int = 300, request_rate: float = math.inf, burstiness: float = 1.0, seed: int = 0,
                   trace: str | Path | None = None, max_model_len: int | None = None,
                   shared_prefix_len: int = 0, trace_format: str = "auto", trace_start_s: float = 0.0,
                   trace_duration_s: float = math.inf) -> list[Request]:
    """Requests of a workload: lengths fixed (int) or drawn from a distribution, arrivals at ``request_rate``
    (``inf``: all at t=0, offline) with gamma gaps of shape ``burstiness`` (1 = Poisson), all from ``seed``
    (lengths from the stream ``seed``, send times from ``[seed, 3]`` as calibrate's runner sends them);
    or read from a ``trace`` (CSV/JSONL, or the Azure LLM inference / BurstGPT formats: ``simulator.traces``;
    ``trace_format`` "auto" tells them by their columns), the requests of the window [``trace_start_s``,
    ``trace_start_s + trace_duration_s``) seconds after its first one.

    With ``max_model_len``, drawn prompts are cut to ``max_model_len - 1`` tokens and outputs to what is left
    (vLLM would refuse longer requests); a trace with longer requests is refused.

    ``shared_prefix_len`` K > 0: every prompt starts with the same K tokens (``Request.num_shared_prefix_tokens``;
    the simulator reuses their KV under prefix caching); every prompt must be longer than K.
    """
    return build_request_stream(input_len=input_len, output_len=output_len, num_prompts=num_prompts,
                                request_rate=request_rate, burstiness=burstiness, seed=seed, trace=trace,
                                max_model_len=max_model_len, shared_prefix_len=shared_prefix_len,
                                trace_format=trace_format, trace_start_s=trace_start_s,
                                trace_duration_s=trace_duration_s).to_requests()


def build_request_stream(*, input_len: int | LengthDistribution = 100, output_len: int | LengthDistribution = 600,
                         num_prompts: int = 300, request_rate: float = math.inf, burstiness: float = 1.0,
                         seed: int = 0, trace: str | Path | None = None, max_model_len: int | None = None,
                         shared_prefix_len: int = 0, trace_format: str = "auto", trace_start_s: float = 0.0,
                         trace_duration_s: float = math.inf) -> RequestStream:
    """``build_requests``'s workload as a lazily drawn ``simulator.stream.RequestStream`` (the same requests;
    a generated workload is never held whole)."""
    if trace is not None:
        stream = RequestStream.from_requests(_trace_requests(trace, max_model_len, trace_format, trace_start_s,
                                                             trace_duration_s))
    else:
        stream = _generated(input_len, output_len, num_prompts, request_rate, burstiness, seed, max_model_len,
                            shared_prefix_len)
    if shared_prefix_len:
        shortest = min(int(c.num_prompt_tokens.min()) for c in stream.chunks())
        if not 0 < shared_prefix_len < shortest:
            raise UserError(f"--shared-prefix-len must be below every prompt's length (the shortest has "
                            f"{shortest} tokens), got {shared_prefix_len}")
        if trace is not None:
            requests = [dataclasses.replace(r, num_shared_prefix_tokens=shared_prefix_len)
                        for r in stream.to_requests()]
            stream = RequestStream.from_requests(requests)
    return stream


def _trace_requests(trace, max_model_len, trace_format="auto", start_s=0.0, duration_s=math.inf):
    try:
        requests = load_trace(trace, trace_format, start_s=start_s, duration_s=duration_s)
    except (OSError, ValueError, KeyError, OverflowError) as exc:
        raise UserError(f"cannot read trace {trace}: {exc}") from None
    if not requests:
        window = "" if not start_s and math.isinf(duration_s) else f" from {start_s:g} s for {duration_s:g} s"
        raise UserError(f"trace {trace} has no requests{window}")
    for r in (min(requests, key=lambda r: r.arrival_s), max(requests, key=lambda r: r.arrival_s)):
        if not 0 <= r.arrival_s <= MAX_ARRIVAL_S:
            raise UserError(f"trace {trace}: request {r.id} arrives at {r.arrival_s:g} s; arrivals are "
                            f"limited to 0 to {MAX_ARRIVAL_S:g} s (~30 years)")
    if max_model_len is not None:
        longest = max(requests, key=lambda r: r.num_prompt_tokens + r.num_output_tokens)
        if longest.num_prompt_tokens + longest.num_output_tokens > max_model_len:
            raise UserError(f"trace {trace}: request {longest.id} has {longest.num_prompt_tokens} + "
                            f"{longest.num_output_tokens} tokens, more than max_model_len {max_model_len}")
    return requests


def _generated(input_len, output_len, num_prompts, request_rate, burstiness, seed, max_model_len,
               shared_prefix_len) -> RequestStream:
    if num_prompts < 1:
        raise UserError(f"--num-prompts must be at least 1, got {num_prompts}")
    if not request_rate > 0:
        raise UserError(f"--request-rate must be positive (inf for offline), got {request_rate}")
    if not burstiness > 0:
        raise UserError(f"--burstiness must be positive, got {burstiness}")
    if max_model_len is not None and max_model_len < 2:
        raise UserError(f"--max-model-len must be at least 2 to hold a prompt and a token, got {max_model_len}")
    # send times from their own stream, the one calibrate's runner uses: a simulation and a measured run of the
    # same seed and rate send requests at the same moments
    return stream_requests(num_prompts, as_length_distribution(input_len, "--input-len"),
                           as_length_distribution(output_len, "--output-len"), length_seed=seed,
                           arrival_seed=[seed, 3], request_rate=request_rate, burstiness=burstiness,
                           max_model_len=max_model_len, num_shared_prefix_tokens=shared_prefix_len)


def simulate_offline(scenario, layout: Layout) -> Metrics:
    """Metrics of the scenario's offline workload (``num_prompts`` identical requests at t=0) on ``layout``.

    With identical requests sent together, round-robin replicas are independent and the first one gets the
    most requests (``ceil(num_prompts / dp)``) and finishes last; so one replica is simulated and the
    throughputs are the whole workload over its duration (exact), the latencies those of that replica.
    """
    w = scenario.workload
    per_replica = math.ceil(w.num_prompts / layout.dp)
    requests = requests_from_arrays(np.zeros(per_replica), np.full(per_replica, w.input_len),
                                    np.full(per_replica, w.output_len))
    m = scenario.simulate(dataclasses.replace(scenario.expert_layout(layout), dp=1), requests).metrics
    n, duration = w.num_prompts, m.elapsed_s
    return dataclasses.replace(
        m, num_requests=n, total_input_tokens=n * w.input_len, total_output_tokens=n * w.output_len,
        requests_per_second=n / duration, input_tokens_per_second=n * w.input_len / duration,
        output_tokens_per_second=n * w.output_len / duration,
        tokens_per_second=n * (w.input_len + w.output_len) / duration)


def compare_batching(scenario, layout: Layout, requests: list[Request], *, max_concurrency: int | None = None,
                     router: str = "round_robin", seed: int = 0, served: bool = False) -> dict[str, SimResult]:
    """The same workload under continuous and static batching (timelines recorded for plots)."""
    return {policy: scenario.simulate(layout, requests, max_concurrency=max_concurrency, router=router,
                                      record_timeline=True, seed=seed, batching=policy, served=served)
            for policy in ("continuous", "static")}


def write_timeline(result: SimResult, path: str | Path) -> tuple[Path, Path]:
    """Per-step CSV at ``path`` and per-request CSV at ``<stem>-requests.csv`` beside it, written atomically."""
    if result.timeline is None:
        raise ValueError("the simulation did not record a timeline (record_timeline=True)")
    path = Path(path)
    requests_path = path.with_name(f"{path.stem}-requests{path.suffix or '.csv'}")
    for frame, target in ((result.timeline, path), (result.requests.to_dataframe(), requests_path)):
        try:
            with atomic_path(target) as tmp:
                frame.to_csv(tmp, index=False, float_format="%.9g")
        except OSError as exc:
            raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
    return path, requests_path


def save_trace(requests: list[Request], path: str | Path) -> Path:
    """Write a CSV (or JSONL by suffix) trace that ``simulator.workload.load_trace`` reads back, atomically."""
    import json

    path = Path(path)
    rows = [{"arrival_s": float(r.arrival_s), "num_prompt_tokens": int(r.num_prompt_tokens),
             "num_output_tokens": int(r.num_output_tokens)} for r in requests]
    with atomic_path(path) as tmp:
        if path.suffix in (".jsonl", ".json"):
            tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
        else:
            import pandas as pd

            pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.17g")
    return path
