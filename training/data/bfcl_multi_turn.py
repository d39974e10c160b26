"""BFCL multi-turn tasks replayed against BFCL's own simulated APIs: agent traces with real tool results.

Data flow: a ``multi_turn_base`` task (user turns, the initial state of its APIs, the ground-truth calls of
each turn) -> the task's API objects, built from that state -> per turn: the user message, then each
ground-truth call as its own assistant reply followed by the API's real result as a tool message -> after
the turn's last result, a text reply from ``answer_turn`` -> one :class:`TraceExample` per assistant reply.
Call replies are ``tool_call`` examples; the replies after the results are ``planning`` examples.

Those replies after the results are what single-turn data lacks: a step that has its tool results and
must answer in text instead of calling again. BFCL gives no reference text for them, so the caller
supplies ``answer_turn``: training uses a template reply written from the turn's real results
(:func:`training.data.result_answers.template_answer`) by default, or the base model's own greedy reply
(:func:`training.self_answers.base_model_answerer`).

The APIs are the pure-Python classes in ``bfcl_eval.eval_checker.multi_turn_eval.func_source_code``
(bfcl-eval 2026.3.23); they need no network. Only this module imports from ``bfcl_eval``.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib
import inspect
import json
import logging
from collections.abc import Callable
from typing import Any

from .bfcl import bfcl_data_file, bfcl_function_to_tool
from .examples import SkipCounter, TraceExample, assistant_message, counter_or_new, report_if_owned
from .sources import distribution_file
from .traces import step_examples

logger = logging.getLogger(__name__)

MULTI_TURN_CATEGORY = "multi_turn_base"
"""The one multi-turn category replayed. The ``miss_func``, ``miss_param`` and ``long_context`` variants
test recovery from a missing function, a missing parameter or a huge state, which a plain replay of the
ground truth does not show."""

_API_PACKAGE = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
_API_MODULES = {
    "GorillaFileSystem": "gorilla_file_system",
    "MathAPI": "math_api",
    "MessageAPI": "message_api",
    "TwitterAPI": "posting_api",
    "TicketAPI": "ticket_api",
    "TradingBot": "trading_bot",
    "TravelAPI": "travel_booking",
    "VehicleControlAPI": "vehicle_control",
}
_STATELESS_APIS = frozenset({"MathAPI"})

AnswerTurn = Callable[[list[dict[str, Any]], list[dict[str, Any]]], "str | None"]
"""``(messages, tools) -> reply text``: the reply after a turn's last tool result, or ``None`` when there
is none to use, which ends the trace there."""


class _TaskError(ValueError):
    """A task that cannot be replayed; the message is the skip reason."""


def _api_objects(task: dict[str, Any]) -> dict[str, Any]:
    apis = {}
    for name in task["involved_classes"]:
        if name not in _API_MODULES:
            raise _TaskError(f"unknown API class {name}")
        api = getattr(importlib.import_module(f"{_API_PACKAGE}.{_API_MODULES[name]}"), name)()
        if name not in _STATELESS_APIS:
            api._load_scenario(copy.deepcopy(task["initial_config"].get(name, {})))
        apis[name] = api
    return apis


_DESCRIPTION_MARK = "Tool description: "


def _short_description(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop the paragraph on the API that BFCL repeats before every function's own description.

    It is the same for each function of a class and takes about a third of the tool tokens.
    """
    _, mark, own = doc.get("description", "").partition(_DESCRIPTION_MARK)
    return {**doc, "description": own} if mark else doc


@functools.lru_cache(maxsize=len(_API_MODULES))
def _api_function_docs(api_name: str) -> tuple[dict[str, Any], ...]:
    path = distribution_file("bfcl-eval", f"bfcl_eval/data/multi_turn_func_doc/{_API_MODULES[api_name]}.json")
    with path.open(encoding="utf-8") as handle:
        return tuple(_short_description(json.loads(line)) for line in handle if line.strip())


def _function_docs(task: dict[str, Any]) -> list[dict[str, Any]]:
    excluded = set(task.get("excluded_function", []))
    return [copy.deepcopy(doc) for name in task["involved_classes"] for doc in _api_function_docs(name)
            if doc["name"] not in excluded]


def parse_ground_truth_call(text: str) -> tuple[str, list[Any], dict[str, Any]]:
    """Split a BFCL ground-truth call such as ``"mv(source='a.txt', destination='temp')"`` into its parts.

    Returns:
        ``(function name, positional arguments, keyword arguments)``, every argument a Python literal.

    Raises:
        ValueError: when ``text`` is not one call of a plain name with literal arguments.
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            raise ValueError("not a call of a plain function name")
        positional = [ast.literal_eval(argument) for argument in node.args]
        keywords = {keyword.arg: ast.literal_eval(keyword.value) for keyword in node.keywords if keyword.arg}
    except (SyntaxError, ValueError) as error:
        raise ValueError(f"invalid BFCL ground-truth call {text!r}: {error}") from error
    return node.func.id, positional, keywords


def _run_call(apis: dict[str, Any], text: str) -> tuple[str, dict[str, Any], str]:
    """Execute one ground-truth call; return its name, its arguments by parameter name, and the result as JSON."""
    name, positional, keywords = parse_ground_truth_call(text)
    owners = [api for api in apis.values() if not name.startswith("_") and callable(getattr(api, name, None))]
    if len(owners) != 1:
        raise _TaskError("call to a function no single API defines")
    method = getattr(owners[0], name)
    try:
        arguments = dict(inspect.signature(method).bind(*positional, **keywords).arguments)
    except TypeError as error:
        raise _TaskError("ground-truth arguments do not fit the function") from error
    try:
        result = method(**arguments)
    except Exception as error:  # noqa: BLE001 - BFCL's simulated APIs are third-party code; the task is skipped
        raise _TaskError(f"simulated API raised {type(error).__name__}") from error
    return name, arguments, json.dumps(result, ensure_ascii=False, default=str)


def _tools_for(task: dict[str, Any], called: set[str], max_tools: int) -> list[dict[str, Any]]:
    """Select the task's functions as tools: every called one, then others in file order up to ``max_tools``."""
    docs = _function_docs(task)
    chosen = [doc for doc in docs if doc["name"] in called]
    chosen += [doc for doc in docs if doc["name"] not in called][: max(0, max_tools - len(chosen))]
    try:
        return [bfcl_function_to_tool(doc) for doc in chosen]
    except ValueError as error:
        raise _TaskError("unknown parameter type") from error


