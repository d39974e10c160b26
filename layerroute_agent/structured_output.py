"""Structured output: schemas into the prompt, replies back out as validated objects.

Data flow: a pydantic class, ``TypedDict`` or JSON Schema dict -> :class:`OutputSchema` (its JSON Schema and
its validator) -> with ``json_schema``/``json_mode``, a system instruction that contains the schema and a reply
forced to open with ``{``; with ``function_calling``, a forced call to a tool made from the schema -> the
reply -> :class:`StructuredOutputParser` -> a pydantic instance or a dict, or an
:class:`~langchain_core.exceptions.OutputParserException` that contains the raw reply.

Pydantic classes (v2 and ``pydantic.v1``) are validated by pydantic. ``TypedDict`` classes and dict schemas are
checked by :func:`schema_errors`, a small JSON Schema subset checker (``jsonschema`` is not a dependency).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.output_parsers import BaseOutputParser
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ConfigDict

Method = Literal["json_schema", "function_calling", "json_mode"]
METHODS: tuple[str, ...] = ("json_schema", "function_calling", "json_mode")

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool)
    or isinstance(v, float) and v.is_integer(),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    if not ref.startswith("#/"):
        raise ValueError(f"$ref {ref!r} is not supported; only local references such as '#/$defs/Name' are")
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    return _resolve(target, root)


def schema_errors(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None, path: str = "$"
                  ) -> list[str]:
    """Return what makes ``value`` break ``schema``, one message per problem (empty when it fits).

    Checked keywords: ``type``, ``enum``, ``const``, ``properties``, ``required``, ``additionalProperties:
    false``, ``items``, ``anyOf``/``oneOf``/``allOf`` and local ``$ref``. Others (formats, bounds, patterns)
    are not checked. One departure from JSON Schema: a property that is not required may be ``null``, because
    LangChain's ``TypedDict`` conversion drops ``Optional`` and small models write ``null`` for "no value".
    """
    root = schema if root is None else root
    schema = _resolve(schema, root)
    for key in ("anyOf", "oneOf"):
        if key in schema and not any(not schema_errors(value, option, root, path) for option in schema[key]):
            return [f"{path}: {json.dumps(value)[:80]} matches none of the {key} options"]
    problems = [p for part in schema.get("allOf", []) for p in schema_errors(value, part, root, path)]
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_JSON_TYPES.get(name, lambda v: True)(value) for name in names):
            return problems + [f"{path}: expected {' or '.join(names)}, got {json.dumps(value)[:80]}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {json.dumps(value)[:80]} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{path}: expected {json.dumps(schema['const'])}, got {json.dumps(value)[:80]}")
    if isinstance(value, dict):
        problems += _object_errors(value, schema, root, path)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += schema_errors(item, schema["items"], root, f"{path}[{i}]")
    return problems


def _object_errors(value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], path: str) -> list[str]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = schema.get("required", [])
    problems = [f"{path}: missing required property {name!r}" for name in required if name not in value]
    if schema.get("additionalProperties") is False:
        problems += [f"{path}: unexpected property {name!r}" for name in value if name not in properties]
    for name, item in value.items():
        if name not in properties or item is None and name not in required:
            continue
        problems += schema_errors(item, properties[name], root, f"{path}.{name}")
    return problems


@dataclass(frozen=True)
class OutputSchema:
    """A structured-output schema in the two forms this package needs."""

    name: str
    """Name used for the tool in ``function_calling`` (the schema's title)."""
    json_schema: dict[str, Any] | None
    """The JSON Schema rendered into the prompt; ``None`` only for ``json_mode`` without a schema."""
    pydantic_class: type | None
    """The pydantic class (v2 or ``pydantic.v1``) that validates and builds the result, if any."""
    source: Any
    """The schema as the caller passed it."""

    @classmethod
    def from_schema(cls, schema: Any) -> OutputSchema:
        """Build from a pydantic class, a ``TypedDict``, a JSON Schema dict or an OpenAI tool dict.

        Raises:
            ValueError: for a schema LangChain cannot convert, or a JSON Schema dict without a ``title``.
        """
        try:
            json_schema = convert_to_json_schema(schema)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"Cannot use {schema!r} as an output schema: {err}. Pass a pydantic class, a TypedDict, or a JSON "
                "Schema dict with a top-level 'title'"
            ) from err
        is_model = isinstance(schema, type) and is_basemodel_subclass(schema)
        return cls(name=str(json_schema.get("title", "output")), json_schema=json_schema,
                   pydantic_class=schema if is_model else None, source=schema)

    def instruction(self) -> str:
        """Return the system-message text that requests a JSON reply (with the schema, when there is one)."""
        if self.json_schema is None:
            return "Reply with one JSON object and nothing else."
        return ("Reply with one JSON object and nothing else. The object must follow this JSON Schema:\n"
                + json.dumps(self.json_schema, ensure_ascii=False))

    def validate(self, value: Any, raw: str) -> Any:
        """Return ``value`` as the schema's result type, or raise ``OutputParserException`` showing ``raw``."""
        if self.pydantic_class is not None:
            try:
                if hasattr(self.pydantic_class, "model_validate"):
                    return self.pydantic_class.model_validate(value)
                return self.pydantic_class.parse_obj(value)  # pydantic.v1 class
            except Exception as err:  # pydantic v1 and v2 raise different ValidationError classes
                raise _parsing_error(f"does not fit {self.name}: {err}", raw) from err
        if not isinstance(value, dict):
            raise _parsing_error(f"is a JSON {type(value).__name__}, not an object", raw)
        problems = schema_errors(value, self.json_schema) if self.json_schema is not None else []
        if problems:
            raise _parsing_error(f"does not fit {self.name}: " + "; ".join(problems), raw)
        return value


