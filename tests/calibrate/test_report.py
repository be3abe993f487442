"""The accuracy report of online-only runs (the Taiwania 2 log) names output throughput where offline runs
have tokens/s: its per-fold, weakest-run and per-run tables are not empty."""
import pandas as pd

from calibrate.report.accuracy import headline_metric, markdown_report, parity_plot


def _frame(fold: str, rows) -> pd.DataFrame:
    out = []
    for run_id, layout, metric, measured, predicted in rows:
        ape = abs(predicted - measured) / measured
        out.append(dict(run_id=run_id, model="qwen", layout=layout, mode="online", eager=False, max_num_seqs=4,
                        input_len=498.0, output_len=128.0, num_prompts=8, fold=fold, metric=metric,
                        measured=measured, predicted=predicted, predicted_measured_kv=predicted, ape=ape,
                        ape_measured_kv=ape))
    return pd.DataFrame(out)


RUNS = [("a", "TP8xPP1", "output_tokens_per_second", 47.0, 45.0), ("a", "TP8xPP1", "ttft_s_mean", 0.25, 0.26),
        ("b", "TP8xPP2", "output_tokens_per_second", 42.0, 50.0), ("b", "TP8xPP2", "ttft_s_mean", 0.26, 0.25)]


def test_online_only_report_uses_output_throughput(tmp_path):
    frames = {"in-sample fit": _frame("in-sample", RUNS),
              "leave-one-layout-out": pd.concat([_frame("leave-layout-out:TP8xPP1", RUNS[:2]),
                                                 _frame("leave-layout-out:TP8xPP2", RUNS[2:])])}
    assert headline_metric(frames) == "output_tokens_per_second"
    text = markdown_report(title="t", header="h", frames=frames, plot=None)
    assert "| held out | runs | median APE (output throughput (tok/s)) | max APE |" in text
    assert "| TP8xPP2 | 1 | 19.0% | 19.0% |" in text
    assert "## Weakest cross-validated predictions of output throughput" in text
    assert "| qwen | TP8xPP2 | no | 4 | 498 | 128 | 42 | 50 | 19.0% | leave-layout-out:TP8xPP2 |" in text
    assert "| qwen | TP8xPP1 | online | no | 4 | 498 | 128 | output_tokens_per_second | 47 | 45 | 4.3% |" in text
    png = parity_plot(frames, tmp_path / "parity.png", title="Taiwania 2")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["parity.png"]  # written atomically: no temporary left
