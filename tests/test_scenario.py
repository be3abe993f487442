"""One scenario for every path: the commands agree because they build the same Scenario."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from perfmodel.cli import main
from perfmodel.scenario import Scenario


def _run_json(argv: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return json.loads(out.getvalue())


def test_plan_reports_the_engine_it_resolved_for_vllm_0_7():
    # 100 output tokens: with 600 the last of 50 requests drain longer than they arrive and no layout delivers 95%
    args = ["--request-rate", "1", "--ttft-p99", "5", "--tpot-p99", "0.2", "--gpus-max", "16", "--workers", "1",
            "--num-prompts", "50", "--output-len", "100"]
    plan = _run_json(["plan", *args, "--vllm-version", "0.7", "--format", "json"])
    assert plan["engine"]["gpu_memory_utilization"] == 0.90
    newer = _run_json(["plan", *args, "--vllm-version", "0.26", "--format", "json"])
    assert newer["engine"]["gpu_memory_utilization"] == 0.92 and newer["engine"]["engine_generation"] == "v1"
    default = _run_json(["plan", *args, "--format", "json"])  # taiwania2's YAML says it runs vLLM 0.7.0
    assert default["engine"]["vllm_version"] == "0.7.0" and default["engine"]["engine_generation"] == "v0"
    predict = _run_json(["predict", "--vllm-version", "0.7", "--gpus", "16", "--simulate-top", "0", "--format", "json"])
    assert predict["engine"]["gpu_memory_utilization"] == plan["engine"]["gpu_memory_utilization"]


@pytest.mark.parametrize("rate", [1.0, 4.0])
def test_calibrate_predict_of_an_online_run_equals_simulate(tmp_path, rate):
    sweep = tmp_path / "online.yaml"
    sweep.write_text(
        "name: online\ndefaults: {model: llama-3.1-8b, mode: online, input_len: 512, output_len: 128,\n"
        f"  num_prompts: 60, request_rate: {rate}}}\ngroups: [{{name: one}}]\n")
    out = tmp_path / "pred.jsonl"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["calibrate", "predict", str(sweep), "--hardware", "h200-sxm", "--out", str(out)]) == 0
    predicted = json.loads(out.read_text().splitlines()[0])
    simulated = _run_json(["simulate", "--hardware", "h200-sxm", "--model", "llama-3.1-8b", "--input-len", "512",
                           "--output-len", "128", "--num-prompts", "60", "--request-rate", str(rate),
                           "--format", "json"])["metrics"]
    assert predicted["requests_per_second"] == pytest.approx(simulated["requests_per_second"], rel=1e-9)
    assert predicted["ttft_s_mean"] == pytest.approx(simulated["ttft_s_mean"], rel=1e-9)
    assert predicted["requests_per_second"] < 1.5 * rate  # rate-bound, not the offline maximum


def test_kernels_the_profile_never_measured_are_named():
    """Mixtral on Taiwania 2: the V100 profile saw no MoE run; on the H200 the fused MoE kernel is fitted."""
    v100 = Scenario.build(model="mixtral-8x7b", hardware="taiwania2")
    assert any("fused_moe_efficiency = 1 is its anchor" in n for n in v100.unmeasured_kernel_notes)
    assert Scenario.build(model="mixtral-8x7b", hardware="hgx-h200").unmeasured_kernel_notes == ()
    assert Scenario.build(model="qwen2.5-72b", hardware="taiwania2", quantization="gptq").unmeasured_kernel_notes == ()
    # the act-order 405B export: TP splits its row-parallel layers' input onto the alt path, which no run fitted
    (alt,) = Scenario.build(model="llama-3.1-405b-gptq-int4", hardware="taiwania2").unmeasured_kernel_notes
    assert ("act-order (alt) kernel: gptq_alt_memory_efficiency = 0.45 is its anchor (kernel microbenchmark), "
            "not fitted on a run") in alt
    assert Scenario.build(model="llama-3.1-8b", hardware="hgx-h200").unmeasured_kernel_notes == ()
    # -q awq runs ops.awq_gemm before vLLM 0.24.0 (no coefficient of its own), AutoAWQ's Machete from 0.24.0 (fitted)
    (awq,) = Scenario.build(model="llama-3.1-8b", hardware="hgx-h200", quantization="awq",
                            vllm_version="0.23.0").unmeasured_kernel_notes
    assert "no coefficient of its own" in awq
    assert Scenario.build(model="llama-3.1-8b", hardware="hgx-h200", quantization="awq").unmeasured_kernel_notes == ()


def test_a_gpu_without_a_profile_borrows_the_one_of_the_nearest_architecture():
    """By the catalog's compute capability (same major first, else the newest calibrated), not by GPU names."""
    from perfmodel.cost.coefficients import _nearest_calibrated_gpu, default_profile

    assert {g: _nearest_calibrated_gpu(g) for g in ("h100-sxm", "a100-sxm4-80gb", "cpu", "my-own.yaml")} == {
        "h100-sxm": "h200-sxm", "a100-sxm4-80gb": "h200-sxm", "cpu": "h200-sxm", "my-own.yaml": "h200-sxm"}
    assert default_profile("v100-sxm2-32gb").gpu == "v100-sxm2-32gb"  # its own


