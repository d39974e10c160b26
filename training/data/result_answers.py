"""Text replies written from a turn's real tool results by a fixed template (synthetic targets).

BFCL's multi-turn tasks give the calls of each turn but no reference text for the reply after their
results, and the offline 0.5B base model writes no usable one (``python -m training.self_answers``
accepted 0 of 20 replayed turns). This template reports each call of the turn with its result in one
sentence: ``"Done. cd returned current working directory research. cat returned file content ..."``.

The sentences are synthetic and plain. They teach a step that already has its results to stop calling
and reply in text, which is what an agent needs after its last call. They do not teach a writing style.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_ITEMS = 5
"""Most keys of an object or items of a list reported per value; the rest are counted."""
MAX_TEXT = 120
"""Most characters of a string value reported; a longer one is cut and ends with ``...``."""


def _words(key: str) -> str:
    """Turn a result key such as ``current_working_directory`` or ``doorStatus`` into lowercase words."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).replace("_", " ")
    return " ".join(spaced.split()).lower() or key


def describe(value: Any) -> str:
    """Write a JSON value as short plain text: keys as words, at most :data:`MAX_ITEMS` entries per level."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "nothing"
    if isinstance(value, str):
        text = " ".join(value.split())
        return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3].rstrip() + "..."
    if isinstance(value, dict):
        parts = [f"{_words(str(key))} {describe(item)}" for key, item in list(value.items())[:MAX_ITEMS]]
        return _join(parts, len(value)) or "nothing"
    if isinstance(value, list):
        return _join([describe(item) for item in value[:MAX_ITEMS]], len(value)) or "none"
    return str(value)


def _join(parts: list[str], total: int) -> str:
    hidden = total - len(parts)
    return ", ".join(parts) + (f" and {hidden} more" if hidden > 0 else "")


def _result_value(content: str) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content


def _call_sentence(name: str, content: str) -> tuple[str, bool]:
    """Return the sentence that reports one call, and whether its result is an error."""
    value = _result_value(content)
    if isinstance(value, dict) and set(value) == {"error"}:
        return f"{name} failed: {describe(value['error'])}.", True
    if value in (None, "", {}, []):
        return f"{name} finished with no result.", False
    return f"{name} returned {describe(value)}.", False


def _turn_calls(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Return ``(function name, result content)`` for each call after the last user message, in order."""
    last_user = max((index for index, message in enumerate(messages) if message["role"] == "user"), default=-1)
    names: list[str] = []
    results: list[str] = []
    for message in messages[last_user + 1:]:
        if message["role"] == "assistant":
            names += [call["function"]["name"] for call in message.get("tool_calls", [])]
        elif message["role"] == "tool":
            results.append(str(message.get("content", "")))
    return list(zip(names, results, strict=False))


def template_answer(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str | None:
    """Write the reply after a turn's last tool result from that turn's calls and results.

    An ``answer_turn`` for :func:`training.data.load_bfcl_multi_turn`. ``tools`` is not used; it is part
    of that signature. Returns ``None`` when the turn made no call, since there is no result to report.
    """
    del tools
    sentences = [_call_sentence(name, content) for name, content in _turn_calls(messages)]
    if not sentences:
        return None
    opening = "Not everything worked." if any(failed for _, failed in sentences) else "Done."
    return " ".join([opening, *(sentence for sentence, _ in sentences)])


__all__ = ["MAX_ITEMS", "MAX_TEXT", "describe", "template_answer"]
