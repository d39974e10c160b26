"""Multi-turn tool-use traces (Hermes function calling, Glaive function calling v2) as next-step examples.

Data flow: a row -> its tools (OpenAI format) and chat-template messages -> one :class:`TraceExample`
per assistant turn, whose prompt is every message before that turn and whose target is that turn in
Qwen2.5's format. A turn with a call is labelled ``"tool_call"``, any other turn ``"planning"``.

A system turn that lists the tools is dropped: the tools go to the chat template, which writes its own
tool instructions, as it does when an agent binds tools. Any other system turn is kept. A row with a
call that cannot be parsed, or a call to a tool the row does not define, is skipped whole.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .examples import (
    SkipCounter,
    TraceExample,
    assistant_message,
    assistant_target,
    counter_or_new,
    function_tool,
    mode_of,
    report_if_owned,
)
from .sources import read_rows

logger = logging.getLogger(__name__)

HERMES_HUB_ID = "NousResearch/hermes-function-calling-v1"
GLAIVE_HUB_ID = "glaiveai/glaive-function-calling-v2"

_HERMES_ROLES = {"system": "system", "human": "user", "gpt": "assistant", "tool": "tool"}
_TOOLS_BLOCK = re.compile(r"<tools>(.*?)</tools>", re.DOTALL)
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_TOOL_RESPONSE_BLOCK = re.compile(r"<tool_response>(.*?)</tool_response>", re.DOTALL)

_GLAIVE_TURN = re.compile(r"^(USER|ASSISTANT|FUNCTION RESPONSE):[ \t]*", re.MULTILINE)
_GLAIVE_ROLES = {"USER": "user", "ASSISTANT": "assistant", "FUNCTION RESPONSE": "tool"}
_GLAIVE_END = "<|endoftext|>"
_GLAIVE_CALL_MARK = "<functioncall>"
_GLAIVE_SYSTEM_PREFIX = "SYSTEM:"
# Glaive writes the arguments as a single-quoted JSON string: {"name": "f", "arguments": '{"x": 1}'}.
_GLAIVE_QUOTED_ARGUMENTS = re.compile(
    r"""^\{\s*"name"\s*:\s*"(?P<name>[^"]+)"\s*,\s*"arguments"\s*:\s*'(?P<arguments>.*)'\s*\}$""", re.DOTALL
)


class _TraceError(ValueError):
    """A row that cannot become examples; the message is the skip reason without the source prefix."""


def load_hermes(source: str | Path = HERMES_HUB_ID, *, config: str | None = None, split: str = "train",
                limit: int | None = None, skips: SkipCounter | None = None) -> list[TraceExample]:
    """Load NousResearch Hermes function-calling conversations, one example per assistant turn.

    Rows contain ``conversations``: ``{"from": "system" | "human" | "gpt" | "tool", "value": ...}`` turns.
    The tools come from a ``tools`` field (JSON text or a list) when the row has one, else from the
    ``<tools>...</tools>`` block of the system turn. ``gpt`` turns write calls as
    ``<tool_call>{...}</tool_call>`` in JSON or Python-literal syntax. ``tool`` turns wrap each result in
    ``<tool_response>...</tool_response>`` and become one tool message per result.

    Args:
        source: a local .jsonl/.json/.parquet file, or a hub id (default ``NousResearch/hermes-function-calling-v1``).
        config: the hub configuration, e.g. ``"func_calling_singleturn"``; ``None`` reads the dataset's
            default. Ignored for local files.
        split: the hub split; ignored for local files.
        limit: read at most this many rows.
        skips: counter for rejected rows and turns; a fresh one is created (and its counts logged) when ``None``.
    """
    counter = counter_or_new(skips)
    rows = read_rows(source, "hermes", counter, config=config, split=split, limit=limit)
    examples = _trace_examples(rows, "hermes", _hermes_trace, counter, row_id=lambda row, index: row.get("id", index))
    logger.info("loaded %d Hermes examples from %s", len(examples), source)
    report_if_owned(counter, skips, "skipped Hermes rows")
    return examples


def _trace_examples(rows: list[dict[str, Any]], source: str,
                    parse_row: Callable[[dict[str, Any]], tuple[list[dict[str, Any]], list[dict[str, Any]] | None]],
                    counter: SkipCounter, row_id: Callable[[dict[str, Any], int], Any] = lambda row, index: index
                    ) -> list[TraceExample]:
    """Turn each row into one example per assistant step; a row ``parse_row`` rejects is counted and skipped."""
    examples = []
    for index, row in enumerate(rows):
        trace_id = str(row_id(row, index))
        try:
            messages, tools = parse_row(row)
        except _TraceError as error:
            counter.add(f"{source}:{error}", trace_id)
            continue
        examples.extend(step_examples(messages, tools, source, trace_id, counter))
    return examples


