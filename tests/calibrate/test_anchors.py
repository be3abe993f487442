"""Anchors (perfmodel/cost/anchors.py) as the fit's priors: every coefficient has one, the penalty is the Gaussian
prior's quadratic under the fit's soft-L1 loss, findings flag what the fit pushes to a bound or far away, and the
shipped profiles list each coefficient's anchor."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from calibrate.fit.offline import CoefficientFitter
from calibrate.fit.online import ANCHOR_DATA_SD, anchor_penalty, soft_l1_cost
from calibrate.fit.observations import load_observations
from perfmodel.cost.anchors import KINDS, Anchor, default_anchors, findings, load_anchors
from perfmodel.cost.coefficients import Coefficients, load_profile
from perfmodel.errors import UserError
from tests.calibrate.test_fit import FITTED, TRUE, synthetic_records

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "perfmodel" / "profiles"


@pytest.mark.parametrize("engine", ["v0", "v1"])
def test_every_coefficient_has_an_anchor_with_a_source(engine):
    anchors = default_anchors(engine)
    assert set(anchors) == set(Coefficients.names())
    for name, a in anchors.items():
        assert a.sd > 0 and a.kind in KINDS and len(a.source) > 20, name


def test_the_cpu_anchors_differ_by_engine_and_name_their_measurements():
    v0, v1 = default_anchors("v0"), default_anchors("v1")
    assert v0["per_seq_overhead_s"].value != v1["per_seq_overhead_s"].value
    for anchors, data in ((v0, "data/anchors/v0-scheduler.jsonl"), (v1, "data/anchors/v1-scheduler.jsonl")):
        assert anchors["per_seq_overhead_s"].data == data and (ROOT / data).is_file()


def test_an_anchor_set_overrides_the_defaults_and_rejects_unknown_names(tmp_path):
    good = tmp_path / "a.yaml"
    good.write_text(yaml.safe_dump({"engine_generation": "v0", "anchors": {
        "memory_efficiency": {"value": 0.6, "sd": 0.05, "kind": "publication", "source": "a paper"}}}))
    anchors = load_anchors(good)
    assert anchors["memory_efficiency"] == Anchor(value=0.6, sd=0.05, kind="publication", source="a paper")
    assert anchors["per_seq_overhead_s"] == default_anchors("v0")["per_seq_overhead_s"]
    bad = tmp_path / "b.yaml"
    bad.write_text(yaml.safe_dump({"anchors": {"no_such_coefficient": {"value": 1, "sd": 1}}}))
    with pytest.raises(UserError, match="unknown coefficient"):
        load_anchors(bad)
    with pytest.raises(UserError, match="sd must be positive"):
        Anchor(value=1.0, sd=0.0, kind="datasheet", source="x")


def test_the_penalty_costs_the_gaussian_quadratic_under_the_soft_l1_loss():
    x = np.array([0.2, 0.5, 0.8, 1.4])
    centre, sd = np.full(4, 0.5), np.full(4, 0.1)
    r = anchor_penalty(x, centre, sd)
    p = ANCHOR_DATA_SD * (x - centre) / sd
    assert np.sign(r).tolist() == np.sign(p).tolist()
    for ri, pi in zip(r, p):  # least_squares' cost of one residual is soft_l1_cost's
        assert soft_l1_cost(np.array([ri])) == pytest.approx(0.5 * pi**2, rel=1e-9)


def test_findings_flag_a_bound_and_a_far_value_only():
    anchors = default_anchors()
    c = Coefficients().replace(gemm_half_efficiency_tokens=1.0, memory_efficiency=0.85 - 3 * 0.10,
                               attention_memory_efficiency=0.70 + 0.15)  # at the bound, -3 sd, +1 sd
    found = findings(c, ("gemm_half_efficiency_tokens", "memory_efficiency", "attention_memory_efficiency"), anchors)
    assert len(found) == 2
    assert "at its bound" in found[0] and "memory_efficiency" in found[1] and "-3.0 sd from its anchor" in found[1]


def test_a_tight_anchor_holds_a_coefficient_and_loose_ones_let_the_data_speak():
    cluster, observations = load_observations(synthetic_records(), "h200-sxm")
    names = tuple(FITTED)
    loose = {n: Anchor(value=getattr(Coefficients(), n), sd=10 * max(getattr(Coefficients(), n), 1e-6),
                       kind="first principles", source="a wide test anchor") for n in Coefficients.names()}
    free = CoefficientFitter(cluster, step_names=names, anchors=loose).fit(observations).coefficients_
    assert free.gemm_compute_efficiency == pytest.approx(TRUE.gemm_compute_efficiency, rel=0.05)
    tight = dict(loose, gemm_compute_efficiency=Anchor(value=0.9, sd=1e-4, kind="datasheet", source="a tight one"))
    fitter = CoefficientFitter(cluster, step_names=names, anchors=tight).fit(observations)
    assert fitter.coefficients_.gemm_compute_efficiency == pytest.approx(0.9, abs=1e-3)
    assert fitter.findings_ == []


@pytest.mark.parametrize("name", ["h200-sxm.yaml", "v100-sxm2-32gb.yaml"])
def test_shipped_profiles_list_each_coefficients_anchor_and_their_findings(name):
    doc = yaml.safe_load((PROFILES / name).read_text())
    for coefficient in Coefficients.names():
        anchor = doc["coefficients"][coefficient]["anchor"]
        assert anchor["sd"] > 0 and anchor["kind"] in KINDS and anchor["source"], coefficient
    anchors = {n: Anchor(**doc["coefficients"][n]["anchor"]) for n in Coefficients.names()}
    profile = load_profile(PROFILES / name)
    serving = [n for n in (doc.get("serving") or {}).get("fitted", []) if n not in profile.fitted]
    assert doc["findings"] == findings(profile.coefficients, [*profile.fitted, *serving], anchors)


def test_no_fitted_coefficient_of_the_refitted_h200_profile_sits_at_a_bound():
    profile = load_profile(PROFILES / "h200-sxm.yaml")
    for name in profile.fitted:
        lower, upper = Coefficients.bounds(name)
        value = getattr(profile.coefficients, name)
        assert lower + 1e-6 * (upper - lower) < value < upper - 1e-6 * (upper - lower), name


def test_never_fitted_elementwise_coefficients_take_their_anchors_values():
    from hardware import load_hardware

    anchors = load_anchors(ROOT / "data/anchors/v100-sxm2-32gb.yaml")
    fitter = CoefficientFitter(load_hardware("taiwania2"), anchors=anchors).fit([])
    for name in Coefficients.group("elementwise"):
        assert getattr(fitter.coefficients_, name) == anchors[name].value != getattr(Coefficients(), name)
    profile = load_profile(PROFILES / "v100-sxm2-32gb.yaml").coefficients
    assert profile.elementwise_memory_efficiency == anchors["elementwise_memory_efficiency"].value


def test_hand_written_profiles_read_their_anchors_and_refuse_an_entry_without_a_value(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("coefficients:\n"
                    "  step_overhead_s: {value: 0.001, anchor: {value: 1e-5, kind: measured log}}\n"
                    "  per_seq_overhead_s: {value: 0.00002, anchor: {value: n/a}}\n"
                    "  memory_efficiency: 0.7\n")
    profile = load_profile(path)
    assert profile.anchors == {"step_overhead_s": (1e-5, "measured log")}  # YAML's text '1e-5' read as a number
    path.write_text("coefficients:\n  step_overhead_s: {anchor: {value: 0.001}}\n")
    with pytest.raises(UserError, match=r"\['step_overhead_s'\] have no 'value'"):
        load_profile(path)
