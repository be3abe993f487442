"""Intervals for what the profile never saw (issue 22): a model or kernel path outside the fit takes the spread of
fits on other models predicting them (``residuals.model_transfer``) and says so in its source."""
from pathlib import Path

import yaml

from perfmodel.uncertainty.intervals import Interval, ResidualModel, kernel_path

ROOT = Path(__file__).resolve().parents[1]
SECTION = {
    "models": ["seen-7b"], "engine_generations": ["v1"], "kernel_paths": ["dense"],
    "residuals": {"seen_model": {"offline/graphs/1gpu": {"tokens_per_second": [0.01, -0.02, 0.03]}},
                  "unseen_model": {"offline/graphs/1gpu": {"tokens_per_second": [0.05, -0.04]}},
                  "model_transfer": {"offline/graphs/1gpu": {"tokens_per_second": [0.1, -0.2, 0.15]},
                                     "offline/eager/multigpu": {"tokens_per_second": [0.3]}}},
}


def choose(model: str, kernel: str) -> tuple[str, dict]:
    return ResidualModel(section=SECTION, gpu="h200-sxm").choose(model_name=model, gpu_name="h200-sxm",
                                                                  engine_generation="v1", kernel_path=kernel)


def test_an_unseen_model_takes_the_model_transfer_spread_with_leave_one_model_out():
    source, pool = choose("other-70b", "dense")
    assert source.startswith("model-transfer (model other-70b not in the fit")
    assert sorted(pool["offline/graphs/1gpu"]["tokens_per_second"]) == [-0.2, -0.04, 0.05, 0.1, 0.15]
    assert pool["offline/eager/multigpu"]["tokens_per_second"] == [0.3]


def test_an_unseen_kernel_path_of_a_seen_model_takes_it_too_and_a_seen_one_the_k_fold():
    source, _ = choose("seen-7b", "gptq_marlin")
    assert source.startswith("model-transfer (kernel path gptq_marlin not in the fit")
    source, pool = choose("seen-7b", "dense")
    assert source == "k-fold" and pool == SECTION["residuals"]["seen_model"]


def test_the_json_interval_says_where_its_width_comes_from():
    assert Interval(level=0.9, bounds={"tokens_per_second": (1.0, 2.0)}, source="model-transfer (x)").to_dict() == {
        "level": 0.9, "source": "model-transfer (x)", "tokens_per_second": [1.0, 2.0]}


def test_the_shipped_h200_profile_stores_the_model_transfer_spread_and_its_kernel_paths():
    section = yaml.safe_load((ROOT / "perfmodel" / "profiles" / "h200-sxm.yaml").read_text())["uncertainty"]
    # the kernels of the runs it was fitted on: bf16 and sweep 2's quantized runs
    assert section["kernel_paths"] == ["awq_marlin", "dense", "fp8_w8a8", "machete"]
    pooled = [v for by_metric in section["residuals"]["model_transfer"].values()
              for v in by_metric.get("tokens_per_second", [])]
    assert len(pooled) >= 500  # bench_transfer's 538 offline predictions


def test_kernel_path_is_the_quantized_kernel_or_dense():
    class P:
        quant_kernel = None
    assert kernel_path(P()) == "dense"
    P.quant_kernel = "gptq_exllama"
    assert kernel_path(P()) == "gptq_exllama"