def load_glaive(source: str | Path = GLAIVE_HUB_ID, *, split: str = "train", limit: int | None = None,
                skips: SkipCounter | None = None) -> list[TraceExample]:
    """Load Glaive function-calling v2 conversations, one example per assistant turn.

    Rows contain ``system`` (``"SYSTEM: ..."``, followed by the function definitions as JSON objects when the
    assistant has tools) and ``chat``: turns that start a line with ``USER:``, ``ASSISTANT:`` or
    ``FUNCTION RESPONSE:``, assistant turns ending in ``<|endoftext|>``. A call is
    ``<functioncall> {"name": ..., "arguments": '<JSON text>'}``.

    Args:
        source: a local .jsonl/.json/.parquet file, or a hub id (default ``glaiveai/glaive-function-calling-v2``).
        split: the hub split; ignored for local files.
        limit: read at most this many rows.
        skips: counter for rejected rows and turns; a fresh one is created (and its counts logged) when ``None``.
    """
    counter = counter_or_new(skips)
    rows = read_rows(source, "glaive", counter, split=split, limit=limit)
    examples = _trace_examples(rows, "glaive", _glaive_trace, counter)
    logger.info("loaded %d Glaive examples from %s", len(examples), source)
    report_if_owned(counter, skips, "skipped Glaive rows")
    return examples


def step_examples(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, source: str,
                   trace_id: str, skips: SkipCounter) -> list[TraceExample]:
    """Cut one example per assistant turn, after checking every call names a tool the row defines."""
    names = {tool["function"]["name"] for tool in tools or []}
    called = {call["function"]["name"] for message in messages for call in message.get("tool_calls", [])}
    if called - names:
        skips.add(f"{source}:call to a tool not in the tool list", f"{trace_id}: {sorted(called - names)}")
        return []
    examples = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if not any(earlier["role"] == "user" for earlier in messages[:index]):
            skips.add(f"{source}:assistant turn before any user turn", trace_id)
            continue
        examples.append(TraceExample(messages=messages[:index], target=assistant_target(message), tools=tools,
                                     mode=mode_of(message), source=source, trace_id=trace_id))
    if not any(message["role"] == "assistant" for message in messages):
        skips.add(f"{source}:no assistant turn", trace_id)
    return examples


