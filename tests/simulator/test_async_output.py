"""V0's asynchronous output processing (vLLM 0.7.0 LLMEngine.step): a step's tokens reach the client at the end of
the engine's next step, and with nothing else left the engine runs one more step for the finished sequences.

FLAT: 1 s per step whatever it holds, so every time below can be counted by hand.
"""

from __future__ import annotations

import pytest

from simulator import EngineConfig, LinearStepCost, Request, simulate

FLAT = LinearStepCost(fixed_s=1.0, per_prefill_token_s=0.0, per_decode_context_token_s=0.0, per_decode_token_s=0.0)


def v0(lag: bool, **overrides) -> EngineConfig:
    values = dict(max_num_seqs=8, max_num_batched_tokens=64, num_kv_blocks=64, block_size=16,
                  enable_chunked_prefill=False, scheduler="v0", async_output_processing=lag)
    values.update(overrides)
    return EngineConfig(**values)


@pytest.mark.parametrize("macro_steps", [True, False])
def test_one_request_is_delivered_a_step_late_and_the_extra_step_runs(macro_steps):
    # prefill [0, 1] samples token 1, decodes [1, 2] and [2, 3] tokens 2 and 3; token 1 is delivered with step
    # [1, 2], token 3 by the extra step [3, 4] that runs for the finished sequence alone
    reqs = [Request(0, 0.0, 10, 3)]
    plain = simulate(reqs, v0(False), FLAT, record_timeline=True, macro_steps=macro_steps)
    lagged = simulate(reqs, v0(True), FLAT, record_timeline=True, macro_steps=macro_steps)
    assert plain.requests.first_token_s.tolist() == [1.0] and plain.requests.finish_s.tolist() == [3.0]
    assert lagged.requests.first_token_s.tolist() == [2.0] and lagged.requests.finish_s.tolist() == [4.0]
    assert len(lagged.timeline) == len(plain.timeline) + 1
    assert lagged.timeline["num_decode_tokens"].tolist()[-1] == 1


@pytest.mark.parametrize("macro_steps", [True, False])
def test_a_finish_inside_a_decode_run_is_delivered_by_the_next_step(macro_steps):
    # both prompts in one prefill [0, 1]; A's token 2 at 2 (its last), delivered at 3 by B's step; B's last at
    # 4, delivered at 5 by the extra step
    reqs = [Request(0, 0.0, 10, 2), Request(1, 0.0, 10, 4)]
    r = simulate(reqs, v0(True), FLAT, macro_steps=macro_steps)
    assert r.requests.first_token_s.tolist() == pytest.approx([2.0, 2.0])
    assert r.requests.finish_s.tolist() == pytest.approx([3.0, 5.0])


def test_a_closed_loop_client_sends_its_next_request_on_delivery():
    # concurrency 1: the second request is sent when the first one's last token arrives (4), not when it was
    # sampled (3): prefill [4, 5], its first token delivered at 6
    reqs = [Request(0, 0.0, 10, 3), Request(1, 0.0, 10, 3)]
    r = simulate(reqs, v0(True), FLAT, max_concurrency=1)
    assert r.requests.first_token_s.tolist() == pytest.approx([2.0, 6.0])
    assert r.requests.finish_s.tolist() == pytest.approx([4.0, 8.0])


def test_async_output_processing_needs_one_stage():
    two = LinearStepCost(fixed_s=1.0, num_stages=2)
    with pytest.raises(ValueError, match="one pipeline stage"):
        simulate([Request(0, 0.0, 10, 3)], v0(True), two)
