"""Token ids of examples, rendered with the model's own chat template.

Data flow: :class:`TraceExample` -> ``tokenizer.apply_chat_template(messages, tools=tools,
add_generation_prompt=True)`` -> prompt ids, then the ids of ``target + <|im_end|>`` (its calls written in
the chosen call format) -> one :class:`RenderedExample`. The prompt is tokenized on its own, as the chat model does at inference, so
the prompt ids equal the ids the model gets when it generates that step. Nothing is truncated: an example
longer than ``max_length`` is skipped and counted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from .examples import Mode, SkipCounter, TraceExample, counter_or_new, report_if_owned

logger = logging.getLogger(__name__)

END_OF_TURN = "<|im_end|>"

CALL_FORMATS = ("json", "tagged")
"""Ways to write the calls of a target: bare JSON objects, one per line, or the template's ``<tool_call>`` blocks."""
_TAGGED_CALL = re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class RenderedExample:
    """An example as token ids.

    Attributes:
        input_ids: prompt ids followed by target ids; the target ends with the end-of-turn token.
        prompt_length: number of prompt ids; ``input_ids[prompt_length:]`` are the ids to train on.
        mode: the example's mode label.
        source: the example's source name.
        after_tool_result: whether the prompt ends with a tool result. ``LayerRouteChat`` runs the base
            model on such steps unless ``route_after_tool_results`` is set.
    """

    input_ids: list[int]
    prompt_length: int
    mode: Mode
    source: str
    after_tool_result: bool = False


def end_of_turn_token(tokenizer: PreTrainedTokenizerBase) -> str:
    """Return ``<|im_end|>`` when the tokenizer has it as a token, else its EOS token.

    Raises:
        ValueError: when the tokenizer has neither.
    """
    token_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if token_id is not None and token_id != tokenizer.unk_token_id:
        return END_OF_TURN
    if tokenizer.eos_token:
        return tokenizer.eos_token
    raise ValueError(f"The tokenizer has no {END_OF_TURN} token and no eos_token; set tokenizer.eos_token")


def format_calls(target: str, call_format: str) -> str:
    """Rewrite the ``<tool_call>`` blocks of a target in ``call_format``; ``tagged`` leaves it unchanged.

    Why ``json`` exists: the offline Qwen2.5-Coder-0.5B gives ``<tool_call>`` almost no probability as the
    first token of a reply (``python -m training.call_format`` prints it) and opens calls with ``{``. A
    target the model cannot start drives training to flatten that first distribution instead.

    Raises:
        ValueError: for an unknown ``call_format``.
    """
    if call_format not in CALL_FORMATS:
        raise ValueError(f"call_format must be one of {list(CALL_FORMATS)}, got {call_format!r}")
    return target if call_format == "tagged" else _TAGGED_CALL.sub(r"\1", target)


def render_prompt(example: TraceExample, tokenizer: PreTrainedTokenizerBase) -> str:
    """Return the chat-template text of an example's prompt, ending in the assistant generation prompt."""
    text = tokenizer.apply_chat_template(example.messages, tools=example.tools,  # type: ignore[arg-type]
                                         add_generation_prompt=True, tokenize=False)
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template returned {type(text).__name__} with tokenize=False; expected str")
    return text


def render_example(example: TraceExample, tokenizer: PreTrainedTokenizerBase, max_length: int,
                   skips: SkipCounter | None = None, call_format: str = "tagged") -> RenderedExample | None:
    """Tokenize an example's prompt and target; ``None`` when they do not fit in ``max_length`` tokens.

    A skipped example is counted in ``skips`` as ``"<source>:too long"``. The prompt alone leaves no
    room when it has ``max_length`` ids or more, because the target has at least the end-of-turn id.

    Raises:
        ValueError: when ``max_length`` is below 2, or the tokenizer has no end-of-turn token.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 (one prompt and one target token), got {max_length}")
    prompt_ids = tokenizer(render_prompt(example, tokenizer), add_special_tokens=False)["input_ids"]
    target = format_calls(example.target, call_format)
    target_ids = tokenizer(target + end_of_turn_token(tokenizer), add_special_tokens=False)["input_ids"]
    if len(prompt_ids) + len(target_ids) > max_length:
        logger.debug("skipped a %s example: %d prompt + %d target tokens > max_length %d",
                     example.source, len(prompt_ids), len(target_ids), max_length)
        if skips is not None:
            skips.add(f"{example.source}:too long")
        return None
    after_tool_result = bool(example.messages) and example.messages[-1]["role"] == "tool"
    return RenderedExample(input_ids=prompt_ids + target_ids, prompt_length=len(prompt_ids), mode=example.mode,
                           source=example.source, after_tool_result=after_tool_result)


def render_examples(examples: Iterable[TraceExample], tokenizer: PreTrainedTokenizerBase, max_length: int,
                    skips: SkipCounter | None = None, call_format: str = "tagged") -> list[RenderedExample]:
    """Render every example with :func:`render_example`, keeping those that fit.

    Args:
        examples: the examples to render.
        tokenizer: a tokenizer with a chat template.
        max_length: the maximum of prompt plus target ids.
        skips: counter for examples that do not fit; a fresh one is created (and its counts logged) when ``None``.
        call_format: how the targets' calls are written, one of :data:`CALL_FORMATS`.
    """
    counter = counter_or_new(skips)
    rendered = []
    for example in examples:
        result = render_example(example, tokenizer, max_length, counter, call_format)
        if result is not None:
            rendered.append(result)
    report_if_owned(counter, skips, f"examples longer than {max_length} tokens")
    return rendered


__all__ = ["CALL_FORMATS", "END_OF_TURN", "format_calls", "RenderedExample", "end_of_turn_token", "render_example", "render_examples",
           "render_prompt"]