def _parse_literal(text: str, reason: str) -> Any:
    """Parse JSON, or failing that a Python literal (Hermes writes some calls and tools with single quotes)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as error:
        raise _TraceError(reason) from error


def _json_objects(text: str) -> list[Any] | None:
    """Decode JSON values separated by whitespace or commas; ``None`` if the text is not only that."""
    decoder, values, index = json.JSONDecoder(), [], 0
    while index < len(text):
        if text[index] in " \t\r\n,":
            index += 1
            continue
        try:
            value, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            return None
        values.append(value)
    return values


def _normalize_tools(value: Any) -> list[dict[str, Any]] | None:
    """Turn a parsed tool list (OpenAI tools or bare functions) into OpenAI tools; ``None`` if empty."""
    tools = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict) and item.get("type") == "function" and isinstance(item.get("function"), dict):
            function = item["function"]
        elif isinstance(item, dict):
            function = item
        else:
            raise _TraceError("unparseable tools")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise _TraceError("tool without a name")
        tools.append(function_tool(function))
    return tools or None


def _parse_tools_text(text: str) -> list[dict[str, Any]] | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = _parse_literal(text, "unparseable tools")
    except _TraceError:
        value = _json_objects(text)
        if value is None:
            raise
    return _normalize_tools(value)


def _call_parts(payload: Any) -> tuple[str, dict[str, Any]]:
    """Check a parsed call object and return its name and arguments (decoding string arguments)."""
    if not isinstance(payload, dict) or "arguments" not in payload:
        raise _TraceError("unparseable tool call")
    name, arguments = payload.get("name"), payload["arguments"]
    if isinstance(arguments, str):
        arguments = _decode_argument_text(arguments)
    if not isinstance(name, str) or not name or not isinstance(arguments, dict):
        raise _TraceError("unparseable tool call")
    return name, arguments


def _decode_argument_text(text: str) -> Any:
    for candidate in (text, text.replace("\\'", "'")):
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    raise _TraceError("unparseable tool call")


# --- Hermes ---------------------------------------------------------------------------------------

def _hermes_trace(row: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise _TraceError("missing conversations")
    tools = _hermes_row_tools(row.get("tools"))
    tools_from_row = tools is not None
    messages: list[dict[str, Any]] = []
    for turn in turns:
        speaker = turn.get("from") if isinstance(turn, dict) else None
        role = _HERMES_ROLES.get(speaker) if isinstance(speaker, str) else None
        value = turn.get("value") if isinstance(turn, dict) else None
        if role is None:
            raise _TraceError("unknown speaker")
        if not isinstance(value, str):
            raise _TraceError("turn value is not text")
        block = _TOOLS_BLOCK.search(value) if role == "system" else None
        if block is not None:
            tools = tools if tools_from_row else _parse_tools_text(block.group(1))
        elif role == "assistant":
            messages.append(_hermes_assistant(value))
        elif role == "tool":
            messages.extend(_hermes_tool_results(value))
        else:
            messages.append({"role": role, "content": value.strip()})
    return messages, tools


def _hermes_row_tools(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, str):
        return _parse_tools_text(value)
    if isinstance(value, list):
        return _normalize_tools(value)
    return None


def _hermes_call(block: str) -> tuple[str, dict[str, Any]]:
    text = block.strip()
    # Accept the newlines around the payload written as a literal backslash-n, as some Hermes rows have them.
    text = text.removeprefix("\\n").removesuffix("\\n").strip()
    return _call_parts(_parse_literal(text, "unparseable tool call"))


def _hermes_assistant(value: str) -> dict[str, Any]:
    if value.count("<tool_call>") != value.count("</tool_call>"):
        raise _TraceError("unparseable tool call")
    calls = [_hermes_call(block) for block in _TOOL_CALL_BLOCK.findall(value)]
    content = _TOOL_CALL_BLOCK.sub("", value).strip()
    if not content and not calls:
        raise _TraceError("empty assistant turn")
    return assistant_message(content, calls)


def _hermes_tool_results(value: str) -> list[dict[str, Any]]:
    results = _TOOL_RESPONSE_BLOCK.findall(value)
    if not results:
        return [{"role": "tool", "content": value.strip()}]
    return [{"role": "tool", "content": result.strip()} for result in results]


# --- Glaive ---------------------------------------------------------------------------------------

def _glaive_trace(row: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    system, chat = row.get("system", ""), row.get("chat")
    if not isinstance(chat, str) or not chat.strip():
        raise _TraceError("missing chat")
    if not isinstance(system, str):
        raise _TraceError("system is not text")
    system_text, tools = _glaive_system(system)
    messages = [{"role": "system", "content": system_text}] if system_text and tools is None else []
    parts = _GLAIVE_TURN.split(chat)
    if parts[0].strip():
        raise _TraceError("text before the first turn marker")
    for marker, text in zip(parts[1::2], parts[2::2], strict=True):
        text = text.replace(_GLAIVE_END, "").strip()
        role = _GLAIVE_ROLES[marker]
        if role == "assistant":
            messages.append(_glaive_assistant(text))
        else:
            messages.append({"role": role, "content": text})
    return messages, tools


def _glaive_system(system: str) -> tuple[str, list[dict[str, Any]] | None]:
    """Split the system field into its instruction text and its function definitions (if any)."""
    text = system.strip().removeprefix(_GLAIVE_SYSTEM_PREFIX).strip()
    start = text.find("{")
    if start < 0:
        return text, None
    functions = _json_objects(text[start:])
    if functions is None:
        raise _TraceError("unparseable function definitions")
    return text[:start].strip(), _normalize_tools(functions)


def _glaive_assistant(text: str) -> dict[str, Any]:
    if _GLAIVE_CALL_MARK not in text:
        if not text:
            raise _TraceError("empty assistant turn")
        return assistant_message(text)
    content, _, payload = text.partition(_GLAIVE_CALL_MARK)
    return assistant_message(content.strip(), [_glaive_call(payload.strip())])


def _glaive_call(payload: str) -> tuple[str, dict[str, Any]]:
    try:
        parsed = json.loads(payload)
    except json.JSONDecodeError:
        match = _GLAIVE_QUOTED_ARGUMENTS.match(payload)
        if match is None:
            raise _TraceError("unparseable function call") from None
        parsed = {"name": match["name"], "arguments": match["arguments"]}
    try:
        return _call_parts(parsed)
    except _TraceError as error:
        raise _TraceError("unparseable function call") from error


__all__ = ["GLAIVE_HUB_ID", "HERMES_HUB_ID", "load_glaive", "load_hermes"]
