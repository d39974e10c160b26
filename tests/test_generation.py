"""The sampling loop: stop strings never leak into streamed text, and the settings are checked."""

from __future__ import annotations

import pytest

from layerroute_agent.generation import GenerationConfig, _held_back


def test_held_back_covers_partial_stop_strings() -> None:
    assert _held_back("1,2,3,4,5", ("5,6",)) == 1
    assert _held_back("1,2,3,4,5,", ("5,6",)) == 2
    assert _held_back("abc", ("xyz",)) == 0
    assert _held_back("ab", ("b", "abc")) == 2


def test_stop_string_prefix_is_not_streamed(tiny_model_dir) -> None:
    from layerroute_agent import LayerRouteChat

    llm = LayerRouteChat(model=str(tiny_model_dir), adapter=None, max_tokens=16)
    full = llm.invoke("hello").content
    assert len(full) > 4, "the tiny model must produce some text for this test"
    stop = full[2:5]
    streamed = "".join(chunk.content for chunk in llm.stream("hello", stop=[stop]))
    invoked = llm.invoke("hello", stop=[stop]).content
    assert streamed == invoked == full[: full.index(stop)]


def test_generation_config_lists_every_problem() -> None:
    with pytest.raises(ValueError, match=r"max_new_tokens must be >= 1, got 0; temperature must be >= 0, got -1"):
        GenerationConfig(max_new_tokens=0, temperature=-1)
