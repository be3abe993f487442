"""V0's asynchronous output processing (vLLM 0.7.0 LLMEngine.step): a step's tokens reach the client during the
engine's next step, once that step's CPU part is done, and with nothing else left the engine runs one more step for
the finished sequences.

CPU_FLAT: 1 s per step whatever it holds, of which the first 0.25 s is CPU work, so every time below can be
counted by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator import EngineConfig, LinearStepCost, Request, simulate

FLAT = LinearStepCost(fixed_s=1.0, per_prefill_token_s=0.0, per_decode_context_token_s=0.0, per_decode_token_s=0.0)


class _CpuFlat:
    """FLAT whose steps spend their first 0.25 s on the CPU (`StepCost.cpu_time_s`)."""

    num_stages = 1

    def __call__(self, batch):
        return FLAT(batch)

    def cpu_time_s(self, batch):
        return np.full(np.shape(batch.num_seqs), 0.25)


CPU_FLAT = _CpuFlat()


def v0(lag: bool, **overrides) -> EngineConfig:
    values = dict(max_num_seqs=8, max_num_batched_tokens=64, num_kv_blocks=64, block_size=16,
                  enable_chunked_prefill=False, scheduler="v0", async_output_processing=lag)
    values.update(overrides)
    return EngineConfig(**values)


@pytest.mark.parametrize("macro_steps", [True, False])
def test_one_request_is_delivered_during_the_next_step_and_the_extra_step_runs(macro_steps):
    # prefill [0, 1] samples token 1, decodes [1, 2] and [2, 3] tokens 2 and 3; token 1 is delivered 0.25 s into
    # step [1, 2], token 3 0.25 s into the extra step [3, 4] that runs for the finished sequence alone
    reqs = [Request(0, 0.0, 10, 3)]
    plain = simulate(reqs, v0(False), CPU_FLAT, record_timeline=True, macro_steps=macro_steps)
    lagged = simulate(reqs, v0(True), CPU_FLAT, record_timeline=True, macro_steps=macro_steps)
    assert plain.requests.first_token_s.tolist() == [1.0] and plain.requests.finish_s.tolist() == [3.0]
    assert lagged.requests.first_token_s.tolist() == [1.25] and lagged.requests.finish_s.tolist() == [3.25]
    assert len(lagged.timeline) == len(plain.timeline) + 1
    assert lagged.timeline["num_decode_tokens"].tolist()[-1] == 1


@pytest.mark.parametrize("macro_steps", [True, False])
def test_a_finish_inside_a_decode_run_is_delivered_by_the_next_step(macro_steps):
    # both prompts in one prefill [0, 1]; A's token 2 at 2 (its last), delivered at 2.25 during B's step; B's last
    # at 4, delivered at 4.25 during the extra step
    reqs = [Request(0, 0.0, 10, 2), Request(1, 0.0, 10, 4)]
    r = simulate(reqs, v0(True), CPU_FLAT, macro_steps=macro_steps)
    assert r.requests.first_token_s.tolist() == pytest.approx([1.25, 1.25])
    assert r.requests.finish_s.tolist() == pytest.approx([2.25, 4.25])


@pytest.mark.parametrize("macro_steps", [True, False])
def test_a_closed_loop_client_sends_its_next_request_on_delivery(macro_steps):
    # concurrency 1: the second request is sent when the first one's last token arrives (3.25, during the extra
    # step [3, 4]), so its prefill is [4, 5], its first token delivered at 5.25, its last at 7.25
    reqs = [Request(0, 0.0, 10, 3), Request(1, 0.0, 10, 3)]
    r = simulate(reqs, v0(True), CPU_FLAT, max_concurrency=1, macro_steps=macro_steps)
    assert r.requests.first_token_s.tolist() == pytest.approx([1.25, 5.25])
    assert r.requests.finish_s.tolist() == pytest.approx([3.25, 7.25])
    assert r.requests.ttft_s.tolist() == pytest.approx([1.25, 2.0])


@pytest.mark.parametrize("seed", range(12))
def test_closed_loop_macro_steps_change_nothing(seed):
    # decode runs must not hold back a finish that a closed-loop client is waiting for
    rng = np.random.default_rng(seed)
    reqs = [Request(i, 0.0, int(rng.integers(8, 40)), int(rng.integers(1, 25))) for i in range(12)]
    fast = simulate(reqs, v0(True), CPU_FLAT, max_concurrency=3)
    slow = simulate(reqs, v0(True), CPU_FLAT, max_concurrency=3, macro_steps=False)
    np.testing.assert_array_equal(fast.requests.first_token_s, slow.requests.first_token_s)
    np.testing.assert_array_equal(fast.requests.finish_s, slow.requests.finish_s)


def test_async_output_processing_needs_one_stage():
    two = LinearStepCost(fixed_s=1.0, num_stages=2)
    with pytest.raises(ValueError, match="one pipeline stage"):
        simulate([Request(0, 0.0, 10, 3)], v0(True), two)
