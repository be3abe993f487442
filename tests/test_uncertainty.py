"""perfmodel.uncertainty.intervals: quantiles, regimes, transfer, and the intervals the shipped profiles give."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from perfmodel.errors import UserError
from perfmodel.layout import Layout
from perfmodel.analysis.predict import predict_all
from perfmodel.scenario import Scenario
from perfmodel.uncertainty.intervals import (MIN_EMPIRICAL, PREDICT_FIGURES, ResidualModel, check_level, combine, excess_sd,
                                   figure_bounds, interval_for, log_quantiles, lookup, lookup_scales,
                                   normalized_half_width, predict_intervals, regime, t_quantile)


def test_t_quantile_matches_tables():
    # Student-t 0.95 quantiles from any statistics table
    for dof, expected in ((3, 2.353), (5, 2.015), (10, 1.812), (30, 1.697)):
        assert t_quantile(0.95, dof) == pytest.approx(expected, rel=0.01)


def test_quantiles_cover_their_level_on_normal_residuals():
    rng = np.random.default_rng(0)
    for n in (10, 60):  # t interval, then order statistics
        inside = []
        for _ in range(400):
            train, test = rng.normal(0, 0.1, n), rng.normal(0, 0.1)
            lo, _, hi = log_quantiles(train, 0.9)
            inside.append(lo <= test <= hi)
        assert 0.86 <= np.mean(inside) <= 0.96


def test_quantiles_need_three_residuals_and_widen_with_level():
    assert log_quantiles([0.1, 0.2], 0.9) is None
    r = np.linspace(-0.2, 0.2, 41)
    lo9, _, hi9 = log_quantiles(r, 0.9)
    lo8, _, hi8 = log_quantiles(r, 0.8)
    assert lo9 < lo8 < 0 < hi8 < hi9


def test_order_statistic_bounds_are_symmetric_about_the_median_and_not_the_extremes():
    """With 30 residuals, equal 5% tails would put each bound at that side's most extreme residual; the
    distance from the median takes its ceil(31 * 0.9) = 28th smallest, for both sides."""
    r = np.concatenate([np.linspace(-0.05, 0.05, 28), [0.4, -0.3]])
    lo, c, hi = log_quantiles(r, 0.9)
    assert c == pytest.approx(float(np.median(r)))
    assert hi - c == pytest.approx(c - lo)
    assert hi - c == pytest.approx(float(np.sort(np.abs(r - c))[27]))
    assert hi < 0.4 and lo > -0.3


def test_the_coefficient_term_adds_only_its_excess_over_the_calibration_runs():
    assert excess_sd(0.03, 0.05, 30) == 0.0  # no more leverage than the runs the residuals came from
    assert excess_sd(0.13, 0.05, 30) == pytest.approx(0.12)
    assert excess_sd(0.03, 0.05, 5) == 0.03  # a handful of residuals: the whole term
    scenario = Scenario.build(model="llama-3.1-8b", hardware="hgx-h200")
    many = {"offline/graphs/1gpu": {"tokens_per_second": list(np.linspace(-0.05, 0.05, 24))}}
    section = {**SECTION, "residuals": {"seen_model": many}, "coefficient_sd_reference": {"wave": 0.05}}
    scenario = scenario.with_(profile=dataclasses.replace(scenario.profile, uncertainty=section))
    point = {"tokens_per_second": 1000.0}
    plain = interval_for(scenario, Layout(tp=1), point, mode="offline", coef_sd={})
    typical = interval_for(scenario, Layout(tp=1), point, mode="offline", coef_sd={"wave": 0.05})
    extra = interval_for(scenario, Layout(tp=1), point, mode="offline", coef_sd={"wave": 0.13})
    assert typical.bounds == plain.bounds
    lo, c, hi = log_quantiles(lookup(many, "tokens_per_second", "offline/graphs/1gpu"), 0.9)
    assert extra.bounds["tokens_per_second"] == pytest.approx(combine(1000.0, (lo, c, hi), 0.12, 0.9))
    # a transferred prediction keeps the whole term (its residuals are one coefficient vector's errors)
    moved = scenario.with_(profile=dataclasses.replace(scenario.profile, gpu="v100-sxm2-32gb"))
    wide = interval_for(moved, Layout(tp=1), point, mode="offline", coef_sd={"wave": 0.05})
    bare = interval_for(moved, Layout(tp=1), point, mode="offline", coef_sd={})
    assert wide.bounds["tokens_per_second"][1] > bare.bounds["tokens_per_second"][1]


def test_the_coefficient_term_switches_at_min_empirical_and_ignores_nan():
    from perfmodel.uncertainty.intervals import MIN_EMPIRICAL, reference_for

    assert excess_sd(0.05, 0.04, MIN_EMPIRICAL) == pytest.approx(0.03)
    assert excess_sd(0.05, 0.04, MIN_EMPIRICAL - 1) == 0.05  # a t interval's pool: the whole term
    assert excess_sd(float("nan"), 0.04, 30) == 0.0
    assert excess_sd(0.05, float("nan"), 30) == 0.05
    # per regime, else all runs; a flat reference (older profiles) serves every regime
    nested = {"all": {"wave": 0.03}, "offline/eager/multigpu": {"wave": 0.05}}
    assert reference_for(nested, "offline/eager/multigpu") == {"wave": 0.05}
    assert reference_for(nested, "offline/graphs/1gpu") == {"wave": 0.03}
    assert reference_for({"wave": 0.02}, "offline/graphs/1gpu") == {"wave": 0.02}
    assert reference_for({}, "offline/graphs/1gpu") == {}


def test_locally_weighted_quantiles_cover_their_level_where_the_error_grows_with_the_coefficient_term():
    # errors whose spread is each run's coefficient term (the k-fold H200 runs: Spearman 0.53 between |error| and
    # the term): the weighted interval covers ~90% of small-term and of large-term runs alike, the plain one
    # over-covers the first and under-covers the second
    rng = np.random.default_rng(7)
    s_cal, s_new = rng.uniform(0.01, 0.1, 400), rng.uniform(0.01, 0.1, 20000)
    e_cal, e_new = s_cal * rng.standard_normal(400), s_new * rng.standard_normal(20000)
    centre, q = normalized_half_width(e_cal, s_cal, 0.9)
    inside = np.abs(e_new - centre) <= q * s_new
    small, large = s_new < 0.055, s_new >= 0.055
    assert 0.86 < inside[small].mean() < 0.94 and 0.86 < inside[large].mean() < 0.94
    lo, c, hi = log_quantiles(e_cal, 0.9)
    plain = (e_new >= lo) & (e_new <= hi)
    assert plain[small].mean() > 0.97 and plain[large].mean() < 0.85


def test_figure_bounds_weight_by_the_prediction_coefficient_term_only_with_a_scale_per_residual():
    n = MIN_EMPIRICAL + 5
    residuals = {"offline/graphs/1gpu": {"tokens_per_second": list(np.linspace(-0.1, 0.1, n))}}
    scales = {"offline/graphs/1gpu": {"tokens_per_second": list(np.linspace(0.02, 0.06, n))}}
    key = "offline/graphs/1gpu"
    narrow = figure_bounds(100.0, residuals, "tokens_per_second", key, {"wave": 0.02}, {}, 0.9, scales)
    wide = figure_bounds(100.0, residuals, "tokens_per_second", key, {"wave": 0.04}, {}, 0.9, scales)
    centre, q = normalized_half_width(residuals[key]["tokens_per_second"], scales[key]["tokens_per_second"], 0.9)
    assert narrow == pytest.approx((100 * math.exp(centre - 0.02 * q), 100 * math.exp(centre + 0.02 * q)))
    assert math.log(wide[1] / 100) - centre == pytest.approx(2 * (math.log(narrow[1] / 100) - centre))
    plain = figure_bounds(100.0, residuals, "tokens_per_second", key, {"wave": 0.02}, {}, 0.9)
    # no usable scales (missing, one short, not positive), a pool under MIN_EMPIRICAL or no term of its own:
    # the plain quantiles with the coefficient term
    for bad in ({}, {key: {"tokens_per_second": scales[key]["tokens_per_second"][1:]}},
                {key: {"tokens_per_second": [0.0] * n}}):
        assert lookup_scales(residuals, bad, "tokens_per_second", key) is None
        assert figure_bounds(100.0, residuals, "tokens_per_second", key, {"wave": 0.02}, {}, 0.9, bad) == plain
    assert figure_bounds(100.0, residuals, "tokens_per_second", key, {}, {}, 0.9, scales) == \
        figure_bounds(100.0, residuals, "tokens_per_second", key, {}, {}, 0.9)
    few = {key: {"tokens_per_second": residuals[key]["tokens_per_second"][:10]}}
    few_scales = {key: {"tokens_per_second": scales[key]["tokens_per_second"][:10]}}
    assert figure_bounds(100.0, few, "tokens_per_second", key, {"wave": 0.02}, {}, 0.9, few_scales) == \
        figure_bounds(100.0, few, "tokens_per_second", key, {"wave": 0.02}, {}, 0.9)
    # a figure that is the inverse of the metric: the same width, mirrored
    lo, hi = figure_bounds(1.0, residuals, "elapsed_time", key, {"wave": 0.02}, {}, 0.9, scales)
    assert (1 / hi, 1 / lo) == pytest.approx((narrow[0] / 100, narrow[1] / 100))


def test_only_k_fold_predictions_are_weighted():
    n = MIN_EMPIRICAL + 4
    spread = {"offline/graphs/1gpu": {"tokens_per_second": list(np.linspace(-0.1, 0.1, n))}}
    section = {**SECTION, "residuals": {"seen_model": spread, "unseen_model": spread},
               "residual_scales": {"seen_model": {"offline/graphs/1gpu": {"tokens_per_second": [0.05] * n}}}}
    scenario = Scenario.build(model="llama-3.1-8b", hardware="hgx-h200")
    scenario = scenario.with_(profile=dataclasses.replace(scenario.profile, uncertainty=section))
    point = {"tokens_per_second": 1000.0}
    seen = interval_for(scenario, Layout(tp=1), point, mode="offline", coef_sd={"wave": 0.01})
    assert seen.relative_half_width("tokens_per_second", 1000.0) < 0.05  # a fifth of the runs' typical term
    # another model: leave-one-model-out residuals, whose error is the model's more than the coefficients'
    other = scenario.with_(model=Scenario.build(model="qwen2.5-7b", hardware="hgx-h200").model)
    unseen = interval_for(other, Layout(tp=1), point, mode="offline", coef_sd={"wave": 0.01})
    assert unseen.source == "leave-one-model-out"
    assert unseen.relative_half_width("tokens_per_second", 1000.0) > 0.08


def test_combine_adds_the_coefficient_term_in_quadrature():
    assert combine(100.0, (-0.1, 0.0, 0.1), 0.0, 0.9) == pytest.approx((100 * math.exp(-0.1), 100 * math.exp(0.1)))
    lo, hi = combine(100.0, (-0.1, 0.0, 0.1), 0.05, 0.9)
    half = math.hypot(0.1, 1.6449 * 0.05)
    assert (lo, hi) == pytest.approx((100 * math.exp(-half), 100 * math.exp(half)), rel=1e-4)


def test_check_level():
    with pytest.raises(UserError, match="interval-level"):
        check_level(1.5)


def test_lookup_falls_back_from_a_thin_regime_to_its_mode_then_to_the_family():
    residuals = {"offline/graphs/1gpu": {"tokens_per_second": [0.01] * 10},
                 "offline/eager/multigpu": {"tokens_per_second": [0.5] * 3},
                 "online/graphs/1gpu": {"ttft_s_mean": [0.3] * 9}}
    assert set(lookup(residuals, "tokens_per_second", "offline/graphs/1gpu")) == {0.01}
    # 3 residuals are too few for their own regime: pooled with the other offline ones
    assert len(lookup(residuals, "tokens_per_second", "offline/eager/multigpu")) == 13
    # TTFT p99 offline has none of its own: the online TTFT mean's
    assert set(lookup(residuals, "ttft_s_p99", "offline/graphs/1gpu")) == {0.3}
    # elapsed time is the inverse of a throughput: residuals change sign
    assert set(lookup(residuals, "elapsed_time", "offline/graphs/1gpu")) == {-0.01}


SECTION = {"models": ["llama-3.1-8b"], "engine_generations": ["v1"],
           "residuals": {"seen_model": {"offline/graphs/1gpu": {"tokens_per_second": [0.01, -0.02, 0.03] * 4}},
                         "unseen_model": {"offline/graphs/1gpu": {"tokens_per_second": [0.1, -0.2, 0.3] * 4}}},
           "transfer": [{"name": "other", "device": "gpu", "residuals": {"tokens_per_second": [0.5, -0.6, 1.0]}}]}


def test_choose_by_model_gpu_and_engine():
    model = ResidualModel(section=SECTION, gpu="h200-sxm")
    assert model.choose(model_name="llama-3.1-8b", gpu_name="h200-sxm", engine_generation="v1")[0] == "k-fold"
    assert model.choose(model_name="qwen2.5-7b", gpu_name="h200-sxm", engine_generation="v1")[0] \
        == "leave-one-model-out"
    assert model.choose(model_name="llama-3.1-8b", gpu_name="h100-sxm",
                        engine_generation="v1")[0].startswith("transfer")
    assert model.choose(model_name="llama-3.1-8b", gpu_name="h200-sxm",
                        engine_generation="v0")[0].startswith("transfer")


def _width(scenario, layout, source):
    iv = interval_for(scenario, layout, {"tokens_per_second": 1000.0}, mode="offline", coef_sd={})
    assert iv.source.startswith(source)
    lo, hi = iv.bounds["tokens_per_second"]
    assert lo < 1000.0 < hi
    return hi - lo


def test_unseen_and_transferred_predictions_are_wider():
    scenario = Scenario.build(model="llama-3.1-8b", hardware="hgx-h200")
    scenario = scenario.with_(profile=dataclasses.replace(scenario.profile, uncertainty=SECTION))
    seen = _width(scenario, Layout(tp=1), "k-fold")
    unseen = _width(scenario.with_(model=Scenario.build(model="qwen2.5-7b", hardware="hgx-h200").model),
                    Layout(tp=1), "leave-one-model-out")
    moved = _width(scenario.with_(profile=dataclasses.replace(scenario.profile, gpu="v100-sxm2-32gb")),
                   Layout(tp=1), "transfer")
    assert seen < unseen < moved


def test_no_section_no_interval():
    scenario = Scenario.build(model="llama-3.1-8b", hardware="hgx-h200")
    scenario = scenario.with_(profile=dataclasses.replace(scenario.profile, uncertainty=None))
    assert interval_for(scenario, Layout(tp=1), {"tokens_per_second": 1.0}, mode="offline") is None


def test_shipped_h200_profile_gives_every_predict_figure_a_sharp_interval():
    scenario = Scenario.build(model="llama-3.1-8b", hardware="hgx-h200", num_prompts=200)
    best = predict_all(scenario, 1, simulate_top=0)[0]
    iv = predict_intervals(scenario, [best])[0]
    assert set(iv.bounds) == set(PREDICT_FIGURES)
    for name in PREDICT_FIGURES:
        lo, hi = iv.bounds[name]
        assert lo < getattr(best, name) < hi
    assert iv.relative_half_width("tokens_per_second", best.tokens_per_second) < 0.2
    # the same prediction on a GPU the profile was not fitted on is wider
    moved = Scenario.build(model="llama-3.1-8b", hardware="dgx-h100", num_prompts=200)
    other = predict_all(moved, 1, simulate_top=0)[0]
    wide = predict_intervals(moved, [other])[0]
    assert wide.relative_half_width("tokens_per_second", other.tokens_per_second) > \
        iv.relative_half_width("tokens_per_second", best.tokens_per_second)


def test_regime_key():
    assert regime(mode="online", eager=True, gpus=4) == "online/eager/multigpu"


def _cli_json(capsys, *argv):
    import json

    from perfmodel.cli import main

    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_predict_json_interval_fields_and_level(capsys):
    args = ("predict", "--hardware", "hgx-h200", "--model", "llama-3.1-8b", "--gpus", "1", "--simulate-top", "0",
            "--format", "json")
    wide = _cli_json(capsys, *args)["layouts"][0]["interval"]
    narrow = _cli_json(capsys, *args, "--interval-level", "0.8")["layouts"][0]["interval"]
    assert list(wide) == ["level", "source", "tokens_per_second", "output_tokens_per_second", "requests_per_second",
                          "elapsed_time"]
    assert wide["source"] == "k-fold"  # a model the profile was fitted on
    assert wide["level"] == 0.9 and narrow["level"] == 0.8
    for name in PREDICT_FIGURES:
        assert wide[name][0] < narrow[name][0] < narrow[name][1] < wide[name][1]


def test_simulate_json_metrics_interval(capsys):
    out = _cli_json(capsys, "simulate", "--hardware", "hgx-h200", "--model", "llama-3.1-8b", "--request-rate", "5",
                    "--num-prompts", "40", "--format", "json")
    m = out["metrics"]
    for name in ("output_tokens_per_second", "ttft_s_mean", "ttft_s_median", "ttft_s_p99", "tpot_s_mean",
                 "e2e_s_p99"):
        lo, hi = m["interval"][name]
        assert lo < m[name] < hi


@pytest.mark.parametrize("model, hardware, layout", [("llama-3.1-8b", "hgx-h200", Layout(tp=1)),
                                                     ("llama-3.1-70b", "taiwania2", Layout(tp=8, pp=2))])
def test_the_coefficient_term_from_sampled_decode_steps_equals_the_full_wave(monkeypatch, model, hardware, layout):
    """WAVE_DECODE_SAMPLES evenly spaced decode steps give the delta-method term of every step (within 1%)."""
    import perfmodel.uncertainty.intervals as uncertainty

    scenario = Scenario.build(model=model, hardware=hardware, output_len=600)
    covariance = ResidualModel(section=scenario.profile.uncertainty, gpu=scenario.profile.gpu).covariance
    sampled = uncertainty.coefficient_log_sd(scenario, layout, covariance, ("wave",))["wave"]
    monkeypatch.setattr(uncertainty, "WAVE_DECODE_SAMPLES", None)
    full = uncertainty.coefficient_log_sd(scenario, layout, covariance, ("wave",))["wave"]
    assert full > 0 and sampled == pytest.approx(full, rel=0.01)


def test_calibrate_predict_commits_an_interval_with_every_prediction():
    """Pre-registered predictions carry their interval, so coverage can be judged on runs measured later."""
    from pathlib import Path

    from calibrate.report.predict_sweep import predict_sweep
    from hardware import load_hardware
    from perfmodel.cost.coefficients import default_profile

    sweep = Path(__file__).resolve().parents[1] / "sweeps" / "h200-holdout.yaml"
    records = predict_sweep(sweep, "h200-sxm", default_profile(load_hardware("h200-sxm").gpu.name), level=0.8)
    assert records
    for r in records:
        iv = r["interval"]
        assert iv["level"] == 0.8 and iv["source"]
        for name in ("tokens_per_second", "output_tokens_per_second", "requests_per_second"):
            low, high = iv[name]
            assert low < r[name] < high


def test_a_planned_run_is_costed_on_its_own_workload_as_a_measured_one_is():
    """The coefficient term of a pre-registered interval differentiates the run's own steps: before, a planned
    run kept the scenario's default workload, so every run of one engine got the same term."""
    from pathlib import Path

    from calibrate.fit.observations import run_workload
    from calibrate.report.predict_sweep import planned_observation
    from calibrate.records.sweep import load_sweep
    from hardware import load_hardware
    from perfmodel.cost.coefficients import default_profile

    sweep = load_sweep(Path(__file__).resolve().parents[1] / "sweeps" / "h200-holdout3.yaml")
    profile = default_profile(load_hardware("h200-sxm").gpu.name)
    planned = [planned_observation(run, "h200-sxm", profile, "0.26.0", sweep.base_dir) for run in sweep.runs[:2]]
    for obs in planned:
        assert obs.scenario.workload == run_workload(obs.input_lens, obs.output_lens)
    assert planned[0].scenario.workload.input_len == 200 and planned[1].scenario.workload.input_len == 3000
    from calibrate.report.predict_sweep import predict_sweep

    records = predict_sweep(Path(__file__).resolve().parents[1] / "sweeps" / "h200-holdout3.yaml", "h200-sxm", profile)
    # a decode-heavy and a prefill-heavy run of one engine: their own coefficient terms, so their own widths
    widths = {round((r["interval"]["tokens_per_second"][1] - r["interval"]["tokens_per_second"][0])
                    / r["tokens_per_second"], 4) for r in records[:2]}
    assert len(widths) == 2
