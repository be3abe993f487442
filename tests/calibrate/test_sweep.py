import math
from pathlib import Path

import pytest
import yaml

from calibrate.records.sweep import LengthDist, SweepError, load_sweep, parse_sweep

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, doc) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return p


BASE = {"defaults": {"model": "m", "max_model_len": 512},
        "groups": [{"name": "g", "num_prompts": 4, "grid": {"input_len": [8, 16], "output_len": [4, 8, 16]}}]}


def test_cpu_tiny_sweep_expands_the_grid():
    sweep = load_sweep(ROOT / "sweeps" / "cpu-tiny.yaml")
    assert sweep.name == "cpu-tiny"
    assert len(sweep.runs) == 8
    assert len(sweep.by_engine()) == 2  # max_num_seqs 8 and 32
    assert len({r.run_id for r in sweep.runs}) == 8
    assert all(r.engine.dummy_weights and r.engine.enforce_eager for r in sweep.runs)


def test_run_id_is_stable_and_ignores_names(tmp_path):
    a = load_sweep(write(tmp_path, BASE))
    doc = {**BASE, "name": "other", "groups": [{**BASE["groups"][0], "name": "renamed"}]}
    b = parse_sweep(doc)
    assert [r.run_id for r in a.runs] == [r.run_id for r in b.runs]
    assert len(a.runs) == 6
    assert a.runs[0].run_id == load_sweep(write(tmp_path, BASE)).runs[0].run_id


def test_aliases_and_engine_grouping(tmp_path):
    doc = {"defaults": {"model": "m", "input_len": 8, "output_len": 8, "num_prompts": 2},
           "groups": [{"grid": {"tp": [1, 2], "pp": [1, 2], "max_num_seqs": [4]}}]}
    sweep = parse_sweep(doc)
    assert {(r.engine.tensor_parallel_size, r.engine.pipeline_parallel_size) for r in sweep.runs} == {
        (1, 1), (1, 2), (2, 1), (2, 2)}
    assert len(sweep.by_engine()) == 4
    assert sweep.runs[-1].engine.custom_all_reduce_disabled  # tp > 1 -> disabled by default


def test_duplicates_are_measured_once():
    doc = {"defaults": {"model": "m", "input_len": 8, "output_len": 8, "num_prompts": 2},
           "groups": [{"name": "a"}, {"name": "b"}]}
    assert len(parse_sweep(doc).runs) == 1


def test_online_workloads():
    doc = {"defaults": {"model": "m", "mode": "online", "input_len": 8, "output_len": 8, "num_prompts": 2},
           "groups": [{"grid": {"request_rate": ["inf", 2.5]}, "burstiness": 0.5, "max_concurrency": 4}]}
    runs = parse_sweep(doc).runs
    assert math.isinf(runs[0].workload.request_rate) and runs[1].workload.request_rate == 2.5
    assert runs[0].workload.to_dict()["request_rate"] == "inf"
    assert runs[0].engine_id == runs[1].engine_id


def test_lognormal_lengths_are_seeded():
    doc = {"defaults": {"model": "m", "num_prompts": 2000, "output_len": 8},
           "groups": [{"input_len": {"dist": "lognormal", "mean": 200, "sigma": 0.5, "max": 4000}}]}
    w = parse_sweep(doc).runs[0].workload
    assert isinstance(w.input_len, LengthDist)
    ins, outs = w.lengths()
    assert ins == w.lengths()[0] and outs == [8] * 2000
    assert abs(sum(ins) / len(ins) - 200) < 10
    assert min(ins) >= 1


@pytest.mark.parametrize("change, message", [
    ({"groups": [{"grid": {"input_len": 8}}]}, "grid values must be a non-empty list"),
    ({"groups": [{"max_num_seq": 8}]}, "unknown key 'max_num_seq'"),
    ({"groups": [{"max_num_seqs": "8"}]}, "max_num_seqs: must be int"),
    ({"groups": [{"enforce_eager": 1}]}, "enforce_eager: must be bool"),
    ({"groups": [{"input_len": 500, "output_len": 100}]}, "exceeds max_model_len 512"),
    ({"groups": [{"request_rate": 2}]}, "request_rate: only for mode: online"),
    ({"groups": [{"mode": "batch"}]}, "mode must be one of offline, online"),
    ({"groups": [{"input_len": {"dist": "normal", "mean": 3}}]}, "dist must be one of"),
    ({"groups": []}, "groups: must be a non-empty list"),
    ({"grups": []}, "unknown top-level key 'grups'"),
])
def test_errors_are_one_line_with_file_and_key(tmp_path, change, message):
    doc = {"defaults": {"model": "m", "max_model_len": 512, "input_len": 8, "output_len": 8, "num_prompts": 2},
           "groups": [{}], **change}
    path = write(tmp_path, doc)
    with pytest.raises(SweepError) as err:
        load_sweep(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SweepError, match="no such sweep file"):
        load_sweep(tmp_path / "nope.yaml")
    with pytest.raises(SweepError, match="not valid YAML"):
        load_sweep(write(tmp_path, "groups: [\n"))


def test_sweep_lengths_draw_through_the_one_distribution_type():
    """A sweep's LengthDist only spells a distribution; the draws (pinned: they define what runs were sent, and
    run ids of recorded data depend on them staying put) come from simulator.workload.LengthDistribution."""
    import numpy as np

    from calibrate.records.sweep import LengthDist
    from simulator.workload import LengthDistribution

    lognormal = LengthDist(dist="lognormal", mean=256, sigma=0.8, min=1, max=4000).distribution()
    uniform = LengthDist(dist="uniform", min=5, max=900).distribution()
    assert isinstance(lognormal, LengthDistribution) and isinstance(uniform, LengthDistribution)
    assert lognormal.sample(6, np.random.default_rng([3, 1])).tolist() == [189, 124, 42, 322, 253, 157]
    assert uniform.sample(6, np.random.default_rng([3, 1])).tolist() == [881, 231, 523, 369, 697, 310]
