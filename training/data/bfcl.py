"""BFCL (Berkeley Function Calling Leaderboard) items as tool-call examples and as evaluation items.

Data flow: the ``bfcl-eval`` distribution's ``bfcl_eval/data/BFCL_v4_<category>.json`` (one item a line:
``question`` turns and ``function`` docs) and ``possible_answer/BFCL_v4_<category>.json`` (``ground_truth``:
one ``{function_name: {argument: [allowed values...]}}`` entry per expected call) -> function docs
converted to OpenAI JSON-Schema tools -> a :class:`TraceExample` whose target calls each function with
the first allowed value of every argument, or a :class:`BfclEvalItem` that keeps the full ground truth.

The live categories and the irrelevance categories are held out for evaluation: :func:`load_bfcl`
raises ``ValueError`` for them unless ``split="eval"``. The files are found through
``importlib.metadata``, so ``bfcl_eval`` (and its dependencies) is never imported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .examples import (
    SkipCounter,
    TraceExample,
    assistant_message,
    assistant_target,
    counter_or_new,
    function_tool,
    report_if_owned,
)
from .sources import distribution_file

logger = logging.getLogger(__name__)

BFCL_DISTRIBUTION = "bfcl-eval"
_FILE_PREFIX = "BFCL_v4_"

TRAIN_BFCL_CATEGORIES: tuple[str, ...] = (
    "simple_python", "multiple", "parallel", "parallel_multiple", "simple_java", "simple_javascript",
)
EVAL_BFCL_CATEGORIES: tuple[str, ...] = ("live_simple", "irrelevance")
# Single-turn categories whose ground truth is a list of calls. The multi-turn, memory, web-search and
# format-sensitivity categories store other answer formats and are not supported here.
_EVAL_ONLY_CATEGORIES: tuple[str, ...] = (
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
    "live_irrelevance", "live_relevance", "irrelevance",
)
SUPPORTED_BFCL_CATEGORIES: tuple[str, ...] = TRAIN_BFCL_CATEGORIES + _EVAL_ONLY_CATEGORIES
# Categories with no possible_answer file: irrelevance items expect no call, relevance items expect some call.
_NO_ANSWER_CATEGORIES: dict[str, bool] = {"irrelevance": False, "live_irrelevance": False, "live_relevance": True}

# BFCL parameter types (Python, Java and JavaScript names) -> JSON Schema types. ``None`` means "any
# value", written as a schema without "type". BFCL's own OpenAI handler maps "any" to "string" instead.
_TYPE_TO_JSON_SCHEMA: dict[str, str | None] = {
    "dict": "object", "object": "object", "HashMap": "object", "Hashtable": "object",
    "float": "number", "double": "number", "number": "number",
    "integer": "integer", "int": "integer", "long": "integer", "short": "integer", "byte": "integer",
    "Bigint": "integer",
    "string": "string", "String": "string", "char": "string",
    "boolean": "boolean", "Boolean": "boolean", "bool": "boolean",
    "array": "array", "Array": "array", "ArrayList": "array", "list": "array", "tuple": "array",
    "Queue": "array", "Stack": "array", "Set": "array",
    "any": None, "Any": None, "": None,
}
# Keys that BFCL adds to a parameter and JSON Schema does not define ("required" already lists the same).
_NON_SCHEMA_KEYS = frozenset({"optional"})
_OMITTED = ""  # An allowed value of "" means the argument may be left out.


@dataclass(frozen=True)
class BfclEvalItem:
    """A BFCL item with its full ground truth, for checking a model's calls.

    Attributes:
        id: the BFCL item id, e.g. ``"live_simple_0-0-0"``.
        category: the BFCL category, e.g. ``"live_simple"``.
        messages: the question as chat-template dicts.
        tools: the function docs converted by :func:`bfcl_function_to_tool`.
        ground_truth: BFCL's possible answers unchanged: one ``{function_name: {argument: [allowed
            values...]}}`` dict per expected call, where ``""`` among the allowed values means "may be
            omitted". Empty for categories without a possible_answer file.
        expects_call: ``False`` for irrelevance categories (the correct reply has no call), else ``True``.
    """

    id: str
    category: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    ground_truth: list[dict[str, dict[str, list[Any]]]]
    expects_call: bool


class _RowError(ValueError):
    """A BFCL row that cannot become an example; the message is the skip reason."""


def is_eval_only_bfcl_category(category: str) -> bool:
    """Return whether a category is held out for evaluation (every ``live_*`` category and ``irrelevance``)."""
    return category.startswith("live_") or category == "irrelevance"


def bfcl_data_file(category: str, *, possible_answer: bool = False) -> Path:
    """Return the path of a category's question file (or possible-answer file) inside ``bfcl-eval``.

    Raises:
        ModuleNotFoundError: when the ``bfcl-eval`` distribution is not installed.
        FileNotFoundError: when the installed version has no such file.
    """
    folder = "bfcl_eval/data/possible_answer" if possible_answer else "bfcl_eval/data"
    path = distribution_file(BFCL_DISTRIBUTION, f"{folder}/{_FILE_PREFIX}{category}.json")
    return path


def bfcl_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Convert a BFCL parameter schema (its ``type`` names and nested ``properties``/``items``) to JSON Schema.

    Raises:
        ValueError: for a type name with no JSON Schema equivalent (the message names it).
    """
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _NON_SCHEMA_KEYS:
            continue
        if key == "type":
            if value not in _TYPE_TO_JSON_SCHEMA:
                raise ValueError(f"unknown BFCL parameter type {value!r}; known types: {sorted(_TYPE_TO_JSON_SCHEMA)}")
            if _TYPE_TO_JSON_SCHEMA[value] is not None:
                converted["type"] = _TYPE_TO_JSON_SCHEMA[value]
        elif key == "properties" and isinstance(value, dict):
            converted["properties"] = {name: bfcl_schema(child) for name, child in value.items()}
        elif key == "items" and isinstance(value, dict):
            converted["items"] = bfcl_schema(value)
        else:
            converted[key] = value
    return converted


