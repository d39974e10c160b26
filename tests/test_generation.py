"""The sampling loop: stop strings never leak into streamed text, and the settings are checked."""

from __future__ import annotations

import pytest
import torch

from layerroute_agent.generation import GenerationConfig, _held_back, _IncrementalDetokenizer


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


@pytest.mark.parametrize("source", ["text", "random"])
def test_incremental_detokenizer_matches_full_decode(tiny_tokenizer, source: str) -> None:
    if source == "text":
        # Multi-byte characters split over several byte-level tokens exercise the pending U+FFFD path.
        ids = tiny_tokenizer("Météo à Lyon: 21 °C, 東京 🎉 <tool_call>{\"a\": 1}</tool_call>")["input_ids"]
    else:
        ids = torch.randint(0, len(tiny_tokenizer), (200,), generator=torch.Generator().manual_seed(0)).tolist()
    detokenizer = _IncrementalDetokenizer(tiny_tokenizer)
    for count, token in enumerate(ids, start=1):
        expected = tiny_tokenizer.decode(ids[:count], skip_special_tokens=False)
        assert detokenizer.add(token) == expected, f"after {count} tokens"


def test_end_after_cuts_reply(tiny_model_dir) -> None:
    from layerroute_agent.generation import GenerationConfig, GenerationResult, stream_tokens
    from layerroute_agent.runtime import get_runtime

    runtime = get_runtime(str(tiny_model_dir), None, "float32", "cpu")
    prompt = runtime.tokenizer("hello", add_special_tokens=False)["input_ids"]
    checked: list[str] = []

    def end_after(text: str) -> int | None:
        checked.append(text)
        return 0 if text else None

    config = GenerationConfig(max_new_tokens=40, end_after=end_after)
    result = list(stream_tokens(runtime.routed, runtime.tokenizer, prompt, config))[-1]
    assert isinstance(result, GenerationResult)
    assert checked and checked[-1]
    assert result.text == ""
    assert result.finish_reason == "stop"
    assert len(result.token_ids) == len(checked)
