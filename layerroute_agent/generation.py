"""Token-by-token generation on a :class:`~layerroute_agent.routing.RoutedCausalLM`, one row at a time.

Data flow: prompt ids -> routed prefill (routing decided here) -> sample -> routed decode per token,
reusing the KV cache of the blocks that run -> stop on an end-of-turn token, a stop string or the token
limit. :func:`stream_tokens` yields each new piece of text as it is decoded, and the final
:class:`GenerationResult` carries timings and the routing decisions for the compute record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from transformers import PreTrainedTokenizerBase

from layerroute_agent.routing import RoutedCausalLM, RouteOverride, StepDecisions


class DecodingConstraint(Protocol):
    """Rules that steer one reply while it is decoded; both methods read the reply text generated so far."""

    def allowed_token_ids(self, text: str) -> Sequence[int] | None:
        """Return the ids the next token may take, or ``None`` when any token may follow."""

    def complete_length(self, text: str) -> int | None:
        """Return the length at which ``text`` is a complete reply, or ``None`` while it is not complete."""


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling and stopping settings of one generation call."""

    max_new_tokens: int = 512
    """Upper bound on generated tokens."""
    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling mass, in (0, 1]."""
    seed: int | None = None
    """Seed of this call's own random generator (sampling only)."""
    stop: tuple[str, ...] = ()
    """Strings that end generation; the text is cut before the first one."""
    constraint: DecodingConstraint | None = None
    """When set, the next token is limited to ``constraint.allowed_token_ids``, end-of-turn tokens are masked
    until ``constraint.complete_length`` finds the reply complete, and the reply is cut at that length and
    ends there (finish ``"stop"``). Forced tool calls and JSON replies use this. ``max_new_tokens`` still
    bounds the reply."""
    end_after: Callable[[str], int | None] | None = None
    """Function called with the reply text after each token. When it returns a length, the reply is cut there and
    ends (finish ``"stop"``). Unlike ``constraint`` it masks nothing, so the end-of-turn token may still end
    the reply first. Replies limited to one tool call use this."""

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if problems:
            raise ValueError("Invalid GenerationConfig: " + "; ".join(problems))


@dataclass
class GenerationResult:
    """Everything one generation call produced."""

    text: str
    token_ids: list[int]
    finish_reason: str
    """``"stop"`` (end-of-turn token or stop string) or ``"length"``."""
    prompt_tokens: int
    decisions: StepDecisions
    prefill_seconds: float
    decode_seconds: float
    decode_calls: int
    """Number of single-token decode forwards run after prefill."""
    stop_token_ids: set[int] = field(default_factory=set)


def _end_token_ids(tokenizer: PreTrainedTokenizerBase, generation_config: object | None) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, Sequence):
            ids.update(int(i) for i in source)
    for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return ids


