"""The closed-form offline estimate at wave boundaries (issue 9): static against continuous batching.

With fixed lengths static batching pads nothing, so with the same batch limit it runs the same waves as
continuous batching and can never be faster. With a smaller static batch than ``max_num_seqs`` it can be
faster (balanced waves against vLLM V1's greedy ones; see perfmodel/analysis/estimate.py), and the simulator agrees.
"""

import dataclasses

import pytest

from perfmodel.layout import Layout
from perfmodel.analysis.predict import Scenario, predict_all, predict_layout

SETUPS = [("llama-3.1-8b", "hgx-h200", 1), ("qwen2.5-7b", "dgx-a100", 1), ("llama-3.1-70b", "hgx-h200", 4)]
BATCHES = (4, 64, 256)
LENGTHS = (1, 16, 64)


def boundary_prompts(b: int) -> list[int]:
    """Prompt counts just around the first wave boundaries of batch ``b``."""
    return sorted({n for k in (1, 2) for n in (k * b + 1, k * b + b // 2, k * b - 1) if n >= 1})


def same_limit(scenario: Scenario, max_num_seqs: int) -> Scenario:
    """The scenario under continuous batching with ``max_num_seqs`` sequences at most."""
    return scenario.with_(batching="continuous", static_batch_size=None,
                          engine=dataclasses.replace(scenario.engine, max_num_seqs=max_num_seqs))


@pytest.fixture(scope="module", params=SETUPS, ids=lambda s: f"{s[0]}-{s[1]}-tp{s[2]}")
def setup(request):
    model, hardware, tp = request.param
    return Scenario.build(model=model, hardware=hardware), Layout(tp=tp)


@pytest.mark.parametrize("b", BATCHES)
def test_static_never_above_continuous_with_the_same_batch_limit(setup, b):
    base, layout = setup
    for n in boundary_prompts(b):
        for input_len in LENGTHS:
            for output_len in LENGTHS:
                s = base.with_(workload=dataclasses.replace(base.workload, input_len=input_len,
                                                            output_len=output_len, num_prompts=n))
                for static_batch in sorted({b, b // 2 + 1, -(-n // -(-n // b))}):
                    static = predict_layout(s.with_(batching="static", static_batch_size=static_batch), layout)
                    assert static.fits and static.batch_size <= static_batch
                    # continuous with max_num_seqs = the static wave: the same limit, the same waves
                    continuous = predict_layout(same_limit(s, static.batch_size), layout)
                    assert continuous.batch_size == static.batch_size
                    assert static.tokens_per_second <= continuous.tokens_per_second, (n, input_len, output_len)


@pytest.mark.parametrize("b", BATCHES)
def test_static_without_a_smaller_batch_equals_continuous(setup, b):
    base, layout = setup
    for n in boundary_prompts(b):
        s = base.with_(engine=dataclasses.replace(base.engine, max_num_seqs=b),
                       workload=dataclasses.replace(base.workload, input_len=16, output_len=16, num_prompts=n))
        continuous = predict_layout(s, layout)
        for static_batch in (None, b, 2 * b):
            static = predict_layout(s.with_(batching="static", static_batch_size=static_batch), layout)
            assert static.batch_size == continuous.batch_size
            assert static.tokens_per_second == pytest.approx(continuous.tokens_per_second, rel=1e-12)


def issue9(batching: str = "continuous", static_batch_size: int | None = None, output_len: int = 1) -> Scenario:
    return Scenario.build(model="llama-3.1-8b", hardware="hgx-h200", input_len=1, output_len=output_len,
                          num_prompts=257, max_num_seqs=256, batching=batching,
                          static_batch_size=static_batch_size)


@pytest.mark.parametrize("output_len", [1, 8])
def test_issue9_greedy_waves_match_the_simulator(output_len):
    """257 prompts, max_num_seqs 256: vLLM V1 runs waves of 256 + 1, static batching of 129 runs 129 + 128.
    The closed form and the V1-like simulator agree on both, so static's lead is the scheduler's, not the
    estimate's; and continuous batching capped at 129 sequences runs the same waves as static batching."""
    layout = Layout(tp=1)
    continuous = predict_layout(issue9(output_len=output_len), layout)
    static = predict_layout(issue9("static", 129, output_len), layout)
    capped = predict_layout(same_limit(issue9(output_len=output_len), 129), layout)
    assert (continuous.batch_size, static.batch_size) == (256, 129)
    assert static.tokens_per_second == pytest.approx(capped.tokens_per_second, rel=1e-12)
    assert static.tokens_per_second > 1.05 * continuous.tokens_per_second
    for analytical, scenario in ((continuous, issue9(output_len=output_len)),
                                 (static, issue9("static", 129, output_len))):
        simulated = predict_all(scenario, 1, tp=1, simulate_top=1)[0]
        assert simulated.method == "simulated"
        assert simulated.tokens_per_second == pytest.approx(analytical.tokens_per_second, rel=1e-6)