def _replay(task: dict[str, Any], turn_calls: list[list[str]], answer_turn: AnswerTurn, max_tools: int,
            skips: SkipCounter) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Replay ``turn_calls`` on fresh APIs; return the conversation (with answers) and its tools."""
    try:
        called = {parse_ground_truth_call(text)[0] for calls in turn_calls for text in calls}
    except ValueError as error:
        raise _TaskError("unparseable ground-truth call") from error
    apis = _api_objects(task)
    tools = _tools_for(task, called, max_tools)
    messages: list[dict[str, Any]] = []
    # strict=False: turn_calls may hold only the first max_turns turns.
    for user_turn, calls in zip(task["question"], turn_calls, strict=False):
        messages += [{"role": message["role"], "content": message["content"]} for message in user_turn]
        for text in calls:
            name, arguments, result = _run_call(apis, text)
            messages.append(assistant_message("", [(name, arguments)]))
            messages.append({"role": "tool", "content": result})
        answer = answer_turn(copy.deepcopy(messages), copy.deepcopy(tools))
        if answer is None or not answer.strip():
            # The calls of this turn stay; the turns after it would need this answer in their history.
            skips.add("bfcl_multi_turn:no usable text answer after a turn's results (trace cut there)", task["id"])
            break
        messages.append(assistant_message(answer))
    return messages, tools


def _ground_truth(max_turns: int | None) -> dict[str, list[list[str]]]:
    path = bfcl_data_file(MULTI_TURN_CATEGORY, possible_answer=True)
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {row["id"]: row["ground_truth"][:max_turns] for row in rows}


def load_bfcl_multi_turn(answer_turn: AnswerTurn, *, limit: int | None = None, max_turns: int | None = 2,
                         max_tools: int = 4, skips: SkipCounter | None = None) -> list[TraceExample]:
    """Replay BFCL ``multi_turn_base`` tasks and cut them into next-step examples.

    Args:
        answer_turn: writes the text reply after each turn's last tool result (see the module docstring).
        limit: replay at most this many tasks, in file order.
        max_turns: replay at most this many user turns per task (``None``: all of them). Every turn makes
            the prompts of the later ones longer.
        max_tools: offer at most this many of the task's functions, the called ones first (a task that
            calls more gets them all). A task's APIs define 9 to about 40 functions, whose schemas alone take
            thousands of tokens. With the defaults the median example renders to about 760 tokens in
            Qwen2.5's chat template, so train with ``max_length`` near 1,024 to keep most of them.
        skips: counter for rejected tasks; a fresh one is created (and its counts logged) when ``None``.
    """
    sizes = (("limit", limit), ("max_turns", max_turns))
    problems = [f"{name} must be None or >= 1, got {value}" for name, value in sizes if value is not None and value < 1]
    if max_tools < 1:
        problems.append(f"max_tools must be >= 1, got {max_tools}")
    if problems:
        raise ValueError("Invalid load_bfcl_multi_turn arguments: " + "; ".join(problems))
    counter = counter_or_new(skips)
    answers = _ground_truth(max_turns)
    path = bfcl_data_file(MULTI_TURN_CATEGORY)
    with path.open(encoding="utf-8") as handle:
        tasks = [json.loads(line) for line in handle if line.strip()][:limit]
    examples: list[TraceExample] = []
    for task in tasks:
        turn_calls = answers.get(task["id"])
        if not turn_calls or any(not calls for calls in turn_calls):
            counter.add("bfcl_multi_turn:turn without ground-truth calls", task["id"])
            continue
        try:
            messages, tools = _replay(task, turn_calls, answer_turn, max_tools, counter)
        except _TaskError as error:
            counter.add(f"bfcl_multi_turn:{error}", task["id"])
            continue
        examples += step_examples(messages, tools, f"bfcl:{MULTI_TURN_CATEGORY}", task["id"], counter)
    logger.info("loaded %d examples from %d BFCL multi-turn tasks (%d skipped)", len(examples), len(tasks),
                sum(count for reason, count in counter.items() if reason.startswith("bfcl_multi_turn:")))
    if examples and not any(example.mode == "planning" for example in examples):
        logger.warning("No replayed BFCL turn got a usable text answer, so these examples show only calls after "
                       "tool results; trained on alone, they teach a model to call again instead of answering")
    report_if_owned(counter, skips, "skipped BFCL multi-turn tasks")
    return examples


__all__ = ["MULTI_TURN_CATEGORY", "AnswerTurn", "load_bfcl_multi_turn", "parse_ground_truth_call"]
