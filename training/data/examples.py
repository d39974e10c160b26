"""Example and skip-count types shared by every loader, and the text of an assistant step.

Loaders turn dataset rows into :class:`TraceExample` objects and count every row they reject in a
:class:`SkipCounter`. The helpers here build the assistant message dicts that chat templates read and
the target text that Qwen2.5 writes for the same step.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

logger = logging.getLogger(__name__)

Mode = Literal["tool_call", "planning"]
MODES: tuple[Mode, ...] = ("tool_call", "planning")


@dataclass(frozen=True)
class TraceExample:
    """One next-step training example: the conversation so far and the reply the model should write.

    Attributes:
        messages: chat-template role/content dicts (system, user, assistant, tool). An assistant turn
            with calls is ``{"role": "assistant", "content": "", "tool_calls": [{"type": "function",
            "function": {"name": ..., "arguments": {...}}}]}``.
        target: the reply text in Qwen2.5's own format, without the end-of-turn token. Calls are
            ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`` blocks joined by ``"\\n"``.
        tools: OpenAI-format function tools passed to the chat template, or ``None``.
        mode: ``"tool_call"`` when the target contains a call, else ``"planning"``.
        source: where the example came from, e.g. ``"bfcl:simple_python"``, ``"champ"`` or ``"hermes"``.
        trace_id: identifier of the source row. Examples cut from one multi-turn trace share it, so
            :func:`training.data.split_examples` keeps them on the same side of a split.
    """

    messages: list[dict[str, Any]]
    target: str
    tools: list[dict[str, Any]] | None
    mode: Mode
    source: str
    trace_id: str = ""


class SkipCounter(Counter[str]):
    """Count of rejected rows per reason, keyed ``"<source>:<reason>"``, e.g. ``"glaive:unparseable function call"``."""

    def add(self, reason: str, detail: str = "") -> None:
        """Count one rejected row and log ``detail`` (a row id or the parse error) at DEBUG level."""
        self[reason] += 1
        if detail:
            logger.debug("skipped row (%s): %s", reason, detail)

    def summary(self) -> str:
        """Return one ``count  reason`` line per reason, largest count first; ``"no rows skipped"`` if empty."""
        if not self:
            return "no rows skipped"
        return "\n".join(f"{count:6d}  {reason}" for reason, count in self.most_common())


def log_skip_counts(skips: SkipCounter, title: str = "skipped rows", level: int = logging.INFO) -> None:
    """Log every reason and its count in ``skips`` as one message."""
    logger.log(level, "%s (%d in all):\n%s", title, sum(skips.values()), skips.summary())


def counter_or_new(skips: SkipCounter | None) -> SkipCounter:
    """Return ``skips``, or a fresh counter when the caller passed none."""
    return SkipCounter() if skips is None else skips


def report_if_owned(skips: SkipCounter, caller_skips: SkipCounter | None, title: str) -> None:
    """Log the counts of ``skips`` when the caller passed no counter, so that no skip goes unreported."""
    if caller_skips is None and skips:
        log_skip_counts(skips, title=title)


def tool_call_text(name: str, arguments: dict[str, Any]) -> str:
    """Write one call the way the Qwen2.5 chat template writes an assistant ``tool_calls`` entry."""
    payload = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"<tool_call>\n{payload}\n</tool_call>"


def assistant_message(content: str, calls: Sequence[tuple[str, dict[str, Any]]] = ()) -> dict[str, Any]:
    """Build the chat-template dict of an assistant turn with optional ``(name, arguments)`` calls."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"type": "function", "function": {"name": name, "arguments": arguments}} for name, arguments in calls
        ]
    return message


def assistant_target(message: dict[str, Any]) -> str:
    """Return the reply text of an assistant message dict, as the Qwen2.5 template renders it after ``assistant\\n``.

    The template writes the content, then each call on a new line, so content and calls are joined by ``"\\n"``.
    """
    parts = [message["content"]] if message.get("content") else []
    for call in message.get("tool_calls", []):
        function = call["function"]
        parts.append(tool_call_text(function["name"], function["arguments"]))
    return "\n".join(parts)


def mode_of(message: dict[str, Any]) -> Mode:
    """Label an assistant message dict: ``"tool_call"`` if it contains a call, else ``"planning"``."""
    return "tool_call" if message.get("tool_calls") else "planning"


def function_tool(function: dict[str, Any]) -> dict[str, Any]:
    """Wrap a bare ``{"name", "description", "parameters"}`` function in the OpenAI tool format."""
    return {"type": "function", "function": function}


def planning_target(steps: Sequence[str], answer: str) -> str:
    """Write a worked solution as numbered steps, then ``Final answer: ...`` when ``answer`` is not empty."""
    lines = [f"{index}. {step}" for index, step in enumerate(steps, start=1)]
    if answer:
        lines.append(f"Final answer: {answer}")
    return "\n".join(lines)


__all__ = [
    "MODES",
    "Mode",
    "SkipCounter",
    "TraceExample",
    "assistant_message",
    "assistant_target",
    "function_tool",
    "log_skip_counts",
    "mode_of",
    "planning_target",
    "tool_call_text",
]
