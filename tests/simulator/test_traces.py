"""Trace readers: the project's format, the Azure LLM inference and BurstGPT formats (synthetic fixtures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.traces import FORMATS, read_trace
from simulator.workload import load_trace

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "traces"
AZURE, BURSTGPT = FIXTURES / "azure_synthetic.csv", FIXTURES / "burstgpt_synthetic.csv"


def test_azure_columns_and_seven_digit_timestamps():
    arrival, prompt, output = read_trace(AZURE)
    assert prompt[:3].tolist() == [512, 128, 2048] and output[:3].tolist() == [64, 32, 16]
    assert arrival[0] == 0.0 and arrival[2] == pytest.approx(0.7512345, abs=1e-9)
    assert arrival[6] - arrival[5] == pytest.approx(1e-7, abs=1e-12)  # 100 ns apart: kept
    assert len(arrival) == 10


def test_burstgpt_columns_and_failed_requests_left_out():
    arrival, prompt, output = read_trace(BURSTGPT)
    assert len(arrival) == 8  # two rows with 0 response tokens are failures
    assert arrival.tolist()[:3] == [0.0, 0.0, 2.0]
    assert prompt.tolist()[:3] == [400, 120, 64] and output.tolist()[:3] == [50, 300, 16]


def test_the_format_is_told_by_the_header_and_can_be_named():
    auto = read_trace(BURSTGPT)
    named = read_trace(BURSTGPT, "burstgpt")
    assert all(np.array_equal(a, b) for a, b in zip(auto, named))
    with pytest.raises(ValueError, match="no column among TIMESTAMP"):
        read_trace(BURSTGPT, "azure")
    assert "perfmodel" in FORMATS


def test_a_window_keeps_its_requests_and_counts_time_from_its_start():
    arrival, prompt, _ = read_trace(BURSTGPT, start_s=2.0, duration_s=5.0)  # 12 s .. 17 s of the file
    assert arrival.tolist() == [0.0, 2.0, 3.0]  # 12, 14, 15; 17 is the window's end (excluded), 11 failed
    assert prompt.tolist() == [64, 2000, 32]
    requests = load_trace(AZURE, start_s=1.0, duration_s=1.0)
    assert [r.num_prompt_tokens for r in requests] == [300, 64]


@pytest.mark.parametrize("text, message", [
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:00,10,5\nyesterday,10,5\n", "row 2: TIMESTAMP"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:00,10.5,5\n", "row 1: a length must be a whole"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:00,10,0\n", "row 1: a request needs at least 1 output"),
    ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\nsoon,ChatGPT,10,5,15,API log\n",
     "row 1: arrival time must be a finite number"),
    ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n1,ChatGPT,1e300,5,15,API log\n",
     "row 1: a length must be a whole number"),
])
def test_bad_rows_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_trace(path)
    assert "\n" not in str(info.value)


def test_window_arguments_are_checked():
    with pytest.raises(ValueError, match="window"):
        read_trace(AZURE, start_s=-1.0)
    with pytest.raises(ValueError, match="window"):
        read_trace(AZURE, duration_s=0.0)
