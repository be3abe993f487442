"""A small streaming load generator for an OpenAI-compatible `/v1/completions` server (no dependencies).

Raw HTTP/1.1 over asyncio streams; prompts are lists of token ids, so the server needs no tokenizer. Per request
it records the send time, the arrival of every streamed chunk and the number of output tokens; `summarize`
turns that into vLLM's benchmark metrics (seconds): TTFT, TPOT (excludes the first token), ITL (gaps between
chunks), E2E, with mean/median/p90/p99, and requests/s, tokens/s (input+output), output tokens/s.
"""
from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

PERCENTILES = (("mean", None), ("median", 50), ("p90", 90), ("p99", 99))


@dataclass(kw_only=True)
class RequestResult:
    prompt_len: int
    expected_output_len: int
    send_s: float = 0.0  # when the request was sent, seconds since the benchmark started
    chunk_s: list[float] = field(default_factory=list)  # arrival of each chunk carrying tokens, same clock
    end_s: float = 0.0
    num_output_tokens: int = 0
    success: bool = False
    error: str | None = None

    @property
    def ttft_s(self) -> float | None:
        return self.chunk_s[0] - self.send_s if self.chunk_s else None

    @property
    def e2e_s(self) -> float:
        return self.end_s - self.send_s

    @property
    def itl_s(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_s, self.chunk_s[1:])]

    @property
    def tpot_s(self) -> float | None:
        if self.num_output_tokens < 2 or self.ttft_s is None:
            return None
        return (self.e2e_s - self.ttft_s) / (self.num_output_tokens - 1)


async def send_completion(host: str, port: int, payload: dict[str, Any], result: RequestResult, t0: float,
                          timeout_s: float = 3600.0) -> RequestResult:
    """POST one streaming completion and fill `result` (times relative to `t0` = time.perf_counter())."""
    body = json.dumps(payload).encode()
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 22), timeout_s)
        result.send_s = time.perf_counter() - t0
        writer.write(head + body)
        await writer.drain()
        await asyncio.wait_for(_read_stream(reader, result, t0), timeout_s)
    except (OSError, asyncio.TimeoutError, ValueError) as exc:
        result.success, result.error = False, f"{type(exc).__name__}: {exc}"
    finally:
        result.end_s = time.perf_counter() - t0
        if writer is not None:
            writer.close()
    return result


async def _read_stream(reader: asyncio.StreamReader, result: RequestResult, t0: float) -> None:
    status = (await reader.readline()).decode(errors="replace").strip()
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        k, _, v = line.decode(errors="replace").partition(":")
        headers[k.strip().lower()] = v.strip()
    code = int(status.split()[1]) if len(status.split()) > 1 else 0
    chunked = "chunked" in headers.get("transfer-encoding", "")
    buf = b""
    usage_tokens = None
    counted = 0
    async for data in _body(reader, chunked):
        if code != 200:
            buf += data
            continue
        now = time.perf_counter() - t0
        buf += data
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            for line in event.splitlines():
                if not line.startswith(b"data:"):
                    continue
                text = line[5:].strip()
                if text == b"[DONE]":
                    continue
                msg = json.loads(text)
                if msg.get("usage"):
                    usage_tokens = msg["usage"].get("completion_tokens")
                choices = msg.get("choices") or []
                if choices:
                    counted += max(1, len(choices[0].get("token_ids") or []))
                    result.chunk_s.append(now)
    if code != 200:
        result.success, result.error = False, f"HTTP {code}: {buf[-500:].decode(errors='replace')}"
        return
    result.num_output_tokens = usage_tokens if usage_tokens is not None else counted
    result.success = True


async def _body(reader: asyncio.StreamReader, chunked: bool):
    if not chunked:
        while data := await reader.read(1 << 16):
            yield data
        return
    while True:
        size_line = await reader.readline()
        if not size_line:
            return
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        data = await reader.readexactly(size)
        await reader.readexactly(2)
        yield data


def arrival_times(num: int, request_rate: float, burstiness: float, seed: int) -> list[float]:
    """Send times (s) of the workload with this seed: ``simulator.workload.arrival_times`` drawn from the
    stream ``[seed, 3]``, as ``perfmodel simulate`` and ``calibrate predict`` draw them, so a prediction and the
    measured run send requests at the same moments."""
    import numpy as np

    from simulator.workload import arrival_times as draw

    return draw(num, np.random.default_rng([seed, 3]), request_rate=request_rate, burstiness=burstiness).tolist()


async def run_benchmark(host: str, port: int, model: str, prompts: Sequence[Sequence[int]],
                        output_lens: Sequence[int], *, request_rate: float = math.inf, burstiness: float = 1.0,
                        max_concurrency: int | None = None, seed: int = 0) -> tuple[list[RequestResult], float]:
    """Send every prompt at its arrival time (at most `max_concurrency` in flight); returns the per-request
    results and the benchmark duration (s, first send to last completion)."""
    arrivals = arrival_times(len(prompts), request_rate, burstiness, seed)
    sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    t0 = time.perf_counter()

    async def one(i: int) -> RequestResult:
        delay = arrivals[i] - (time.perf_counter() - t0)
        if delay > 0:
            await asyncio.sleep(delay)
        payload = {"model": model, "prompt": list(prompts[i]), "max_tokens": output_lens[i],
                   "min_tokens": output_lens[i], "ignore_eos": True, "temperature": 0.0, "stream": True,
                   "stream_options": {"include_usage": True}}
        res = RequestResult(prompt_len=len(prompts[i]), expected_output_len=output_lens[i])
        if sem is None:
            return await send_completion(host, port, payload, res, t0)
        async with sem:
            return await send_completion(host, port, payload, res, t0)

    results = await asyncio.gather(*(one(i) for i in range(len(prompts))))
    duration = max((r.end_s for r in results), default=0.0)
    return list(results), duration


def summarize(results: Sequence[RequestResult], elapsed_s: float) -> dict[str, Any]:
    """vLLM benchmark metrics over the successful requests (latencies in seconds)."""
    import numpy as np

    ok = [r for r in results if r.success]
    n_in = sum(r.prompt_len for r in ok)
    n_out = sum(r.num_output_tokens for r in ok)
    out: dict[str, Any] = {
        "elapsed_s": elapsed_s,
        "num_requests": len(ok),
        "num_failed_requests": len(results) - len(ok),
        "num_input_tokens": n_in,
        "num_output_tokens": n_out,
        "requests_per_second": len(ok) / elapsed_s if elapsed_s > 0 else None,
        "tokens_per_second": (n_in + n_out) / elapsed_s if elapsed_s > 0 else None,
        "output_tokens_per_second": n_out / elapsed_s if elapsed_s > 0 else None,
    }
    series = {
        "ttft_s": [r.ttft_s for r in ok if r.ttft_s is not None],
        "tpot_s": [r.tpot_s for r in ok if r.tpot_s is not None],
        "itl_s": [x for r in ok for x in r.itl_s],
        "e2e_s": [r.e2e_s for r in ok],
    }
    for name, values in series.items():
        arr = np.asarray(values, dtype=float)
        for label, q in PERCENTILES:
            key = f"{label}_{name}"
            if arr.size == 0:
                out[key] = None
            else:
                out[key] = float(arr.mean()) if q is None else float(np.percentile(arr, q))
    return out
