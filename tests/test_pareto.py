"""perfmodel.analysis.pareto and `perfmodel pareto` (issue 12, item 4)."""

import csv
import io
import json

from perfmodel.cli import main
from perfmodel.analysis.pareto import ParetoPoint, closed_loop_point, mark_frontier, pareto_points
from perfmodel.layout import Layout
from perfmodel.scenario import Scenario

SMALL = ["--hardware", "hgx-h200", "--model", "llama-3.1-8b", "--gpus", "2", "--max-num-seqs-list", "1,8,64",
         "--input-len", "200", "--output-len", "50", "--max-model-len", "2048"]


def point(per_user: float, per_gpu: float, seqs: int = 1) -> ParetoPoint:
    return ParetoPoint(tp=1, pp=1, dp=1, max_num_seqs=seqs, concurrency=seqs, output_tokens_per_second=per_gpu,
                       output_tokens_per_second_per_gpu=per_gpu, output_tokens_per_second_per_user=per_user,
                       ttft_s_median=0.1, tpot_s_median=1 / per_user)


def test_frontier_keeps_exactly_the_undominated_points():
    points = mark_frontier([point(50, 5), point(40, 20), point(45, 4), point(10, 60), point(10, 30), point(5, 59)])
    front = {(p.output_tokens_per_second_per_user, p.output_tokens_per_second_per_gpu) for p in points if p.on_frontier}
    assert front == {(50, 5), (40, 20), (10, 60)}
    for p in points:  # nobody on the frontier is dominated; everyone off it is
        dominated = any(q.output_tokens_per_second_per_user >= p.output_tokens_per_second_per_user and
                        q.output_tokens_per_second_per_gpu >= p.output_tokens_per_second_per_gpu and q != p
                        for q in points)
        assert dominated != p.on_frontier


def test_larger_batches_trade_user_speed_for_gpu_throughput():
    scenario = Scenario.build(model="llama-3.1-8b", hardware="hgx-h200", entry_point="serve", max_model_len=2048)
    one, many = (closed_loop_point(scenario, Layout(tp=1), s, input_len=200, output_len=50) for s in (1, 64))
    assert many.output_tokens_per_second_per_gpu > 5 * one.output_tokens_per_second_per_gpu
    assert one.output_tokens_per_second_per_user > many.output_tokens_per_second_per_user
    two = closed_loop_point(scenario, Layout(tp=1, dp=2), 64, input_len=200, output_len=50)
    assert two.output_tokens_per_second == 2 * many.output_tokens_per_second and two.concurrency == 128
    assert abs(one.output_tokens_per_second_per_user - 1 / one.tpot_s_median) < 1e-9


def test_points_cover_layouts_times_sizes():
    scenario = Scenario.build(model="llama-3.1-8b", hardware="hgx-h200", entry_point="serve", max_model_len=2048)
    points = pareto_points(scenario, 2, max_num_seqs=(1, 8), input_len=200, output_len=50)
    assert {(str(p.layout), p.max_num_seqs) for p in points} == {
        (f"TP{tp} PP{pp} DP{dp}", s) for tp, pp, dp in ((1, 1, 2), (2, 1, 1), (1, 2, 1)) for s in (1, 8)}
    assert any(p.on_frontier for p in points)


def test_cli_formats_and_plot(tmp_path, capsys):
    assert main(["pareto", *SMALL, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["points"]) == 9 and sum(p["on_frontier"] for p in doc["points"]) >= 2
    assert main(["pareto", *SMALL, "--format", "csv", "--frontier-only"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(r["on_frontier"] == "True" for r in rows)
    png = tmp_path / "p.png"
    assert main(["pareto", *SMALL, "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "out tok/s/user" in out and f"wrote {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_refuses_bad_sizes(capsys):
    assert main(["pareto", *SMALL[:-6], "--max-num-seqs-list", "0,4"]) == 2
    assert "expected an integer from 1" in capsys.readouterr().err


def test_pareto_refuses_what_it_would_trim_or_never_finish(capsys):
    """A prompt past --max-model-len was trimmed and reported inf; 16M tokens hung; --seed -1 was a traceback."""
    for argv, says in ((["--input-len", "16777216"], "exceed --max-model-len"), (["--seed", "-1"], "--seed"),
                       (["--max-model-len", "100000", "--output-len", "90000"], "engine steps to simulate")):
        assert main(["pareto", *SMALL[:-6], *argv]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.splitlines()) == 1, err



def test_a_point_re_resolves_the_engine_so_v0_graph_sizes_follow_max_num_seqs():
    from perfmodel.scenario import Scenario

    scenario = Scenario.build(model="llama-3.1-8b", hardware="taiwania2", vllm_version="0.7.0")
    assert scenario.engine.cuda_graph_batch_sizes[-1] == 256
    sized = scenario.with_engine(max_num_seqs=20)
    assert sized.engine.max_num_seqs == 20 and sized.engine.cuda_graph_batch_sizes[-1] == 24  # vLLM 0.7.0 sizes
    assert sized.options.max_num_seqs == 20 and scenario.options.max_num_seqs is None
