"""Drafted decoding: the n-gram lookup, the multi-token verify pass and rewinding, and unchanged replies."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_qwen2

from layerroute_agent.drafting import PromptLookup
from layerroute_agent.generation import GenerationConfig, GenerationResult, stream_tokens
from layerroute_agent.routing import RoutedCausalLM, RouteOverride


def test_lookup_copies_what_followed_the_latest_match() -> None:
    lookup = PromptLookup([1, 2, 3, 4, 9, 2, 3, 5, 6, 2, 3])
    # The tail (2, 3) occurred twice before; the later occurrence was followed by 5, 6.
    assert lookup.propose(3) == [5, 6, 2]
    assert lookup.propose(0) == []


def test_lookup_prefers_the_longest_match() -> None:
    lookup = PromptLookup([7, 2, 3, 4, 1, 2, 3, 8, 7, 2, 3])
    # (2, 3) last occurred before 8, but (7, 2, 3) occurred only before 4.
    assert lookup.propose(2) == [4, 1]


def test_lookup_indexes_appended_tokens_and_finds_no_match() -> None:
    lookup = PromptLookup([1, 2, 3])
    assert lookup.propose(4) == []
    lookup.extend([4, 1, 2])
    assert lookup.propose(4) == [3, 4, 1, 2]
    lookup.extend([5])
    assert lookup.propose(4) == []


def test_lookup_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="ngram_sizes must contain sizes >= 1"):
        PromptLookup([1, 2], ngram_sizes=(2, 0))


def _routed(skip: frozenset[int] = frozenset()) -> tuple[RoutedCausalLM, RouteOverride]:
    torch.manual_seed(0)
    return RoutedCausalLM(tiny_qwen2().float().eval()), RouteOverride(skip)


@pytest.mark.parametrize("skip", [frozenset(), frozenset({1})])
def test_verify_and_rewind_match_decode(skip: frozenset[int]) -> None:
    routed, override = _routed(skip)
    prompt = torch.randint(5, 500, (1, 9), generator=torch.Generator().manual_seed(1))
    new = [[11], [12], [13]]
    _, state = routed.prefill(prompt, torch.ones_like(prompt), override=override)
    one_by_one = torch.cat([routed.decode(torch.tensor([token]), state) for token in new])  # (3, V)
    _, state = routed.prefill(prompt, torch.ones_like(prompt), override=override)
    together = routed.verify(torch.tensor([[11, 12, 13]]), state)[0]
    torch.testing.assert_close(together, one_by_one, rtol=1e-4, atol=1e-4)

    # Run 11 then drafts 99, 98; rewinding both must leave the state of "11 alone".
    _, state = routed.prefill(prompt, torch.ones_like(prompt), override=override)
    routed.verify(torch.tensor([[11, 99, 98]]), state)
    routed.rewind(state, 2)
    assert state.attention_mask.shape[1] == prompt.shape[1] + 1
    assert state.cache.seq_length(0) == prompt.shape[1] + 1
    after_rewind = routed.decode(torch.tensor([[12]]), state)
    torch.testing.assert_close(after_rewind[0], one_by_one[1], rtol=1e-4, atol=1e-4)


def test_rewind_rejects_more_than_the_state_holds() -> None:
    routed, override = _routed()
    prompt = torch.randint(5, 500, (1, 4), generator=torch.Generator().manual_seed(2))
    _, state = routed.prefill(prompt, torch.ones_like(prompt), override=override)
    routed.verify(torch.tensor([[11, 12]]), state)
    with pytest.raises(ValueError, match=r"positions must be in \[0, 6\) for a state of 6 positions, got 6"):
        routed.rewind(state, 6)
    with pytest.raises(ValueError, match="cannot drop 7 positions"):
        state.cache.drop_last(7)
    # A failed call changes nothing.
    assert [state.cache.seq_length(block) for block in range(4)] == [6, 6, 6, 6]
    assert state.attention_mask.shape[1] == 6


def _reply(tiny_model_dir, prompt: list[int], draft_tokens: int, **settings: object) -> GenerationResult:
    from layerroute_agent.runtime import get_runtime

    runtime = get_runtime(str(tiny_model_dir), None, "float32", "cpu")
    config = GenerationConfig(**{"max_new_tokens": 24, "draft_tokens": draft_tokens, **settings})
    result = list(stream_tokens(runtime.routed, runtime.tokenizer, prompt, config))[-1]
    assert isinstance(result, GenerationResult)
    return result


def _repetitive_prompt(tiny_model_dir) -> list[int]:
    """A prompt that contains the tiny model's own greedy reply, so drafts copied from it get accepted."""
    from layerroute_agent.runtime import get_runtime

    tokenizer = get_runtime(str(tiny_model_dir), None, "float32", "cpu").tokenizer
    start = tokenizer("weather in Lyon", add_special_tokens=False)["input_ids"]
    reply = _reply(tiny_model_dir, start, 0).token_ids
    return start + reply + start


