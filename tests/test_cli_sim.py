"""``perfmodel simulate``, ``compare`` and ``plan`` from the command line."""

import csv
import json

import pytest

from perfmodel.cli import main

SMALL = ("--model", "llama-3.1-8b", "--hardware", "h200-sxm")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_json_has_vllm_benchmark_keys(capsys):
    code, out, _ = run(capsys, "simulate", *SMALL, "--input-len", "300", "--output-len", "100",
                       "--output-dist", "lognormal", "--num-prompts", "200", "--request-rate", "20", "--format", "json")
    data = json.loads(out)
    assert code == 0
    assert {"model", "hardware", "layout", "workload", "engine", "metrics", "vllm_benchmark"} <= set(data)
    metrics = data["metrics"]
    for key in ("requests_per_second", "tokens_per_second", "output_tokens_per_second", "ttft_s_mean",
                "ttft_s_median", "ttft_s_p90", "ttft_s_p99", "tpot_s_p99", "itl_s_p99", "e2e_s_p99",
                "mean_batch_size", "num_preemptions"):
        assert key in metrics
    assert metrics["num_requests"] == 200
    assert {"mean_ttft_ms", "p99_tpot_ms", "request_throughput", "output_throughput"} <= set(data["vllm_benchmark"])
    assert data["engine"]["max_num_batched_tokens"] == 8192  # online: vllm serve's default


def test_simulate_table_and_timeline_files(capsys, tmp_path):
    path = tmp_path / "run.csv"
    code, out, _ = run(capsys, "simulate", *SMALL, "-tp", "2", "-dp", "2", "--num-prompts", "50",
                       "--output-len", "50", "--timeline", str(path))
    assert code == 0 and "TP2 PP1 DP2" in out
    assert "TTFT" in out and "p99" in out and "output tokens/s" in out
    steps = list(csv.DictReader(path.open()))
    requests = list(csv.DictReader((tmp_path / "run-requests.csv").open()))
    assert len(requests) == 50 and {"ttft_s", "tpot_s", "e2e_s", "replica"} <= set(requests[0])
    assert steps and {"start_s", "end_s", "num_seqs", "kv_usage", "replica"} <= set(steps[0])


def test_simulate_closed_loop_is_deterministic(capsys):
    argv = ("simulate", *SMALL, "--num-prompts", "100", "--max-concurrency", "8", "--input-dist", "uniform",
            "--output-dist", "normal", "--seed", "7", "--format", "csv")
    first, second = run(capsys, *argv), run(capsys, *argv)
    assert first[0] == 0 and first[1] == second[1]
    row = next(csv.DictReader(first[1].splitlines()))
    assert float(row["mean_batch_size"]) <= 8


def test_compare_lognormal_outputs_favour_continuous_batching(capsys, tmp_path):
    plot = tmp_path / "cmp.png"
    code, out, _ = run(capsys, "compare", *SMALL, "--input-len", "200", "--output-len", "400", "--output-dist",
                       "lognormal", "--output-sigma", "0.8", "--num-prompts", "300", "--plot", str(plot),
                       "--format", "json")
    data = json.loads(out)
    assert code == 0
    assert data["throughput_ratio"] > 1.5
    assert data["continuous"]["tokens_per_second"] > data["static"]["tokens_per_second"]
    assert data["static"]["padding_waste_fraction"] > 0.3 and data["continuous"]["padding_waste_fraction"] == 0
    # matplotlib is in the test extras: the plot must exist (no skip)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_equal_lengths_are_close(capsys):
    code, out, _ = run(capsys, "compare", *SMALL, "--input-len", "200", "--output-len", "300", "--num-prompts",
                       "256", "--max-num-seqs", "64", "--output-dist", "fixed", "--plot", "")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("continuous batching:"))
    ratio = float(line.split(":")[1].split("x")[0])
    assert 0.9 <= ratio <= 1.1
    assert "padding waste" in out and "preemptions" in out and "TPOT p99" in out


