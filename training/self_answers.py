"""The base model's own replies as training targets where the data has none (self-distillation).

Data flow: the messages and tools of a replayed multi-turn step -> the chat template -> the untouched
base model (every block, no LoRA), greedy -> its reply, kept in a :class:`BaseAnswers` file -> the reply
text when it is plain text that ended by itself, else ``None`` (a tool call, or a reply cut off at
``max_new_tokens``), which ends the replayed trace at that step.

Measure how many replayed turns get a usable answer from a model::

    python -m training.self_answers --tasks 20 --max-turns 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from layerroute_agent.generation import GenerationConfig, GenerationResult
from layerroute_agent.loading import DEFAULT_MODEL
from layerroute_agent.runtime import RoutedRuntime, get_runtime
from layerroute_agent.tool_calls import parse_reply
from training.base_answers import BaseAnswers, answer_key
from training.data import SkipCounter, load_bfcl_multi_turn
from training.data.bfcl_multi_turn import AnswerTurn


def step_id(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    """Return a stable id of a prompt: a hash of its messages and tools."""
    payload = json.dumps([messages, tools], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


def _generate(runtime: RoutedRuntime, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
              max_new_tokens: int) -> dict[str, str]:
    tokenizer = runtime.tokenizer
    text = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    result = None
    for piece in runtime.run_step(prompt_ids, GenerationConfig(max_new_tokens=max_new_tokens), route_all=True):
        if isinstance(piece, GenerationResult):
            result = piece
    if result is None:
        raise RuntimeError("generation ended without a GenerationResult")
    return {"text": result.text, "finish_reason": result.finish_reason}


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def usable_answer(reply: dict[str, str], tools: list[dict[str, Any]]) -> str | None:
    """Return the reply text if it can be a text-answer target, else ``None``.

    Rejected: a reply cut off at the token limit, one with a tool call, and one that is a JSON value or
    opens with ``{``, ``[`` or a code fence, which small models write when they echo a tool result
    instead of answering. Bare JSON scalars such as ``42`` are rejected too: an answer to a user is a
    sentence.
    """
    if reply["finish_reason"] != "stop":
        return None
    parsed = parse_reply(reply["text"], [tool["function"]["name"] for tool in tools])
    if parsed.tool_calls or parsed.invalid_tool_calls:
        return None
    text = parsed.content.strip()
    if not text or _is_json(text) or text.startswith(("{", "[", "```")):
        return None
    return text


def base_model_answerer(runtime: RoutedRuntime, answers: BaseAnswers, max_new_tokens: int = 96) -> AnswerTurn:
    """Return an ``answer_turn`` for :func:`training.data.load_bfcl_multi_turn` that generates with the base model.

    Args:
        runtime: a runtime without an adapter, which is the base model; every block runs.
        answers: where replies are kept by :func:`step_id`, so a second run generates none of them.
        max_new_tokens: replies longer than this are cut off and not used.
    """
    if runtime.adapter is not None:
        raise ValueError(f"base_model_answerer needs the base model, got a runtime with adapter {runtime.adapter!r}")

    def answer(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str | None:
        key = step_id(messages, tools)
        reply = answers.get(key)
        if reply is None:
            reply = _generate(runtime, messages, tools, max_new_tokens)
            answers.put(key, reply)
        return usable_answer(reply, tools)

    return answer


def main(argv: Sequence[str] | None = None) -> int:
    """Replay BFCL multi-turn tasks with the base model's answers; print the examples per mode and the cuts."""
    parser = argparse.ArgumentParser(prog="python -m training.self_answers", description=main.__doc__)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="base model spec (default: the offline pack)")
    parser.add_argument("--dtype", default="bfloat16", help="model dtype (default: bfloat16)")
    parser.add_argument("--tasks", type=int, default=20, help="tasks replayed, in file order (default: 20)")
    parser.add_argument("--max-turns", type=int, default=1, help="user turns replayed per task (default: 1)")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="token limit of a reply (default: 96)")
    parser.add_argument("--answers", type=Path, help="JSON file that keeps the replies (default: none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    runtime = get_runtime(args.model, None, args.dtype, "cpu")
    answers = BaseAnswers.open(args.answers, answer_key(args.model, args.dtype, args.max_new_tokens))
    skips = SkipCounter()
    examples = load_bfcl_multi_turn(base_model_answerer(runtime, answers, args.max_new_tokens), limit=args.tasks,
                                    max_turns=args.max_turns, skips=skips)
    print(f"examples by mode: {dict(Counter(example.mode for example in examples))}")
    print(f"turns without a usable answer:\n{skips.summary()}")
    for example in examples:
        if example.mode == "planning":
            print(f"answer ({example.trace_id}): {example.target[:200]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["base_model_answerer", "main", "step_id", "usable_answer"]