def bfcl_function_to_tool(function: dict[str, Any]) -> dict[str, Any]:
    """Convert one BFCL function doc to an OpenAI-format tool with a JSON-Schema ``parameters`` object.

    Raises:
        ValueError: for an unknown parameter type.
    """
    parameters = bfcl_schema(function.get("parameters") or {"type": "dict", "properties": {}})
    parameters["type"] = "object"
    parameters.setdefault("properties", {})
    return function_tool({"name": function["name"], "description": function.get("description", ""),
                          "parameters": parameters})


def load_bfcl(categories: Sequence[str] = TRAIN_BFCL_CATEGORIES, *, split: Literal["train", "eval"] = "train",
              skips: SkipCounter | None = None) -> list[TraceExample]:
    """Load BFCL items as tool-call examples whose target makes the ground-truth calls.

    Each argument takes the first allowed value that is not ``""``. An argument whose allowed values
    are all ``""`` is left out. For ``object`` parameters, and ``array`` parameters of objects, BFCL lists
    allowed values per key one level down, so the first of those is taken too.

    NOTE: BFCL's own Java and JavaScript evaluation expects every argument as a string in Java or
    JavaScript syntax. Here the values keep their JSON types, matching the converted schema, so the
    simple_java and simple_javascript targets do not follow that protocol.

    Args:
        categories: BFCL category names, e.g. :data:`TRAIN_BFCL_CATEGORIES`.
        split: ``"train"`` rejects the evaluation categories; ``"eval"`` allows them.
        skips: counter for rejected items; a fresh one is created (and its counts logged) when ``None``.

    Raises:
        ValueError: for an unsupported category, an evaluation category with ``split="train"``, or a
            category with no possible answers (irrelevance, live_irrelevance and live_relevance have no
            reference reply, so use :func:`load_bfcl_eval` for them).
    """
    _check_categories(categories, split)
    counter = counter_or_new(skips)
    examples: list[TraceExample] = []
    for category in dict.fromkeys(categories):
        answers = _read_answers(category)
        for item in _read_items(category):
            example = _example_from_item(item, answers.get(item["id"]), category, counter)
            if example is not None:
                examples.append(example)
    logger.info("loaded %d BFCL examples from %s", len(examples), ", ".join(dict.fromkeys(categories)))
    report_if_owned(counter, skips, "skipped BFCL items")
    return examples


def load_bfcl_eval(category: str, *, skips: SkipCounter | None = None) -> list[BfclEvalItem]:
    """Load a BFCL category with its full ground truth, for accuracy checks of generated calls.

    Any supported category is accepted, so the training categories can serve as a check too.

    Raises:
        ValueError: for an unsupported category.
    """
    _check_supported(category)
    counter = counter_or_new(skips)
    answers = _read_answers(category) if category not in _NO_ANSWER_CATEGORIES else {}
    items = []
    for item in _read_items(category):
        try:
            messages, tools = _question_and_tools(item)
        except _RowError as error:
            counter.add(f"bfcl:{error}", item.get("id", "?"))
            continue
        if category in _NO_ANSWER_CATEGORIES:
            ground_truth, expects_call = [], _NO_ANSWER_CATEGORIES[category]
        elif item["id"] in answers:
            ground_truth, expects_call = answers[item["id"]], True
        else:
            counter.add("bfcl:no possible answer", item["id"])
            continue
        items.append(BfclEvalItem(id=item["id"], category=category, messages=messages, tools=tools,
                                  ground_truth=ground_truth, expects_call=expects_call))
    report_if_owned(counter, skips, f"skipped BFCL {category} items")
    return items


