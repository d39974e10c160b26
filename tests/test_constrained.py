"""Forced JSON replies: where an object ends, the tool-name mask, and both inside the decoding loop."""

from __future__ import annotations

import pytest
import torch

from layerroute_agent.constrained import JsonReplyConstraint, json_value_end, token_index
from layerroute_agent.generation import GenerationConfig, GenerationResult, _constrained, stream_tokens
from layerroute_agent.routing import RoutedCausalLM

from conftest import tiny_qwen2


@pytest.mark.parametrize(("text", "end"), [
    ('{"a": 1}', 8),
    ('  {"a": {"b": [1, 2]}} tail', 22),
    ('{"a": "}"}', 10),
    ('{"a": "say \\"}\\" now"}x', 22),
    ("[1, [2]], 3", 8),
    ('{"a": {"b": 1}', None),
    ('{"a": "}', None),
    ("", None),
    ("Sure! {}", None),
])
def test_json_value_end(text: str, end: int | None) -> None:
    assert json_value_end(text) == end


def test_complete_length_counts_after_prefix() -> None:
    constraint = JsonReplyConstraint('{"name": "f", "arguments": {')
    assert constraint.complete_length('"x": 1}') is None
    assert constraint.complete_length('"x": "}}"}}, more') == len('"x": "}}"}}')
    assert constraint.allowed_token_ids('"x": 1') is None


def test_bad_prefix_and_missing_index_rejected() -> None:
    with pytest.raises(ValueError, match="must open a JSON object"):
        JsonReplyConstraint("Sure")
    with pytest.raises(ValueError, match="pass index=token_index"):
        JsonReplyConstraint('{"name": "', ["f"])


def test_allowed_ids_spell_only_the_choices(tiny_tokenizer) -> None:
    choices = ['get_weather", "arguments": {', 'convert_currency", "arguments": {']
    constraint = JsonReplyConstraint('{"name": "', choices, token_index(tiny_tokenizer))
    for text in ("", "get", "conv", 'get_weather", "arg'):
        allowed = constraint.allowed_token_ids(text)
        assert allowed, text
        for token_id in allowed:
            extended = text + tiny_tokenizer.decode([token_id])
            assert any(choice.startswith(extended) for choice in choices), (text, extended)
    assert constraint.allowed_token_ids(choices[0]) is None
    assert constraint.allowed_token_ids(choices[0] + '"city"') is None


def test_constrained_masks_end_and_others() -> None:
    logits = torch.tensor([[5.0, 1.0, 2.0, 3.0]])
    end_index = torch.tensor([0])

    class OnlyTwoAndThree:
        def allowed_token_ids(self, text: str) -> list[int]:
            return [2, 3]

        def complete_length(self, text: str) -> None:
            return None

    masked = _constrained(logits, OnlyTwoAndThree(), "", end_index)
    assert masked[0, 0] == float("-inf")
    assert masked[0, 1] == float("-inf")
    assert masked[0, 2:].tolist() == [2.0, 3.0]
    unrestricted = _constrained(logits, JsonReplyConstraint("{"), "", end_index)
    assert unrestricted[0, 0] == float("-inf")
    assert unrestricted[0, 1:].tolist() == [1.0, 2.0, 3.0]


def _generate(tokenizer, config: GenerationConfig) -> tuple[str, GenerationResult]:
    routed = RoutedCausalLM(tiny_qwen2(seed=3))
    prompt_ids = tokenizer("Weather in Lyon?")["input_ids"]
    pieces, result = [], None
    for item in stream_tokens(routed, tokenizer, prompt_ids, config):
        if isinstance(item, GenerationResult):
            result = item
        else:
            pieces.append(item)
    assert result is not None
    return "".join(pieces), result


def test_random_model_picks_an_allowed_name(tiny_tokenizer) -> None:
    choices = ['get_weather", "arguments": {', 'convert_currency", "arguments": {']
    constraint = JsonReplyConstraint('{"name": "', choices, token_index(tiny_tokenizer))
    text, result = _generate(tiny_tokenizer, GenerationConfig(max_new_tokens=40, constraint=constraint))
    assert any(text.startswith(choice) for choice in choices), text
    assert result.text == text


def test_reply_ends_when_object_closes(tiny_tokenizer) -> None:
    # The only allowed spelling closes the object in the middle of the choice, so decoding must stop there.
    constraint = JsonReplyConstraint('{"x": {', ['"a": 1}} and more text'], token_index(tiny_tokenizer))
    text, result = _generate(tiny_tokenizer, GenerationConfig(max_new_tokens=40, constraint=constraint))
    assert text == '"a": 1}}'
    assert result.finish_reason == "stop"
    assert len(result.token_ids) < 40
