"""The online serving model on the perfmodel side (docs/online-model.md): which engines schedule asynchronously."""

from __future__ import annotations

import pytest

from perfmodel.scenario import Scenario


@pytest.mark.parametrize("options, expected", [
    (dict(), True),  # vLLM 0.26 V1: async scheduling on by default
    (dict(vllm_version="0.7.0"), False),  # V0 engine
    (dict(vllm_version="0.10.0"), False),  # a V1 release whose default was not read
    (dict(batching="static"), False),  # static batching has no waiting step
])
def test_async_scheduling_follows_the_release(options, expected):
    scenario = Scenario.build(model="llama-3.1-8b", hardware="h200-sxm", **options)
    assert scenario.engine_config(1000).async_scheduling is expected