def test_a_release_the_profile_never_ran_is_named_in_a_note():
    fitted = Scenario.build(model="llama-3.1-8b", hardware="h200-sxm")
    assert fitted.profile.vllm_versions == ("0.26.0",) and fitted.release_notes == ()
    assert Scenario.build(model="llama-3.1-8b", hardware="h200-sxm", vllm_version="0.26").release_notes == ()
    other = Scenario.build(model="llama-3.1-8b", hardware="h200-sxm", vllm_version="0.19.1")
    (note,) = other.release_notes
    assert "fitted on runs of vLLM 0.26.0, not 0.19.1" in note and "interval does not include" in note
    assert Scenario.build(model="qwen2.5-72b", quantization="gptq", hardware="taiwania2").release_notes == ()


def test_a_profile_with_odd_release_records_notes_only_the_releases_it_names(tmp_path):
    import yaml

    from perfmodel.cost.coefficients import load_profile

    from pathlib import Path

    shipped = yaml.safe_load((Path(__file__).parents[1] / "perfmodel/profiles/h200-sxm.yaml").read_text())
    for odd, recorded, noted in ((["?"], ("?",), False), ("0.26.0", (), False), ([{"v": 1}], ("{'v': 1}",), False),
                                 (None, (), False), (["0.26.0", "?"], ("0.26.0", "?"), True)):
        shipped["data"]["vllm_versions"] = odd
        path = tmp_path / "odd.yaml"
        path.write_text(yaml.safe_dump(shipped))
        assert load_profile(path).vllm_versions == recorded
        scenario = Scenario.build(model="llama-3.1-8b", hardware="h200-sxm", calibration=str(path),
                                  vllm_version="0.19.1")
        assert bool(scenario.release_notes) is noted  # a run without its release ("?") does not hide the rest


@pytest.mark.parametrize("argv", [
    ["predict", "--hardware", "h200-sxm", "-m", "llama-3.1-8b", "--gpus", "1", "--vllm-version", "0.19.1"],
    ["simulate", "--hardware", "h200-sxm", "-m", "llama-3.1-8b", "--num-prompts", "20", "--vllm-version", "0.19.1"],
    ["compare", "--hardware", "h200-sxm", "-m", "llama-3.1-8b", "--num-prompts", "20", "--vllm-version", "0.19.1"],
    ["pareto", "--hardware", "h200-sxm", "-m", "llama-3.1-8b", "--gpus", "1", "--max-num-seqs-list", "1,4",
     "--vllm-version", "0.19.1"],
    ["plan", "--hardware", "h200-sxm", "-m", "llama-3.1-8b", "--request-rate", "1", "--gpus-max", "1",
     "--num-prompts", "30", "--vllm-version", "0.19.1"],
])
def test_the_commands_print_the_release_note_in_text_and_json(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # compare and pareto may draw a plot beside the working directory
    for fmt in ("table", "json"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main([*argv, "--format", fmt]) == 0
        text = out.getvalue()
        notes = json.loads(text)["notes"] if fmt == "json" else [
            line[len("note: "):] for line in text.splitlines() if line.startswith("note: ")]
        assert any("fitted on runs of vLLM 0.26.0, not 0.19.1" in n for n in notes), (argv[0], fmt)
