"""Speed benchmark of the simulator (wall time, not a model of any GPU).

    python benchmarks/bench_simulator.py                   # toy affine cost
    python benchmarks/bench_simulator.py --cost pkg.mod:factory   # a callable returning a StepCost

Case 1 (online): 100,000 Poisson requests over 8 replicas, input ~ lognormal(mean 500), output ~
lognormal(mean 200). Target: < 10 s. Case 2 (offline): 300 requests of 100 in / 600 out at t = 0. Target:
well under 0.1 s.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator import EngineConfig, LengthDistribution, LinearStepCost, make_requests, requests_from_arrays, simulate  # noqa: E402


def load_cost(spec: str | None):
    """`module:attr`, where attr is a StepCost or a zero-argument callable returning one."""
    if spec is None:
        return LinearStepCost(fixed_s=5e-3, per_prefill_token_s=2e-5, per_decode_context_token_s=1.5e-7,
                              per_decode_token_s=5e-5)
    module, _, attr = spec.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    return obj if hasattr(obj, "num_stages") else obj()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cost", help="module:attr of a StepCost (or a factory of one)")
    parser.add_argument("--num-prompts", type=int, default=100_000)
    parser.add_argument("--num-replicas", type=int, default=8)
    parser.add_argument("--request-rate", type=float, default=120.0, help="requests/s over all replicas")
    parser.add_argument("--router", default="round_robin")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cost = load_cost(args.cost)
    engine = EngineConfig(max_num_seqs=256, max_num_batched_tokens=8192, num_kv_blocks=30_000)

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    requests = make_requests(args.num_prompts, LengthDistribution.lognormal(500, 0.6),
                             LengthDistribution.lognormal(200, 0.6), rng, request_rate=args.request_rate)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = simulate(requests, engine, cost, num_replicas=args.num_replicas, router=args.router)
    t_sim = time.perf_counter() - t0
    m = result.metrics
    print(f"online: {args.num_prompts} requests, {args.num_replicas} replicas, {args.request_rate} req/s "
          f"({args.router}); workload {t_gen:.2f} s, simulate {t_sim:.2f} s wall, "
          f"{args.num_prompts / t_sim:,.0f} simulated requests per wall second; "
          f"{m.num_steps} engine steps, {m.elapsed_s:.0f} s simulated")
    print(f"  {m.requests_per_second:.1f} req/s, {m.output_tokens_per_second:,.0f} output tok/s, "
          f"TTFT mean {m.ttft_s_mean * 1e3:.1f} ms p99 {m.ttft_s_p99 * 1e3:.1f} ms, TPOT mean "
          f"{m.tpot_s_mean * 1e3:.1f} ms, ITL p99 {m.itl_s_p99 * 1e3:.1f} ms, batch {m.mean_batch_size:.1f}, "
          f"KV {m.kv_usage_mean:.1%}, preemptions {m.num_preemptions}")

    offline = requests_from_arrays(np.zeros(300), np.full(300, 100), np.full(300, 600))
    simulate(offline, engine, cost)  # warm-up
    best = min(_timed(lambda: simulate(offline, engine, cost)) for _ in range(5))
    print(f"offline: 300 requests 100 in / 600 out: {best * 1e3:.1f} ms wall (best of 5)")
    print(f"online {t_sim:.2f} s, aim: < 10 s; {'met' if t_sim < 10.0 else 'not met'}. "
          f"offline {best * 1e3:.1f} ms, aim: < 0.1 s; {'met' if best < 0.1 else 'not met'}")
    return 0


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    raise SystemExit(main())
