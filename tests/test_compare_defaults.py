"""compare's default workload has variable output lengths, so its default illustrates continuous batching
(issue 12, item 7); its plot's x axes carry few enough ticks not to collide."""
import json

from perfmodel.cli import main

H200 = ["compare", "--hardware", "hgx-h200", "--model", "llama-3.1-8b", "--num-prompts", "200"]


def test_default_output_lengths_vary_and_show_a_gain(capsys):
    assert main([*H200, "--plot", "", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["workload"]["output_dist"] == "lognormal" and doc["workload"]["output_sigma"] == 0.8
    assert doc["throughput_ratio"] > 1.5 and doc["static"]["padding_waste_fraction"] > 0.2


def test_explicit_fixed_lengths_still_mean_fixed(capsys):
    assert main([*H200, "--output-dist", "fixed", "--plot", "", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["workload"]["output_dist"] == "fixed"


def test_plot_x_axes_have_at_most_seven_ticks(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    seen = []
    monkeypatch.setattr(plt, "close", lambda fig: seen.append(fig))
    assert main([*H200, "--plot", str(tmp_path / "c.png"), "--format", "json"]) == 0
    [fig] = seen
    for ax in fig.axes[1:]:
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        assert 2 <= len([t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]) <= 7
        boxes = [t.get_window_extent() for t in labels]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