def _check_supported(category: str) -> None:
    if category not in SUPPORTED_BFCL_CATEGORIES:
        raise ValueError(
            f"Unsupported BFCL category {category!r}; "
            f"supported single-turn categories: {list(SUPPORTED_BFCL_CATEGORIES)}"
        )


def _check_categories(categories: Iterable[str], split: str) -> None:
    if isinstance(categories, str):
        raise ValueError(f"categories must be a sequence of names, got the string {categories!r}; wrap it in a list")
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    for category in categories:
        _check_supported(category)
        if split == "train" and is_eval_only_bfcl_category(category):
            raise ValueError(
                f"BFCL category {category!r} is held out for evaluation and must not be used for training; "
                f"pass split='eval' to load it for evaluation, or train on {list(TRAIN_BFCL_CATEGORIES)}"
            )
        if category in _NO_ANSWER_CATEGORIES:
            raise ValueError(
                f"BFCL category {category!r} has no possible answers, so it has no target reply; "
                "use load_bfcl_eval() to check that the model makes no call (or, for live_relevance, some call)"
            )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _read_items(category: str) -> list[dict[str, Any]]:
    return _read_jsonl(bfcl_data_file(category))


def _read_answers(category: str) -> dict[str, list[dict[str, dict[str, list[Any]]]]]:
    return {row["id"]: row["ground_truth"] for row in _read_jsonl(bfcl_data_file(category, possible_answer=True))}


def _question_and_tools(item: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if len(item["question"]) != 1:
        raise _RowError("multi-turn question")
    try:
        tools = [bfcl_function_to_tool(function) for function in item["function"]]
    except ValueError as error:
        raise _RowError("unknown parameter type") from error
    messages = [{"role": message["role"], "content": message["content"]} for message in item["question"][0]]
    return messages, tools


def _example_from_item(item: dict[str, Any], ground_truth: list[dict[str, Any]] | None, category: str,
                       skips: SkipCounter) -> TraceExample | None:
    if ground_truth is None:
        skips.add("bfcl:no possible answer", item["id"])
        return None
    try:
        messages, tools = _question_and_tools(item)
        calls = [_call_from_answer(answer, tools) for answer in ground_truth]
    except _RowError as error:
        skips.add(f"bfcl:{error}", item["id"])
        return None
    if not calls:
        skips.add("bfcl:empty ground truth", item["id"])
        return None
    return TraceExample(messages=messages, target=assistant_target(assistant_message("", calls)), tools=tools,
                        mode="tool_call", source=f"bfcl:{category}", trace_id=item["id"])


def _call_from_answer(answer: dict[str, Any], tools: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    if not isinstance(answer, dict) or len(answer) != 1:
        raise _RowError("malformed ground truth")
    (name, allowed_by_argument), = answer.items()
    functions = {tool["function"]["name"]: tool["function"] for tool in tools}
    if name not in functions:
        raise _RowError("ground truth calls a function not in the item")
    parameters = functions[name]["parameters"]
    properties = parameters.get("properties", {})
    arguments = {}
    for argument, allowed in allowed_by_argument.items():
        if argument not in properties:
            raise _RowError("ground truth argument not in the function schema")
        present, value = _first_allowed(allowed)
        if present:
            arguments[argument] = _resolve_nested(value, properties[argument])
    if any(required not in arguments for required in parameters.get("required", [])):
        raise _RowError("ground truth omits a required argument")
    return name, arguments


def _first_allowed(allowed: Any) -> tuple[bool, Any]:
    """Return ``(True, value)`` for the first allowed value that is not ``""``, or ``(False, None)``."""
    if not isinstance(allowed, list):
        raise _RowError("malformed ground truth")
    for value in allowed:
        if value != _OMITTED:
            return True, value
    return False, None


def _resolve_nested(value: Any, schema: dict[str, Any]) -> Any:
    """Pick allowed values one level down, where BFCL's checker reads them (objects, arrays of objects)."""
    if schema.get("type") == "object" and isinstance(value, dict):
        return _resolve_object(value)
    items = schema.get("items", {})
    if schema.get("type") == "array" and items.get("type") == "object" and isinstance(value, list):
        return [_resolve_object(element) if isinstance(element, dict) else element for element in value]
    return value


def _resolve_object(value: dict[str, Any]) -> dict[str, Any]:
    resolved = {}
    for key, allowed in value.items():
        if not isinstance(allowed, list):
            resolved[key] = allowed  # A few items give a plain value where a list of allowed values belongs.
            continue
        present, chosen = _first_allowed(allowed)
        if present:
            resolved[key] = chosen
    return resolved


__all__ = [
    "EVAL_BFCL_CATEGORIES",
    "SUPPORTED_BFCL_CATEGORIES",
    "TRAIN_BFCL_CATEGORIES",
    "BfclEvalItem",
    "bfcl_data_file",
    "bfcl_function_to_tool",
    "bfcl_schema",
    "is_eval_only_bfcl_category",
    "load_bfcl",
    "load_bfcl_eval",
]
