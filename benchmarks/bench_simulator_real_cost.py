"""Speed of the simulator with the real step-cost model (wall time; the numbers it simulates are not the point).

    python benchmarks/bench_simulator_real_cost.py             # 100,000 requests
    python benchmarks/bench_simulator_real_cost.py --num-prompts 20000 --no-toy

Llama-3.1-8B on 8 H200s of an HGX node as 8 replicas of TP1 (the best layout for this model), vLLM server
defaults; 100,000 Poisson requests, input ~ lognormal(mean 500, sigma 0.6), output ~ lognormal(mean 200,
sigma 0.6), at 70 % of the closed form's maximum throughput for those mean lengths. The same requests are then
run with the toy affine cost (the simulator's own benchmark cost) to show what the real cost adds.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfmodel.layout import Layout  # noqa: E402
from perfmodel.analysis.predict import Scenario, predict_layout  # noqa: E402
from perfmodel.analysis.simulate import build_requests, length_distribution  # noqa: E402
from simulator.batch import BatchStats, LinearStepCost  # noqa: E402
from simulator.run import simulate  # noqa: E402


T0 = time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-prompts", type=int, default=100_000)
    parser.add_argument("--load", type=float, default=0.7, help="fraction of the closed-form maximum (default 0.7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-toy", action="store_true", help="skip the run with the toy cost")
    args = parser.parse_args(argv)

    scenario = Scenario.build(model="llama-3.1-8b", hardware="hgx-h200", entry_point="serve", input_len=500,
                              output_len=200)
    layout = Layout(tp=1, dp=8)
    saturating = dataclasses.replace(scenario.workload, num_prompts=4 * layout.dp * scenario.engine.max_num_seqs)
    capacity = predict_layout(scenario.with_(workload=saturating), layout).requests_per_second
    rate = args.load * capacity
    t0 = time.perf_counter()
    requests = build_requests(input_len=length_distribution("lognormal", 500, 0.6),
                              output_len=length_distribution("lognormal", 200, 0.6), num_prompts=args.num_prompts,
                              request_rate=rate, seed=args.seed)
    t_gen = time.perf_counter() - t0
    engine = scenario.engine_config(scenario.memory(layout).num_gpu_blocks, pp=layout.pp, tp=layout.tp)
    cost = scenario.step_cost(layout)

    t0 = time.perf_counter()
    result = simulate(requests, engine, cost, num_replicas=layout.dp)
    t_real = time.perf_counter() - t0
    m = result.metrics
    print(f"real cost: {args.num_prompts:,} requests on {layout} ({scenario.model.name}, {scenario.cluster.name}) at "
          f"{rate:.1f} req/s ({args.load:.0%} of the closed-form {capacity:.1f}); workload {t_gen:.2f} s")
    print(f"  simulate {t_real:.2f} s wall, {args.num_prompts / t_real:,.0f} simulated requests per wall second; "
          f"{m.num_steps:,} engine steps, {m.elapsed_s:,.0f} s simulated")
    print(f"  {m.requests_per_second:.1f} req/s, {m.output_tokens_per_second:,.0f} output tok/s, TTFT p99 "
          f"{m.ttft_s_p99 * 1e3:.1f} ms, TPOT p99 {m.tpot_s_p99 * 1e3:.2f} ms, mean batch {m.mean_batch_size:.1f}, "
          f"KV {m.kv_usage_mean:.1%}, preemptions {m.num_preemptions}")

    one = BatchStats(num_prefill_tokens=0, num_decode_tokens=64, prefill_attention_pairs=0.0,
                     prefill_context_tokens=0, decode_context_tokens=64 * 600, num_sampled_tokens=64, num_seqs=64)
    calls = 20_000
    t0 = time.perf_counter()
    for _ in range(calls):
        cost(one)
    scalar_us = (time.perf_counter() - t0) / calls * 1e6
    arrays = BatchStats(**{f.name: np.full(1000, getattr(one, f.name)) for f in dataclasses.fields(BatchStats)})
    t0 = time.perf_counter()
    for _ in range(100):
        cost(arrays)
    array_us = (time.perf_counter() - t0) / 100 * 1e6
    print(f"  step cost: {scalar_us:.2f} us per scalar call (cached path), {array_us:.0f} us per 1000-step array call")

    if not args.no_toy:
        toy = LinearStepCost(fixed_s=5e-3, per_prefill_token_s=2e-5, per_decode_context_token_s=1.5e-7,
                             per_decode_token_s=5e-5)
        t0 = time.perf_counter()
        toy_steps = simulate(requests, engine, toy, num_replicas=layout.dp).metrics.num_steps
        t_toy = time.perf_counter() - t0
        print(f"toy cost, same requests and engine: {t_toy:.2f} s wall, {args.num_prompts / t_toy:,.0f} simulated "
              f"requests per wall second, {toy_steps:,} engine steps (its steps are longer, so fewer and fuller)")
        print(f"  wall time per engine step: real {t_real / m.num_steps * 1e6:.0f} us, "
              f"toy {t_toy / toy_steps * 1e6:.0f} us")
    print(f"total wall time {time.perf_counter() - T0:.1f} s; simulate (real cost) {t_real:.2f} s, aim: < 10 s; "
          f"{'met' if t_real < 10.0 else 'not met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
