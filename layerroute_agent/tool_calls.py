"""Tools into the prompt and tool calls out of the reply.

Data flow: LangChain messages + bound tools -> template dicts -> the model's own chat template ->
prompt ids. A reply's text -> :func:`parse_reply` -> content, ``tool_calls`` and ``invalid_tool_calls``.

Qwen2.5 writes calls as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` and sometimes as
bare JSON; both forms are parsed, several calls per reply included. A call that cannot be used (bad
JSON, no name, unknown tool, arguments that are not an object) becomes an invalid tool call with the
reason, never an exception.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.tool import InvalidToolCall, ToolCall, invalid_tool_call, tool_call

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
_TAGGED_CALL = re.compile(re.escape(CALL_OPEN) + r"(.*?)(?:" + re.escape(CALL_CLOSE) + r"|$)", re.DOTALL)
_JSON_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _text_of(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(block.get("text", ""))
    return "".join(parts)


def _assistant_dict(message: AIMessage) -> dict[str, Any]:
    calls = [{"type": "function", "function": {"name": c["name"], "arguments": c["args"]}} for c in message.tool_calls]
    entry: dict[str, Any] = {"role": "assistant", "content": _text_of(message.content)}
    if calls:
        entry["tool_calls"] = calls
    return entry


def _user_dicts(message: HumanMessage) -> list[dict[str, Any]]:
    """Return a user turn, preceded by a tool turn for each Anthropic-style ``tool_result`` block it carries."""
    blocks = message.content if isinstance(message.content, list) else []
    results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
    turns = [{"role": "tool", "content": _text_of(b.get("content", "")), "name": ""} for b in results]
    text = _text_of(message.content)
    if text or not turns:
        turns.append({"role": "user", "content": text})
    return turns


def to_template_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """Convert LangChain messages into the role/content dicts that chat templates read.

    Raises:
        TypeError: for a message type with no chat-template role (the message names the type).
    """
    converted = []
    for message in messages:
        if isinstance(message, SystemMessage):
            converted.append({"role": "system", "content": _text_of(message.content)})
        elif isinstance(message, HumanMessage):
            converted.extend(_user_dicts(message))
        elif isinstance(message, AIMessage):
            converted.append(_assistant_dict(message))
        elif isinstance(message, ToolMessage):
            converted.append({"role": "tool", "content": _text_of(message.content), "name": message.name or ""})
        else:
            raise TypeError(
                f"Unsupported message type {type(message).__name__}; use SystemMessage, HumanMessage, "
                "AIMessage or ToolMessage"
            )
    return converted


@dataclass
class ParsedReply:
    """A reply split into text and tool calls."""

    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    invalid_tool_calls: list[InvalidToolCall] = field(default_factory=list)


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _call_from_object(obj: Any, raw: str, allowed: set[str] | None) -> ToolCall | InvalidToolCall:
    call_id = _new_call_id()
    if not isinstance(obj, dict):
        return invalid_tool_call(name=None, args=raw, id=call_id, error=f"expected a JSON object, got {type(obj).__name__}")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return invalid_tool_call(name=None, args=raw, id=call_id, error="the call has no 'name' string")
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as err:
            return invalid_tool_call(name=name, args=raw, id=call_id, error=f"'arguments' is not valid JSON: {err}")
    if not isinstance(arguments, dict):
        return invalid_tool_call(name=name, args=raw, id=call_id,
                                 error=f"'arguments' must be a JSON object, got {type(arguments).__name__}")
    if allowed is not None and name not in allowed:
        return invalid_tool_call(name=name, args=raw, id=call_id,
                                 error=f"unknown tool {name!r}; bound tools are {sorted(allowed)}")
    return tool_call(name=name, args=arguments, id=call_id)


def _add(parsed: ParsedReply, call: ToolCall | InvalidToolCall) -> None:
    if call.get("type") == "invalid_tool_call":
        parsed.invalid_tool_calls.append(call)  # type: ignore[arg-type]
    else:
        parsed.tool_calls.append(call)  # type: ignore[arg-type]


def _parse_json_sequence(text: str) -> tuple[list[Any], str]:
    """Decode JSON values separated by whitespace or commas; return them and the undecodable rest."""
    decoder, values, index = json.JSONDecoder(), [], 0
    while index < len(text):
        try:
            value, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            return values, text[index:]
        values.append(value)
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
    return values, ""


def _is_call_shaped(obj: Any, allowed: set[str] | None) -> bool:
    """Whether a bare JSON object is a tool call rather than JSON content, because it names a bound tool or has arguments."""
    if not isinstance(obj, dict) or "name" not in obj:
        return False
    return "arguments" in obj or "parameters" in obj or (allowed is not None and obj["name"] in allowed)


def _looks_like_bare_call(text: str) -> bool:
    return text.startswith("{") and '"name"' in text or text.startswith("[{")


def _parse_bare(text: str, allowed: set[str] | None) -> ParsedReply | None:
    fenced = _JSON_FENCE.match(text)
    body = fenced.group(1) if fenced else text
    if not (body.startswith("{") or body.startswith("[")):
        return None
    values, rest = _parse_json_sequence(body)
    objects = [item for value in values for item in (value if isinstance(value, list) else [value])]
    if not all(_is_call_shaped(o, allowed) for o in objects):
        return None
    if rest and not _looks_like_bare_call(rest):
        return None
    if not objects and not rest:
        return None
    parsed = ParsedReply(content="")
    for obj in objects:
        _add(parsed, _call_from_object(obj, json.dumps(obj), allowed))
    if rest:
        # Typically a reply cut by max_tokens: the complete calls before it are kept.
        parsed.invalid_tool_calls.append(
            invalid_tool_call(name=None, args=rest, id=_new_call_id(), error="the reply is a malformed JSON tool call")
        )
    return parsed


def _parse_tagged_block(raw: str, closed: bool, allowed: set[str] | None, parsed: ParsedReply) -> None:
    """Parse one ``<tool_call>`` block, which may hold one object, a list, or several objects in a row."""
    values, rest = _parse_json_sequence(raw)
    if not values:
        try:
            json.loads(raw)
        except json.JSONDecodeError as err:
            reason = f"invalid JSON in <tool_call>: {err}" if closed else "unterminated <tool_call> block"
            parsed.invalid_tool_calls.append(invalid_tool_call(name=None, args=raw, id=_new_call_id(), error=reason))
        return
    # Text after the objects (the model sometimes adds some before the closing tag) is ignored.
    objects = [item for value in values for item in (value if isinstance(value, list) else [value])]
    for obj in objects:
        _add(parsed, _call_from_object(obj, json.dumps(obj) if len(objects) > 1 else raw, allowed))


def parse_reply(text: str, tool_names: Sequence[str] | None = None) -> ParsedReply:
    """Split a model reply into content, tool calls and invalid tool calls.

    Args:
        text: the decoded reply, special tokens kept.
        tool_names: names of the bound tools; a call to another name is invalid. ``None`` accepts any name.
    """
    allowed = set(tool_names) if tool_names is not None else None
    if CALL_OPEN in text:
        parsed = ParsedReply(content=_TAGGED_CALL.sub("", text).strip())
        for match in _TAGGED_CALL.finditer(text):
            _parse_tagged_block(match.group(1).strip(), match.group(0).endswith(CALL_CLOSE), allowed, parsed)
        return parsed
    stripped = text.strip()
    bare = _parse_bare(stripped, allowed) if tool_names is not None else None
    return bare if bare is not None else ParsedReply(content=stripped)


def first_call_end(text: str) -> int | None:
    """Return the length of ``text`` up to the end of its first complete tool call, or ``None`` while it has none.

    A call is complete at its closing ``</tool_call>`` tag, at the closing fence of a fenced reply (the
    whole fence, which may hold several calls), or where a bare JSON object that is shaped like a call
    ends. A reply that opens with text, or with a JSON list, never completes here.
    """
    if CALL_OPEN in text:
        close = text.find(CALL_CLOSE, text.index(CALL_OPEN))
        return None if close < 0 else close + len(CALL_CLOSE)
    start = len(text) - len(text.lstrip())
    if text.startswith("```", start):
        close = text.find("```", start + 3)
        return None if close < 0 else close + 3
    if not text.startswith("{", start):
        return None
    try:
        value, end = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    return end if _is_call_shaped(value, None) else None


_CLOSED_CALL = re.compile(re.escape(CALL_OPEN) + r".*?" + re.escape(CALL_CLOSE), re.DOTALL)


def streamable_text(text: str) -> str:
    """Return the part of a reply so far that is surely content, so it can be streamed.

    Closed ``<tool_call>`` blocks are removed, an open one and a possible partial tag at the end are held
    back, and so is leading and trailing whitespace. A reply that starts like bare JSON is held back whole,
    because it may be a call. Once the reply is complete, :func:`parse_reply` gives content that starts
    with this text.
    """
    if text.lstrip().startswith(("{", "[", "```")):
        return ""
    visible = _CLOSED_CALL.sub("", text)
    if CALL_OPEN in visible:
        visible = visible[: visible.index(CALL_OPEN)]
    for size in range(len(CALL_OPEN) - 1, 0, -1):
        if visible.endswith(CALL_OPEN[:size]):
            visible = visible[:-size]
            break
    return visible.strip()


__all__ = ["CALL_CLOSE", "CALL_OPEN", "ParsedReply", "first_call_end", "parse_reply", "streamable_text", "to_template_messages"]
