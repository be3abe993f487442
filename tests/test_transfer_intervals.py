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


ONE_MODEL = {"models": ["seen-72b"], "engine_generations": ["v0"], "kernel_paths": ["gptq_exllama"],
             "model_transfer_source": "h200-sxm",
             "residuals": {"seen_model": {"online/graphs/multigpu": {"output_tokens_per_second": [0.02]}},
                           "model_transfer": {"offline/graphs/1gpu": {"tokens_per_second": [0.1, -0.2]}}}}


def test_a_one_model_profile_names_the_profile_its_model_transfer_was_measured_on():
    model = ResidualModel(section=ONE_MODEL, gpu="v100-sxm2-32gb")
    source, pool = model.choose(model_name="other-405b", gpu_name="v100-sxm2-32gb", engine_generation="v0",
                                kernel_path="gptq_alt")
    assert source.startswith("model-transfer measured on h200-sxm (model other-405b not in the fit")
    assert pool == ONE_MODEL["residuals"]["model_transfer"]
    source, _ = model.choose(model_name="seen-72b", gpu_name="v100-sxm2-32gb", engine_generation="v0",
                             kernel_path="gptq_alt")
    assert source.startswith("model-transfer measured on h200-sxm (kernel path gptq_alt not in the fit")


def test_borrowing_pools_the_other_profiles_transfer_and_leave_one_model_out_with_the_own_k_fold():
    from calibrate.report.uncertainty import build_section

    class Fitter:  # build_section's full fit and folds are not what this tests
        covariance_ = None
    import calibrate.report.uncertainty as u

    original = (u.CoefficientFitter, u.cross_validated_rows)
    own = [{"cv": "kfold", "run_id": "r", "regime": "offline/graphs/1gpu", "metric": "tokens_per_second",
            "log_residual": 0.01, "coef_sd_wave": 0.0, "coef_sd_prefill": 0.0, "coef_sd_decode": 0.0}]
    u.CoefficientFitter = lambda *a, **k: type("F", (), {"fit": lambda self, obs: Fitter()})()
    u.cross_validated_rows = lambda *a, **k: list(own)
    try:
        class Obs:
            model_name, precision = "seen-72b", type("P", (), {"quant_kernel": "gptq_exllama"})()
            engine = type("E", (), {"engine_generation": "v0"})()
        borrowed = {"model_transfer": {"offline/graphs/1gpu": {"tokens_per_second": [0.1, -0.2]}},
                    "unseen_model": {"offline/graphs/1gpu": {"tokens_per_second": [0.05]}}}
        section, _ = build_section(observations=[Obs()], cluster=None, coefficients=None, prior=None,
                                   borrowed_model_transfer=("h200-sxm", borrowed))
    finally:
        u.CoefficientFitter, u.cross_validated_rows = original
    assert section["model_transfer_source"] == "h200-sxm"
    assert section["kernel_paths"] == ["gptq_exllama"]
    pool = section["residuals"]["model_transfer"]["offline/graphs/1gpu"]["tokens_per_second"]
    assert len(pool) == 20 and min(pool) < -0.15 and max(pool) > 0.09  # 0.01 + each quantile of [-0.2, 0.05, 0.1]


def test_the_borrowed_pool_adds_a_model_error_to_each_run_error_and_negates_it_for_times():
    from calibrate.report.uncertainty import borrowed_transfer_pool

    own = {"online/graphs/multigpu": {"output_tokens_per_second": [0.1, -0.1], "ttft_s_mean": [0.0]}}
    borrowed = {"model_transfer": {"offline/graphs/1gpu": {"tokens_per_second": [0.2] * 5}}}
    pool = borrowed_transfer_pool(own, borrowed, points=2)
    assert pool["online/graphs/multigpu"]["output_tokens_per_second"] == [0.3, 0.3, 0.1, 0.1]
    assert pool["online/graphs/multigpu"]["ttft_s_mean"] == [-0.2, -0.2]
    assert borrowed_transfer_pool(own, {}) == {}


def test_model_transfer_from_a_profile_without_one_is_one_line(tmp_path):
    import subprocess
    import sys

    bare = tmp_path / "bare.yaml"
    bare.write_text("name: bare\ncoefficients: {}\nuncertainty:\n  residuals:\n    seen_model: {}\n")
    (tmp_path / "copy.yaml").write_text((ROOT / "perfmodel/profiles/v100-sxm2-32gb.yaml").read_text())
    out = subprocess.run([sys.executable, "-m", "perfmodel.cli", "calibrate", "uncertainty",
                          str(ROOT / "data/taiwania/results.jsonl"), "--hardware", "taiwania2",
                          "--profile", str(tmp_path / "copy.yaml"), "--model-transfer-from", str(bare)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    assert "no measured model transfer" in out.stderr and out.stderr.count("\n") == 1
