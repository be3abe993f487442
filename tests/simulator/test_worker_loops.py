"""V0's workers' execution loops (vLLM 0.7.0 DistributedExecutorBase): stopped when the engine has nothing left,
started again by the next step (`EngineConfig.idle_stop_s`, `idle_restart_s`).

TOY: 1 s per step (per stage) + 0.01 s per prefill token, so every time below can be counted by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator import EngineConfig, LinearStepCost, Request, simulate

TOY = LinearStepCost(fixed_s=1.0, per_prefill_token_s=0.01, per_decode_context_token_s=0.0, per_decode_token_s=0.0)
TOY2 = LinearStepCost(fixed_s=1.0, per_prefill_token_s=0.01, per_decode_context_token_s=0.0,
                      per_decode_token_s=0.0, num_stages=2)


def v0(**overrides) -> EngineConfig:
    values = dict(max_num_seqs=8, max_num_batched_tokens=64, num_kv_blocks=64, block_size=16,
                  enable_chunked_prefill=False, scheduler="v0", idle_stop_s=0.3, idle_restart_s=0.2)
    values.update(overrides)
    return EngineConfig(**values)


class _CpuFlat:
    """1 s per step, the first 0.25 s of it on the CPU (when async output processing delivers)."""

    num_stages = 1

    def __call__(self, batch):
        return LinearStepCost(fixed_s=1.0, per_prefill_token_s=0.0, per_decode_context_token_s=0.0,
                              per_decode_token_s=0.0)(batch)

    def cpu_time_s(self, batch):
        return np.full(np.shape(batch.num_seqs), 0.25)


@pytest.mark.parametrize("macro_steps", [True, False])
def test_one_stage_stops_after_the_last_step_and_restarts_with_the_next(macro_steps):
    # A: prefill with the loops' start [0, 1.3], decode [1.3, 2.3]; the stop [2.3, 2.6]. B comes at 2.4, during the
    # stop, and prefills [2.6, 3.9] (a start again); the stop [3.9, 4.2]; C at 6.0: [6.0, 7.3].
    reqs = [Request(0, 0.0, 10, 2), Request(1, 2.4, 10, 1), Request(2, 6.0, 10, 1)]
    r = simulate(reqs, v0(), TOY, macro_steps=macro_steps)
    assert r.requests.first_token_s.tolist() == pytest.approx([1.3, 3.9, 7.3])
    assert r.requests.finish_s.tolist() == pytest.approx([2.3, 3.9, 7.3])
    # without the loops' stop and start: 1.1, 3.5 (B at 2.4 finds the engine idle), 7.1
    plain = simulate(reqs, v0(idle_stop_s=0.0, idle_restart_s=0.0), TOY, macro_steps=macro_steps)
    assert plain.requests.first_token_s.tolist() == pytest.approx([1.1, 3.5, 7.1])


@pytest.mark.parametrize("macro_steps", [True, False])
def test_a_request_that_comes_during_the_last_step_waits_out_the_stop(macro_steps):
    # MQLLMEngine adds requests between steps, so LLMEngine.step stops the loops after A's last step [1.3, 2.3] even
    # though D came at 2.0: D prefills [2.6, 3.9], not [2.3, 3.4]
    reqs = [Request(0, 0.0, 10, 2), Request(1, 2.0, 10, 1)]
    r = simulate(reqs, v0(), TOY, macro_steps=macro_steps)
    assert r.requests.first_token_s.tolist() == pytest.approx([1.3, 3.9])


@pytest.mark.parametrize("macro_steps", [True, False])
def test_closed_loop_with_async_output_processing(macro_steps):
    # A: prefill [0, 1.25] (the start), its token delivered at 1.5; decode [2.25, 3.25], the extra step [3.25, 4.25]
    # delivers A's last token at 3.5, when the client sends B; the stop [4.25, 4.75]; B prefills [4.75, 6.0], its
    # token delivered 0.25 s into the next step: TTFT 6.25 - 3.5
    reqs = [Request(0, 0.0, 10, 3), Request(1, 0.0, 10, 3)]
    cfg = v0(async_output_processing=True, idle_stop_s=0.5, idle_restart_s=0.25)
    r = simulate(reqs, cfg, _CpuFlat(), max_concurrency=1, macro_steps=macro_steps)
    assert r.requests.first_token_s.tolist() == pytest.approx([1.5, 6.25])
    assert r.requests.ttft_s.tolist() == pytest.approx([1.5, 2.75])


def test_pipeline_stops_when_the_last_virtual_engine_goes_idle():
    # A: the start, then stage 0 [0.2, 1.3], stage 1 [1.3, 2.4]; every engine idle: the stop [2.4, 2.9]
    first = simulate([Request(0, 0.0, 10, 1), Request(1, 3.0, 10, 1)], v0(idle_stop_s=0.5), TOY2)
    assert first.requests.first_token_s.tolist() == pytest.approx([2.4, 5.4])  # B at 3.0: [3.2, 4.3], [4.3, 5.4]
    during_stop = simulate([Request(0, 0.0, 10, 1), Request(1, 2.5, 10, 1)], v0(idle_stop_s=0.5), TOY2)
    assert during_stop.requests.first_token_s.tolist() == pytest.approx([2.4, 5.3])  # B waits to 2.9, starts 3.1
    # B comes during A's step: it waits in the request tracker, the engine loop steps again and takes it, no stop
    during_step = simulate([Request(0, 0.0, 10, 1), Request(1, 2.0, 10, 1)], v0(idle_stop_s=0.5), TOY2)
    assert during_step.requests.first_token_s.tolist() == pytest.approx([2.4, 4.6])


def test_pipeline_closed_loop_request_sent_on_the_last_token_waits_out_the_stop():
    # vLLM steps the engine once more after a step with outputs and only a request already in the tracker then
    # avoids the stop; B, sent when A's token arrives (2.4, no server latency), comes too late: stop [2.4, 2.9],
    # the start, then [3.1, 4.2], [4.2, 5.3]
    reqs = [Request(0, 0.0, 10, 1), Request(1, 0.0, 10, 1)]
    r = simulate(reqs, v0(idle_stop_s=0.5), TOY2, max_concurrency=1)
    assert r.requests.first_token_s.tolist() == pytest.approx([2.4, 5.3])
    assert r.requests.ttft_s.tolist() == pytest.approx([2.4, 2.9])


@pytest.mark.parametrize("macro_steps", [True, False])
def test_a_start_without_a_stop_time_is_paid_after_every_idle_period(macro_steps):
    # idle_stop_s 0: the loops still stop, in no time, and every step after an idle period pays the start
    reqs = [Request(0, 0.0, 10, 1), Request(1, 5.0, 10, 1)]
    r = simulate(reqs, v0(idle_stop_s=0.0), TOY, macro_steps=macro_steps)
    assert r.requests.first_token_s.tolist() == pytest.approx([1.3, 6.3])


@pytest.mark.parametrize("bad", [dict(idle_stop_s=-1.0), dict(idle_restart_s=float("inf")), dict(idle_stop_s="1")])
def test_bad_loop_times_are_refused(bad):
    with pytest.raises(ValueError, match="idle_"):
        v0(**bad)


def test_loop_times_need_continuous_batching_without_async_scheduling():
    with pytest.raises(ValueError, match="async_scheduling"):
        EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, num_kv_blocks=64, idle_stop_s=0.1,
                     async_scheduling=True)
    with pytest.raises(ValueError, match="one stage or V0's virtual engines"):  # V1's pipeline does not stop them
        simulate([Request(0, 0.0, 10, 1)], EngineConfig(max_num_seqs=8, max_num_batched_tokens=64,
                                                        num_kv_blocks=64, idle_stop_s=0.1), TOY2)
