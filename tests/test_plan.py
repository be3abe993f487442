"""Capacity planning (perfmodel.analysis.plan): the search, the acceptance rules and the progress display."""

import io
import math

import pytest

from perfmodel.errors import UserError
from perfmodel.progress import Progress
from perfmodel.analysis.plan import MAX_REQUESTS, gpu_counts, num_requests_for, plan_capacity
from perfmodel.analysis.plan_trial import Trial, simulate_trial, TrialTask
from perfmodel.scenario import ScenarioOptions
from perfmodel.analysis.simulate import length_distribution


def test_gpu_counts_follow_powers_of_two_node_multiples_and_the_job_limit():
    assert gpu_counts(64, 8, None) == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert gpu_counts(64, 8, 2) == [1, 2, 4, 8, 16]
    assert gpu_counts(6, 8, None) == [1, 2, 4]


def test_request_count_covers_several_latencies_and_is_capped():
    assert num_requests_for(1.0) == 200
    assert num_requests_for(10.0, 100, 1.0, 0.02) == 600  # 60 s of arrivals
    assert num_requests_for(20.0, 300, 2.0, 0.1) == 20 * 4 * (2 + 30)
    assert num_requests_for(1000.0) == MAX_REQUESTS


def test_easy_target_needs_one_gpu():
    result = plan_capacity(request_rate=2.0, ttft_s_p99_target=2.0, tpot_s_p99_target=0.1, model="llama-3.1-8b",
                           hardware="hgx-h200", input_len=length_distribution("lognormal", 300), output_len=200,
                           workers=1)
    assert result.gpus == 1 and result.best.status == "accepted" and result.best.layout.gpus == 1
    assert result.best.achieved_requests_per_second == pytest.approx(2.0, rel=0.05)
    assert result.best.ttft_s_p99 <= 2.0 and result.best.tpot_s_p99 <= 0.1
    expected = 1 / 3600 / (result.best.output_tokens_per_second / 1e6)
    assert result.best.gpu_hours_per_million_output_tokens == pytest.approx(expected)
    assert "1 GPUs" in result.message and [t.gpus for t in result.trials] == [1]


def test_larger_load_needs_more_gpus_and_prunes_with_the_closed_form():
    result = plan_capacity(request_rate=40.0, tpot_s_p99_target=0.1, model="llama-3.1-70b", hardware="hgx-h200",
                           input_len=500, output_len=length_distribution("lognormal", 200), workers=2)
    assert result.gpus is not None and result.gpus >= 4
    assert any(t.status == "pruned" and "closed-form maximum" in t.reason for t in result.trials)
    assert any(t.status == "pruned" and "does not fit" in t.reason for t in result.trials)
    assert all(t.gpus <= result.gpus for t in result.trials)


def test_unreachable_target_says_so():
    result = plan_capacity(request_rate=500.0, ttft_s_p99_target=1.0, model="llama-3.1-70b", hardware="taiwania2",
                           gpus_max=64, workers=1)
    assert result.best is None and result.gpus is None
    assert "no layout of up to 16 GPUs" in result.message and "node limit" in result.message
    assert result.trials and all(t.status != "accepted" for t in result.trials)


@pytest.mark.parametrize("kwargs, message", [
    (dict(request_rate=0.0), "--request-rate"),
    (dict(request_rate=math.inf), "--request-rate"),
    (dict(request_rate=1.0, ttft_s_p99_target=-1.0), "--ttft-p99"),
    (dict(request_rate=1.0, gpus_max=0), "--gpus-max"),
    (dict(request_rate=1.0, num_prompts=3), "--num-prompts"),
])
def test_invalid_inputs_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        plan_capacity(model="llama-3.1-8b", hardware="h200-sxm", **kwargs)


def _task(rate: float, **kwargs) -> TrialTask:
    options = ScenarioOptions(model="llama-3.1-8b", hardware="h200-sxm", entry_point="serve")
    values = dict(options=options, tp=1, pp=1, dp=1, analytical_requests_per_second=math.nan,
                  input_len=length_distribution("fixed", 1000), output_len=length_distribution("fixed", 300),
                  num_prompts=600, request_rate=rate, burstiness=1.0, seed=0, ttft_s_p99_target=None, tpot_s_p99_target=None)
    values.update(kwargs)
    return TrialTask(**values)


def test_overload_is_rejected_for_not_keeping_up():
    trial = simulate_trial(_task(200.0))
    assert trial.status == "rejected" and "delivers" in trial.reason
    assert trial.achieved_requests_per_second < 0.95 * 200


def test_steady_load_is_accepted_and_targets_are_checked():
    ok = simulate_trial(_task(5.0))
    assert isinstance(ok, Trial) and ok.status == "accepted", ok.reason
    assert ok.latency_growth < 1.5
    strict = simulate_trial(_task(5.0, tpot_s_p99_target=1e-4, ttft_s_p99_target=1e-4))
    assert strict.status == "rejected" and "p99 TTFT" in strict.reason and "p99 TPOT" in strict.reason


def test_progress_lines_when_not_a_tty():
    stream = io.StringIO()
    progress = Progress(stream, delay_s=0.0)
    for k in range(1, 21):
        progress(k, 20)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "20/20 simulations" and 2 <= len(lines) <= 11


def test_progress_bar_on_a_tty():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    progress = Progress(stream, delay_s=0.0)
    progress(3, 4)
    progress.close()
    assert stream.getvalue().startswith("\r[") and "] 3/4 simulations" in stream.getvalue()
    assert stream.getvalue().endswith("\n")


def test_confidence_plans_on_the_interval_ends_and_names_the_point_estimate():
    common = dict(request_rate=2.0, model="llama-3.1-8b", hardware="hgx-h200", input_len=300, output_len=200,
                  workers=1)
    tpot_one_gpu = plan_capacity(**common, tpot_s_p99_target=1.0).best.tpot_s_p99
    target = 1.02 * tpot_one_gpu  # the point estimate just meets it on one GPU; its 90% high end (+4%) does not
    point = plan_capacity(**common, tpot_s_p99_target=target)
    sure = plan_capacity(**common, tpot_s_p99_target=target, confidence=0.9)
    assert point.gpus == 1 and point.point_estimate_gpus is None
    assert sure.confidence == 0.9 and sure.point_estimate_gpus == 1
    assert sure.gpus is not None and sure.gpus > point.gpus
    low, high = sure.best.interval["tpot_s_p99"]
    assert low <= sure.best.tpot_s_p99 <= high <= target
    rejected = [t for t in sure.trials if t.gpus == 1 and t.point_status == "accepted"]
    assert rejected and all(t.status == "rejected" for t in rejected)
    assert "point estimate" in sure.message and "1 GPU" in sure.message
