"""Every regression case prints what it printed when its expected output was written: the same text, and the same
numbers up to the last bits of a float (harness.FLOAT_RTOL)."""

from __future__ import annotations

import pytest

from tests.regression.harness import EXPECTED, first_difference, load_cases, run_case

CASES = load_cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_is_unchanged(name: str) -> None:
    expected = (EXPECTED / f"{name}.out").read_text()
    difference = first_difference(run_case(CASES[name]), expected)
    assert difference is None, f"{name}: {difference}"


def test_first_difference_tolerates_only_the_last_bits():
    assert first_difference('{"a": 2482.6375639340295, "n": 3}', '{"a": 2482.63756393403, "n": 3}') is None
    assert first_difference('{"a": 2482.63756393, "n": 3}', '{"a": 2482.63756394, "n": 3}') is not None
    assert first_difference('{"a": 1.5, "n": 3}', '{"a": 1.5, "n": 4}') is not None  # integers exactly
    assert first_difference('{"a": 1.5}', '{"b": 1.5}') is not None
    assert first_difference("x,1.5,2.5\n", "x,1.5\n") is not None