def test_drafting_keeps_reply_in_fewer_passes(tiny_model_dir) -> None:
    prompt = _repetitive_prompt(tiny_model_dir)
    plain = _reply(tiny_model_dir, prompt, 0)
    drafted = _reply(tiny_model_dir, prompt, 4)
    assert drafted.token_ids == plain.token_ids
    assert drafted.text == plain.text
    assert drafted.tokens_accepted > 0, "the prompt repeats the reply, so some drafts must be accepted"
    assert drafted.decode_calls < plain.decode_calls
    assert drafted.one_token_decode_calls == plain.one_token_decode_calls == plain.decode_calls
    # Every pass gives one token of its own plus the accepted drafts the reply uses.
    assert drafted.decode_calls + drafted.tokens_accepted == plain.decode_calls
    assert all(width == 1 for _, width in plain.decode_passes)
    assert sum(width for _, width in drafted.decode_passes) == drafted.decode_calls + drafted.tokens_drafted
    # Each pass starts where the kept tokens end: rejected drafts leave no position behind.
    kept_positions = len(prompt)
    for (cached, width), (next_cached, next_width) in zip(drafted.decode_passes, drafted.decode_passes[1:]):
        assert cached == kept_positions
        assert kept_positions < next_cached <= cached + width
        # After a pass with drafts, the next pass drafts at most one token more than that pass accepted.
        accepted = next_cached - cached - 1
        if width > 1:
            assert next_width - 1 <= accepted + 1
        kept_positions = next_cached


def test_drafting_respects_limit_and_stop(tiny_model_dir) -> None:
    prompt = _repetitive_prompt(tiny_model_dir)
    plain = _reply(tiny_model_dir, prompt, 0)
    # Late limits, so that drafts were accepted before them (this prompt's drafts match only late in the reply).
    # The stop string is the last 3 characters of the reply that do not occur earlier in it.
    stop = next(piece for start in range(len(plain.text) - 3, 0, -1)
                if plain.text.index(piece := plain.text[start:start + 3]) == start)
    for settings in ({"max_new_tokens": len(plain.token_ids) - 1}, {"stop": (stop,)}):
        expected = _reply(tiny_model_dir, prompt, 0, **settings)
        drafted = _reply(tiny_model_dir, prompt, 4, **settings)
        assert (drafted.token_ids, drafted.text, drafted.finish_reason) == \
            (expected.token_ids, expected.text, expected.finish_reason), settings
        assert drafted.tokens_accepted > 0, settings
        assert drafted.decode_calls + drafted.tokens_accepted == expected.decode_calls, settings


def test_sampling_does_not_draft(tiny_model_dir) -> None:
    prompt = _repetitive_prompt(tiny_model_dir)
    sampled = _reply(tiny_model_dir, prompt, 4, temperature=0.8, seed=3)
    assert sampled.tokens_drafted == 0
    assert all(width == 1 for _, width in sampled.decode_passes)


def test_generation_config_rejects_negative_drafts() -> None:
    with pytest.raises(ValueError, match="draft_tokens must be >= 0, got -1"):
        GenerationConfig(draft_tokens=-1)