def _turn_start_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Return ids of tokens that open a new chat turn; a reply never contains one, so decoding masks them."""
    ids = []
    for token in ("<|im_start|>", "<|start_header_id|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.append(token_id)
    return ids


def _sample(logits: torch.Tensor, config: GenerationConfig, generator: torch.Generator | None) -> int:
    """Pick the next token from ``(V,)`` logits."""
    if config.temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / config.temperature, dim=-1)
    if config.top_p < 1:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token is always kept).
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < config.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def _held_back(text: str, stop: tuple[str, ...]) -> int:
    """Return how many trailing characters of ``text`` could be the start of a stop string."""
    longest = 0
    for s in stop:
        for size in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:size]):
                longest = size
                break
    return longest


class _IncrementalDetokenizer:
    """Decodes a growing list of token ids by re-decoding only the last few tokens each time.

    Decoding the whole list after every token costs O(n) per token. Here each new token decodes a short
    window that starts at the last token boundary whose text was complete: the text of the window minus the
    text of its already-read part is the new text. The window's prefix keeps the tokenizer's context (such
    as SentencePiece's leading-space rule) the same as in a whole-list decode. A window whose text ends in
    U+FFFD (an unfinished UTF-8 sequence) is not committed, so the next token can complete it.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.committed = ""
        self._prefix_offset = 0
        self._read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def add(self, token: int) -> str:
        """Append one token and return the text of every token so far (possibly ending in U+FFFD)."""
        self.ids.append(token)
        read = self._decode(self.ids[self._prefix_offset:self._read_offset])
        window = self._decode(self.ids[self._prefix_offset:])
        if window.startswith(read):
            text = self.committed + window[len(read):]
        else:
            # The new token changed how the window's read part decodes: fall back to decoding every token.
            text = self._decode(self.ids)
        if not text.endswith("\ufffd"):
            self.committed = text
            self._prefix_offset, self._read_offset = self._read_offset, len(self.ids)
        return text


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str | None:
    hits = [text.index(s) for s in stop if s and s in text]
    return text[: min(hits)] if hits else None


def _constrained(logits: torch.Tensor, constraint: DecodingConstraint, text: str, end_index: torch.Tensor
                 ) -> torch.Tensor:
    """Apply ``constraint`` to ``(1, V)`` next-token logits; end-of-turn is masked because the reply is not complete
    yet (a complete one has already stopped)."""
    logits = logits.index_fill(1, end_index, float("-inf"))
    allowed = constraint.allowed_token_ids(text)
    if allowed is None:
        return logits
    keep = torch.tensor(list(allowed), dtype=torch.long, device=logits.device)
    return torch.full_like(logits, float("-inf")).index_copy(1, keep, logits.index_select(1, keep))


def stream_tokens(routed: RoutedCausalLM, tokenizer: PreTrainedTokenizerBase, prompt_ids: list[int],
                  config: GenerationConfig, override: RouteOverride | None = None
                  ) -> Iterator[str | GenerationResult]:
    """Generate a reply for one prompt, yielding text pieces and finally a :class:`GenerationResult`.

    Text is decoded with special tokens kept (``<tool_call>`` is a special token in Qwen2.5), and the
    end-of-turn token itself is not part of the text.
    """
    device = next(routed.parameters()).device
    end_ids = _end_token_ids(tokenizer, getattr(routed.model, "generation_config", None))
    generator = None
    if config.seed is not None:
        generator = torch.Generator(device=device).manual_seed(config.seed)
    input_ids = torch.tensor([prompt_ids], device=device)
    started = time.perf_counter()
    logits, state = routed.prefill(input_ids, torch.ones_like(input_ids), override=override)
    prefill_seconds = time.perf_counter() - started
    generated: list[int] = []
    detokenizer = _IncrementalDetokenizer(tokenizer)
    text, emitted, finish_reason, decode_calls = "", "", "length", 0
    started = time.perf_counter()
    end_index = torch.tensor(sorted(end_ids), device=device)
    banned = torch.tensor(_turn_start_ids(tokenizer), dtype=torch.long, device=device)
    while len(generated) < config.max_new_tokens:
        if config.constraint is not None:
            logits = _constrained(logits, config.constraint, text, end_index)
        if len(banned):
            logits = logits.index_fill(1, banned, float("-inf"))
        token = _sample(logits[0], config, generator)
        if token in end_ids:
            finish_reason = "stop"
            break
        generated.append(token)
        text = detokenizer.add(token)
        cut = _cut_at_stop(text, config.stop)
        if cut is None and config.constraint is not None:
            complete = config.constraint.complete_length(text)
            cut = None if complete is None else text[:complete]
        if cut is None and config.end_after is not None:
            complete = config.end_after(text)
            cut = None if complete is None else text[:complete]
        if cut is not None:
            text, finish_reason = cut, "stop"
        # Hold back a trailing replacement character (the next token may complete a UTF-8 sequence) and any
        # tail that may grow into a stop string, so that text once sent never has to be taken back.
        ready = text
        if cut is None:
            ready = text.rstrip("\ufffd")
            ready = ready[: len(ready) - _held_back(ready, config.stop)]
        if len(ready) > len(emitted) and ready.startswith(emitted):
            yield ready[len(emitted):]
            emitted = ready
        if cut is not None or len(generated) == config.max_new_tokens:
            break
        logits = routed.decode(torch.tensor([[token]], device=device), state)
        decode_calls += 1
    decode_seconds = time.perf_counter() - started
    final_text = text
    if len(final_text) > len(emitted):
        yield final_text[len(emitted):]
    yield GenerationResult(
        text=final_text, token_ids=generated, finish_reason=finish_reason, prompt_tokens=len(prompt_ids),
        decisions=state.decisions, prefill_seconds=prefill_seconds, decode_seconds=decode_seconds,
        decode_calls=decode_calls, stop_token_ids=end_ids,
    )


__all__ = ["DecodingConstraint", "GenerationConfig", "GenerationResult", "stream_tokens"]
