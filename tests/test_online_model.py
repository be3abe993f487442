"""The online serving model on the perfmodel side (docs/online-model.md): which engines schedule asynchronously."""

from __future__ import annotations

import pytest

from perfmodel.layout import Layout

from perfmodel.scenario import Scenario


@pytest.mark.parametrize("options, expected", [
    (dict(), True),  # vLLM 0.26 V1: async scheduling on by default
    (dict(vllm_version="0.7.0"), False),  # V0 engine
    (dict(vllm_version="0.10.0"), False),  # a V1 release whose default was not read
    (dict(batching="static"), False),  # static batching has no waiting step
])
def test_async_scheduling_follows_the_release(options, expected):
    scenario = Scenario.build(model="llama-3.1-8b", hardware="h200-sxm", **options)
    assert scenario.engine_config(1000, served=True, pp=1).async_scheduling is expected
    assert scenario.engine_config(1000, pp=1).async_scheduling is False  # offline: all queued before the first step


@pytest.mark.parametrize("tp, pp, workers", [(8, 1, 7), (8, 2, 14), (4, 4, 12), (1, 2, 0)])
def test_v0_worker_loops_cost_by_worker_and_stage(tp, pp, workers):
    # vLLM 0.7.0: every rank but each stage's first is a non-driver worker; the stop also calls each later driver
    scenario = Scenario.build(model="llama-3.1-70b", hardware="taiwania2", vllm_version="0.7.0", max_model_len=4096)
    c = scenario.profile.coefficients
    cfg = scenario.engine_config(1000, served=True, pp=pp, tp=tp)
    loops = c.worker_loop_fixed_s + workers * c.worker_loop_per_worker_s
    assert cfg.idle_restart_s == pytest.approx(loops if workers else 0.0)  # TP1 x PPn: no worker to start
    assert cfg.idle_stop_s == pytest.approx(loops + (pp - 1) * c.worker_loop_per_stage_s)


@pytest.mark.parametrize("options", [dict(hardware="taiwania2", vllm_version="0.7.0"),  # one GPU: no workers
                                     dict(hardware="h200-sxm", tp=8)])  # V1's workers never stop looping
def test_no_worker_loop_stops_on_one_gpu_or_v1(options):
    tp = options.pop("tp", 1)
    cfg = Scenario.build(model="llama-3.1-8b", **options).engine_config(1000, served=True, pp=1, tp=tp)
    assert (cfg.idle_stop_s, cfg.idle_restart_s) == (0.0, 0.0)


def test_steps_beyond_the_largest_cuda_graph_take_at_least_the_floor():
    import numpy as np

    from perfmodel.cost.serving import GraphlessFloorStepCost
    from simulator.batch import BatchStats

    class OneMillisecond:
        num_stages = 1

        def __call__(self, batch):
            return 1e-3 + 0 * np.asarray(batch.num_decode_tokens, dtype=float)

    cost = GraphlessFloorStepCost(OneMillisecond(), 5e-3, 512)
    assert cost(BatchStats(512, 0, 0.0, 512, 0, 1, 1)) == 1e-3  # 512 tokens: a graph replays
    assert cost(BatchStats(512, 1, 0.0, 512, 10, 2, 2)) == 5e-3  # 513 tokens: no graph, the floor
    many = BatchStats(0, np.array([100, 600]), 0.0, 0, np.array([1000, 6000]), np.array([100, 600]),
                      np.array([100, 600]))
    np.testing.assert_array_equal(cost(many), [1e-3, 5e-3])


@pytest.mark.parametrize("overrides, tokens", [(dict(), 512), (dict(max_num_seqs=64), 128),
                                               (dict(max_num_batched_tokens=256), 256), (dict(enforce_eager=True), 0)])
def test_largest_cuda_graph_follows_vllm_026(overrides, tokens):
    from perfmodel.cost.serving import max_cuda_graph_tokens

    scenario = Scenario.build(model="llama-3.1-8b", hardware="h200-sxm", entry_point="serve", **overrides)
    assert max_cuda_graph_tokens(scenario.engine) == tokens


def test_served_terms_change_served_runs_only():
    import numpy as np

    from simulator.request import requests_from_arrays

    scenario = Scenario.build(model="llama-3.1-8b", hardware="h200-sxm", entry_point="serve", max_num_seqs=256)
    rng = np.random.default_rng(0)
    requests = requests_from_arrays(np.cumsum(rng.exponential(0.05, 60)), np.full(60, 512), np.full(60, 32))
    layout = Layout(tp=1)
    offline = scenario.simulate(layout, requests).metrics
    c = scenario.profile.coefficients.replace(server_request_latency_s=0.0, server_stream_token_s=0.0,
                                              server_graphless_layer_s=0.0)
    base = scenario.with_coefficients(c).simulate(layout, requests, served=True).metrics
    assert base.ttft_s_mean > offline.ttft_s_mean  # served: async scheduling's admission lag only
    floor = scenario.with_coefficients(c.replace(server_graphless_layer_s=1e-3)).simulate(layout, requests,
                                                                                         served=True).metrics
    assert floor.tpot_s_mean > base.tpot_s_mean and floor.ttft_s_mean > base.ttft_s_mean
    stream = scenario.with_coefficients(c.replace(server_stream_token_s=1e-3)).simulate(layout, requests,
                                                                                       served=True).metrics
    assert stream.ttft_s_mean > base.ttft_s_mean
    assert scenario.with_coefficients(c.replace(server_graphless_layer_s=1e-3)).simulate(layout, requests).metrics \
        == offline  # not served: no floor, no lag


