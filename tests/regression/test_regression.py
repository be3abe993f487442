"""Every regression case prints exactly what it printed when its expected output was written."""

from __future__ import annotations

import pytest

from tests.regression.harness import EXPECTED, load_cases, run_case

CASES = load_cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_is_unchanged(name: str) -> None:
    expected = (EXPECTED / f"{name}.out").read_text()
    assert run_case(CASES[name]) == expected
