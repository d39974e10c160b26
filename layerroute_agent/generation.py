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

from layerroute_agent.drafting import PromptLookup
from layerroute_agent.routing import GenerationState, RoutedCausalLM, RouteOverride, StepDecisions


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
    draft_tokens: int = 0
    """Maximum number of tokens copied from earlier in the prompt or reply
    (:class:`~layerroute_agent.drafting.PromptLookup`) that one decode pass checks after the new token. A
    pass drafts at most one token more than the previous pass accepted. A drafted token is kept only where
    it equals the model's greedy choice in that pass. Only greedy decoding
    without ``constraint`` drafts, and 0 turns drafting off.

    NOTE: in bf16 a pass of several tokens can round differently from one-token passes, so a near-tie between
    two tokens may resolve the other way and the reply can differ from one-token decoding. In float32 the
    replies are equal (``tests/test_drafting.py``)."""
    end_after: Callable[[str], int | None] | None = None
    """Function called with the reply text after each token. When it returns a length, the reply is cut there and
    ends (finish ``"stop"``). Unlike ``constraint`` it masks nothing, so the end-of-turn token may still end
    the reply first. Replies limited to one tool call use this."""

    def __post_init__(self) -> None:
        problems = []
        if self.draft_tokens < 0:
            problems.append(f"draft_tokens must be >= 0, got {self.draft_tokens}")
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
    decode_passes: list[tuple[int, int]] = field(default_factory=list)
    """Each decode forward run after prefill, as (positions cached before it, tokens it ran). Without
    drafting every pass runs one token."""
    tokens_drafted: int = 0
    """Drafted tokens that decode passes checked."""
    tokens_accepted: int = 0
    """Drafted tokens that equalled the model's greedy choice and are part of the reply."""
    stop_token_ids: set[int] = field(default_factory=set)

    @property
    def decode_calls(self) -> int:
        """Number of decode forwards run after prefill."""
        return len(self.decode_passes)

    @property
    def one_token_decode_calls(self) -> int:
        """Number of decode forwards that one-token-at-a-time decoding runs for the same reply: one per token
        sampled after the first, the end-of-turn token included. Each pass samples its own token plus the
        accepted drafts."""
        return self.decode_calls + self.tokens_accepted


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


def _without_banned(logits: torch.Tensor, banned: torch.Tensor) -> torch.Tensor:
    """Return ``(N, V)`` logits with the ``banned`` token ids set to ``-inf``."""
    return logits.index_fill(1, banned, float("-inf")) if len(banned) else logits


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


def _finished_text(text: str, config: GenerationConfig) -> str | None:
    """Return the reply cut where it ends (a stop string or a complete reply), or ``None`` while it goes on."""
    cut = _cut_at_stop(text, config.stop)
    if cut is None and config.constraint is not None:
        complete = config.constraint.complete_length(text)
        cut = None if complete is None else text[:complete]
    if cut is None and config.end_after is not None:
        complete = config.end_after(text)
        cut = None if complete is None else text[:complete]
    return cut


class _Decoder:
    """Runs the decode passes of one reply and hands out next-token logits one token at a time.

    With drafting, a pass runs the new token followed by drafted tokens, and the logits of every accepted
    draft are queued, so the tokens they predict need no pass of their own. The first pass drafts up to
    ``draft_tokens`` tokens and every later one at most one more than the pass before it accepted.
    """

    def __init__(self, routed: RoutedCausalLM, state: GenerationState, first_logits: torch.Tensor,
                 drafter: PromptLookup | None, draft_tokens: int, banned: torch.Tensor) -> None:
        self.routed, self.state, self.drafter = routed, state, drafter
        self.draft_tokens, self.banned = draft_tokens, banned
        self.draft_length = draft_tokens
        # (1, V) logits whose token is not sampled yet, each with whether it follows an accepted draft.
        self.queued: list[tuple[torch.Tensor, bool]] = [(first_logits, False)]
        self.passes: list[tuple[int, int]] = []
        self.drafted = self.accepted = 0

    def next_logits(self) -> torch.Tensor:
        """Return the ``(1, V)`` logits of the next token; :meth:`advance` must have run since the last call
        when nothing is queued."""
        logits, after_draft = self.queued.pop(0)
        # A draft counts as accepted once the reply uses it: accepted drafts after the reply's end do not.
        self.accepted += after_draft
        return logits

    def advance(self, token: int, room: int) -> None:
        """Take the sampled ``token`` and run a decode pass, unless its successor's logits are queued already.

        ``room`` is how many more tokens the reply may take after ``token``.
        """
        if self.drafter is not None:
            self.drafter.extend([token])
        if self.queued:
            return
        draft = [] if self.drafter is None else self.drafter.propose(min(self.draft_length, room - 1))
        cached = self.state.attention_mask.shape[1]
        device = self.state.attention_mask.device
        fed = torch.tensor([[token, *draft]], device=device)
        self.passes.append((cached, fed.shape[1]))
        if not draft:
            self.queued.append((self.routed.decode(fed, self.state), False))
            return
        logits = self.routed.verify(fed, self.state)[0]  # (1 + drafts, V)
        choices = _without_banned(logits, self.banned).argmax(dim=-1).tolist()
        accepted = 0
        while accepted < len(draft) and choices[accepted] == draft[accepted]:
            accepted += 1
        self.routed.rewind(self.state, len(draft) - accepted)
        self.drafted += len(draft)
        # Draft one token more than this pass accepted: prose, whose drafts mostly fail, then wastes about one
        # token per pass, while a run of copied tokens grows back to the maximum in a few passes.
        self.draft_length = min(self.draft_tokens, accepted + 1)
        # Row 0 follows the new token; rows 1..accepted follow accepted drafts.
        self.queued.extend((logits[index:index + 1], index > 0) for index in range(accepted + 1))


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
    text, emitted, finish_reason = "", "", "length"
    started = time.perf_counter()
    end_index = torch.tensor(sorted(end_ids), device=device)
    banned = torch.tensor(_turn_start_ids(tokenizer), dtype=torch.long, device=device)
    drafting = config.draft_tokens > 0 and config.temperature == 0 and config.constraint is None
    drafter = PromptLookup(prompt_ids) if drafting else None
    decoder = _Decoder(routed, state, logits, drafter, config.draft_tokens, banned)
    while len(generated) < config.max_new_tokens:
        logits = decoder.next_logits()
        if config.constraint is not None:
            logits = _constrained(logits, config.constraint, text, end_index)
        logits = _without_banned(logits, banned)
        token = _sample(logits[0], config, generator)
        if token in end_ids:
            finish_reason = "stop"
            break
        generated.append(token)
        text = detokenizer.add(token)
        cut = _finished_text(text, config)
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
        decoder.advance(token, config.max_new_tokens - len(generated))
    decode_seconds = time.perf_counter() - started
    final_text = text
    if len(final_text) > len(emitted):
        yield final_text[len(emitted):]
    yield GenerationResult(
        text=final_text, token_ids=generated, finish_reason=finish_reason, prompt_tokens=len(prompt_ids),
        decisions=state.decisions, prefill_seconds=prefill_seconds, decode_seconds=decode_seconds,
        decode_passes=decoder.passes, tokens_drafted=decoder.drafted, tokens_accepted=decoder.accepted,
        stop_token_ids=end_ids,
    )

__all__ = ["DecodingConstraint", "GenerationConfig", "GenerationResult", "stream_tokens"]