def test_the_online_fit_recovers_a_known_request_latency():
    """Fit wiring: a measured run's metrics replaced by the model's own at a 5 ms request latency; fitting only
    the serving coefficients from the shipped profile gets that latency back."""
    import dataclasses
    from pathlib import Path

    from calibrate.fit.offline import CoefficientFitter
    from calibrate.fit.online import serving_coefficients
    from calibrate.fit.observations import load_observations, predicted_metrics
    from calibrate.records.store import load_records
    from perfmodel.cost.coefficients import load_profile

    root = Path(__file__).resolve().parents[1]
    records = [r for r in load_records(root / "data" / "h200" / "online-gpu3.jsonl") if r.get("status") == "ok"]
    cluster, observations = load_observations(records[:2], "h200-sxm")  # closed loop, 1 and 8 clients
    assert serving_coefficients(observations) == ("server_request_latency_s", "server_stream_token_s",
                                                  "server_graphless_layer_s")
    prior = load_profile(root / "perfmodel" / "profiles" / "h200-sxm.yaml").coefficients
    truth = prior.replace(server_request_latency_s=5e-3)
    synthetic = [dataclasses.replace(o, measured=predicted_metrics(o, o.simulate(truth, kv_from="model",
                                                                                record_timeline=False)))
                 for o in observations]
    fitter = CoefficientFitter(cluster, prior, step_names=("server_request_latency_s",), fit_memory=False)
    fitted = fitter.fit(synthetic).coefficients_
    assert fitted.server_request_latency_s == pytest.approx(5e-3, rel=0.02)
    assert fitted.gemm_compute_efficiency == prior.gemm_compute_efficiency  # the offline part is kept


def test_fit_serving_rewrites_only_the_serving_part_of_a_profile(tmp_path):
    """`perfmodel calibrate fit-serving`: the serving coefficients get value/prior/stderr entries and the profile
    a serving: section; every other coefficient and section stays as it was."""
    import shutil
    from pathlib import Path

    import yaml

    from perfmodel.cli import main

    root = Path(__file__).resolve().parents[1]
    profile = tmp_path / "h200.yaml"
    shutil.copy(root / "perfmodel" / "profiles" / "h200-sxm.yaml", profile)
    runs = tmp_path / "runs.jsonl"
    runs.write_text("".join((root / "data" / "h200" / "online-gpu3.jsonl").read_text().splitlines(True)[:2]))
    before = yaml.safe_load(profile.read_text())
    assert main(["calibrate", "fit-serving", str(runs), "--hardware", "h200-sxm", "--profile", str(profile),
                 "--cv", "none"]) == 0
    after = yaml.safe_load(profile.read_text())
    serving = set(after["serving"]["fitted"])
    assert serving == {"server_request_latency_s", "server_stream_token_s", "server_graphless_layer_s"}
    assert after["serving"]["data"]["runs"] == 2 and "ttft_s_mean" in after["serving"]["errors"]["in_sample"]
    assert {k: v for k, v in after["coefficients"].items() if k not in serving} == \
        {k: v for k, v in before["coefficients"].items() if k not in serving}
    assert all(isinstance(after["coefficients"][k], dict) for k in serving)
    assert {k: v for k, v in after.items() if k not in ("coefficients", "serving", "findings")} == \
        {k: v for k, v in before.items() if k not in ("coefficients", "serving", "findings")}


def test_update_profile_changes_only_the_serving_lines(tmp_path):
    """Twice in a row (the second replaces the first's entries and section); every other line as it was."""
    import shutil
    from pathlib import Path

    import yaml

    from calibrate.fit.serving import ServingFit, update_profile
    from perfmodel.cost.coefficients import load_profile

    root = Path(__file__).resolve().parents[1]
    profile = tmp_path / "h200.yaml"
    shutil.copy(root / "perfmodel" / "profiles" / "h200-sxm.yaml", profile)
    original = profile.read_text().splitlines()
    before_doc = yaml.safe_load(profile.read_text())
    start = load_profile(profile).coefficients
    names = ("server_request_latency_s", "server_stream_token_s")  # the second has no line yet: added
    for latency in (3e-3, 4e-3):
        fit = ServingFit(coefficients=start.replace(server_request_latency_s=latency, server_stream_token_s=2e-5),
                         fitted=names, stderr={"server_request_latency_s": 1e-4}, prior=start)
        update_profile(profile, fit, source="runs.jsonl", options={}, errors={"in_sample": {}}, runs=[])
        assert load_profile(profile).coefficients == fit.coefficients
    doc = yaml.safe_load(profile.read_text())
    entry = doc["coefficients"]["server_request_latency_s"]
    assert {k: entry[k] for k in ("value", "prior", "stderr")} == \
        {"value": 4e-3, "prior": start.server_request_latency_s, "stderr": 1e-4}
    assert entry["anchor"] == before_doc["coefficients"]["server_request_latency_s"]["anchor"]  # the same anchor
    assert doc["serving"]["fitted"] == list(names)
    text, before = profile.read_text(), "\n".join(original) + "\n"
    head = before[:before.index("\nfindings:\n")]
    assert text.startswith(head)  # everything before the findings (recomputed) as it was, line for line
    tail = before[before.index("\nuncertainty:\n"):] if "\nuncertainty:\n" in before else ""
    tail = tail.split("\nserving:\n")[0]  # an earlier serving: section is replaced
    assert tail in text  # and the uncertainty section