def test_compare_without_matplotlib_says_so_in_one_line(capsys, monkeypatch, tmp_path):
    import perfmodel.analysis.plots

    monkeypatch.setattr(perfmodel.analysis.plots, "have_matplotlib", lambda: False)
    code, out, _ = run(capsys, "compare", *SMALL, "--num-prompts", "20", "--output-len", "20",
                       "--plot", str(tmp_path / "x.png"))
    assert code == 0 and sum("matplotlib is not installed" in line for line in out.splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_plan_finds_a_layout(capsys):
    code, out, err = run(capsys, "plan", *SMALL, "--request-rate", "2", "--ttft-p99", "2", "--tpot-p99", "0.1",
                         "--output-len", "200", "--workers", "1")
    assert code == 0 and "answer: 1 GPUs: TP1 PP1 DP1" in out and "GPU-hours per million output tokens" in out


def test_plan_says_when_nothing_fits(capsys):
    code, out, _ = run(capsys, "plan", "--model", "llama-3.1-70b", "--hardware", "taiwania2", "--request-rate",
                       "500", "--gpus-max", "8", "--workers", "1")
    assert code == 1 and "no layout of up to 8 GPUs" in out  # exit 1: nothing sustains the load


def test_plan_json(capsys):
    code, out, _ = run(capsys, "plan", *SMALL, "--request-rate", "1", "--num-prompts", "100", "--workers", "1",
                       "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["gpus"] == 1 and data["best"]["status"] == "accepted" and data["trials"]


def test_predict_simulate_top(capsys):
    code, out, _ = run(capsys, "predict", *SMALL, "--gpus", "8", "--simulate-top", "2", "--format", "json")
    methods = [layout["method"] for layout in json.loads(out)["layouts"]]
    assert code == 0 and methods.count("simulated") == 2


@pytest.mark.parametrize("argv, message", [
    (["simulate", "--kv-offload", "-tp", "8"], "pipeline-parallel-size >= 2"),
    (["simulate", *SMALL, "--request-rate", "0"], "--request-rate"),
    (["simulate", *SMALL, "--max-concurrency", "0"], "--max-concurrency"),
    (["simulate", *SMALL, "--output-dist", "uniform", "--output-sigma", "2"], "--output-sigma"),
    (["simulate", *SMALL, "--trace", "/nonexistent.csv"], "no such file"),
    (["simulate", "--model", "llama-3.1-70b", "--hardware", "taiwania2", "-tp", "1"], "does not fit"),
    (["simulate", "--model", "llama-3.1-70b", "--hardware", "taiwania2", "-tp", "8", "-dp", "4"], "at most 16"),
    (["compare", *SMALL, "-tp", "3"], "valid values"),
    (["plan", *SMALL, "--request-rate", "-1"], "--request-rate"),
    (["plan", *SMALL, "--request-rate", "1", "--tpot-p99", "0"], "--tpot-p99"),
    (["simulate", "--kv-offload", "--kv-offload-host-fraction", "2", "-pp", "2"], "host-fraction"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2, out
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


TRACES = __import__("pathlib").Path(__file__).resolve().parent / "fixtures" / "traces"


@pytest.mark.parametrize("name, num_requests", [("azure_synthetic.csv", 10), ("burstgpt_synthetic.csv", 8)])
def test_simulate_reads_the_public_trace_formats(capsys, name, num_requests):
    code, out, _ = run(capsys, "simulate", *SMALL, "--trace", str(TRACES / name), "--format", "json")
    assert code == 0 and json.loads(out)["metrics"]["num_requests"] == num_requests


def test_simulate_trace_window(capsys):
    code, out, _ = run(capsys, "simulate", *SMALL, "--trace", str(TRACES / "burstgpt_synthetic.csv"),
                       "--trace-start", "2", "--trace-duration", "5")
    assert code == 0 and "(3 requests, 2 s to 7 s)" in out
    code, _, err = run(capsys, "simulate", *SMALL, "--trace", str(TRACES / "burstgpt_synthetic.csv"),
                       "--trace-start", "100")
    assert code == 2 and "no requests from 100 s" in err and "\n" not in err.strip()


def test_trace_format_choices_are_the_simulators():
    from perfmodel.cli.options import TRACE_FORMATS
    from simulator.traces import FORMATS

    assert TRACE_FORMATS == FORMATS