def _parsing_error(reason: str, raw: str) -> OutputParserException:
    return OutputParserException(f"The model's reply {reason}. Raw reply: {raw!r}", llm_output=raw)


def with_instruction(messages: list[BaseMessage], instruction: str) -> list[BaseMessage]:
    """Return ``messages`` with ``instruction`` appended to the leading system message, or in a new one."""
    if messages and isinstance(messages[0], SystemMessage):
        first = messages[0]
        text = first.text if not isinstance(first.content, str) else first.content
        return [SystemMessage(text.rstrip() + "\n\n" + instruction), *messages[1:]]
    return [SystemMessage(instruction), *messages]


def _reply_text(message: BaseMessage) -> str:
    return message.text if isinstance(message, AIMessage) else str(message.content)


class StructuredOutputParser(BaseOutputParser[Any]):
    """Turn a reply into the schema's result, from the content (JSON modes) or the first tool call.

    Raises ``OutputParserException`` with the raw reply when the reply is not JSON, has no call, or does not
    fit the schema, so a bad reply never becomes ``None``. While streaming, it emits one result when the
    reply is complete.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    target_schema: OutputSchema
    from_tool_call: bool = False

    @property
    def _type(self) -> str:
        return "layerroute_structured_output"

    def parse_result(self, result: list[Generation], *, partial: bool = False) -> Any:
        generation = result[0]
        if not isinstance(generation, ChatGeneration):
            return self.parse(generation.text)
        message = generation.message
        if not self.from_tool_call:
            return self.parse(_reply_text(message))
        calls = getattr(message, "tool_calls", [])
        if not calls:
            invalid = [f"{c.get('error')}: {c.get('args')}" for c in getattr(message, "invalid_tool_calls", [])]
            raw = "\n".join([_reply_text(message), *invalid]).strip()
            raise _parsing_error(f"has no valid {self.target_schema.name} tool call", raw)
        args = calls[0]["args"]
        return self.target_schema.validate(args, json.dumps(args, ensure_ascii=False))

    def parse(self, text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise _parsing_error(f"is not valid JSON ({err})", text) from err
        return self.target_schema.validate(value, text)


def response_format_for(output_schema: OutputSchema) -> dict[str, Any]:
    """Return the OpenAI-style ``response_format`` call argument that requests this schema."""
    if output_schema.json_schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": output_schema.name, "schema": output_schema.json_schema}}


def instruction_for(response_format: Any) -> str | None:
    """Return the system instruction for a ``response_format`` call argument (``None`` when there is none).

    Accepts OpenAI's forms: ``{"type": "text"}``, ``{"type": "json_object"}`` and
    ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}``.
    """
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputSchema("output", None, None, None).instruction()
    spec = response_format.get("json_schema") if kind == "json_schema" else None
    if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
        schema = {"title": spec.get("name", "output"), **spec["schema"]}
        return OutputSchema(str(schema["title"]), schema, None, None).instruction()
    raise ValueError(
        f"response_format {response_format!r} is not supported; use {{'type': 'json_object'}} or "
        "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}}"
    )


__all__ = ["METHODS", "Method", "OutputSchema", "StructuredOutputParser", "instruction_for", "response_format_for",
           "schema_errors", "with_instruction"]
