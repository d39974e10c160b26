"""Run a tool-calling agent on ``LayerRouteChat`` and print the compute of every model call.

Run it from the repository root, with the project's virtualenv active::

    python examples/tool_agent.py
    python examples/tool_agent.py --driver loop --json episode.json

The agent works on the task with three local tools: ``get_weather`` (a fixed table of four cities),
``convert_currency`` (fixed sample exchange rates) and ``calculator`` (arithmetic parsed with ``ast``).
It prints each model reply as it arrives, with its tool calls and arguments, each tool result and the
final answer. At the end it prints the episode table: one row per model call with its mode
(``tool_call`` or ``planning``), the decoder blocks skipped, and the FLOPs executed against the FLOPs
of the same call at full depth.

Two drivers run the same agent. ``--driver loop`` is a plain langchain-core loop: ``bind_tools``,
``invoke``, run each tool call, append a ``ToolMessage``, repeat. ``--driver create_agent`` uses
``langchain.agents.create_agent`` (the ``agents`` extra, ``langchain>=1.0``). ``--driver auto``
(the default) picks ``create_agent`` when ``langchain`` is installed, else the loop.

The exit status is 0 when the agent gave a final answer, and 1 when it stopped without one (at
``--max-steps``, or on an empty reply).

NOTE: the prompt is tuned for the default task on Qwen2.5-Coder 0.5B with untrained routers. Other
two-part questions like it usually work, but with a single-part task such as "What is 12 * (3 + 4)?"
the model repeats the same tool call until ``--max-steps``.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.tool import ToolCall, tool_call
from langchain_core.tools import BaseTool, tool
from pydantic import ValidationError

from layerroute_agent import DEFAULT_MODEL, ComputeReportHandler, EpisodeReport, LayerRouteChat
from layerroute_agent.runtime import DEFAULT_ADAPTER

DEFAULT_TASK = "What is the weather in Lyon right now, and how much is 20 EUR in USD?"
DEFAULT_MAX_STEPS = 6

# Sample current weather: temperature in degrees Celsius and conditions. Keys are lower case.
WEATHER_TABLE: dict[str, tuple[float, str]] = {
    "lyon": (14.0, "partly cloudy"),
    "paris": (12.0, "light rain"),
    "berlin": (9.0, "overcast"),
    "tokyo": (18.0, "clear sky"),
}

# Fixed sample exchange rates, not market data: the value of one unit of each currency in US dollars.
USD_PER_UNIT: dict[str, float] = {
    "USD": 1.0,
    "EUR": 1.08,
    "GBP": 1.27,
    "CHF": 1.12,
    "JPY": 0.0067,
}

# Bounds that keep one expression cheap to evaluate and print: 2 ** 1000 is fine, 9 ** 9 ** 9 is rejected.
MAX_EXPRESSION_CHARS = 200
MAX_RESULT_DIGITS = 1000


def _format_number(value: float) -> str:
    """Format a number without a trailing ``.0`` and with at most 10 significant digits."""
    if isinstance(value, int):
        return str(value)
    return format(value, ".10g")


@tool(parse_docstring=True)
def get_weather(city: str) -> str:
    """Get the current weather in a city: temperature in degrees Celsius and conditions.

    Args:
        city: Name of the city.
    """
    key = city.strip().lower()
    if key not in WEATHER_TABLE:
        known = ", ".join(name.title() for name in sorted(WEATHER_TABLE))
        return f"Error: no weather data for city {city!r}. Known cities: {known}."
    celsius, conditions = WEATHER_TABLE[key]
    return f"Weather in {key.title()}: {_format_number(celsius)} C, {conditions}."


def convert_amount(amount: float, from_currency: str, to_currency: str) -> float:
    """Convert ``amount`` between two codes of :data:`USD_PER_UNIT`. Raises ``KeyError`` for an unknown code."""
    return amount * USD_PER_UNIT[from_currency] / USD_PER_UNIT[to_currency]


@tool(parse_docstring=True)
def convert_currency(amount: float, from_currency: str, to_currency: str) -> str:
    """Convert an amount of money from one currency to another at fixed sample rates.

    Args:
        amount: Amount of money to convert, as a number.
        from_currency: Three-letter code of the currency the amount is in.
        to_currency: Three-letter code of the currency to convert to.
    """
    source, target = from_currency.strip().upper(), to_currency.strip().upper()
    unknown = [code for code in (source, target) if code not in USD_PER_UNIT]
    if unknown:
        known = ", ".join(sorted(USD_PER_UNIT))
        return f"Error: unknown currency code {unknown[0]!r}. Known codes: {known}."
    converted = convert_amount(amount, source, target)
    rate = convert_amount(1.0, source, target)
    return (
        f"{_format_number(amount)} {source} = {converted:.2f} {target} "
        f"(fixed sample rate: 1 {source} = {rate:.4f} {target})."
    )


def _power(base: int | float, exponent: int | float) -> int | float:
    """Return ``base ** exponent``, or raise ``ValueError`` if it has more than :data:`MAX_RESULT_DIGITS` digits."""
    if exponent > 0 and abs(base) > 1 and exponent * math.log10(abs(base)) > MAX_RESULT_DIGITS:
        raise ValueError(f"a power in the expression has more than {MAX_RESULT_DIGITS} digits")
    return base**exponent


_BINARY_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}
_UNARY_OPERATORS: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def _evaluate_node(node: ast.AST) -> int | float:
    """Evaluate one node of a parsed arithmetic expression, or raise ``ValueError`` for a non-arithmetic node."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPERATORS:
        return _UNARY_OPERATORS[type(node.op)](_evaluate_node(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPERATORS:
        left, right = _evaluate_node(node.left), _evaluate_node(node.right)
        return _BINARY_OPERATORS[type(node.op)](left, right)
    raise ValueError(f"{type(node).__name__} is not allowed. Use numbers, + - * / // % ** and parentheses")


def evaluate_arithmetic(expression: str) -> int | float:
    """Evaluate an arithmetic expression without ``eval``.

    Raises:
        ValueError: for syntax errors, names, calls, too long input, a complex result or one with more than
            :data:`MAX_RESULT_DIGITS` digits.
        ArithmeticError: for division by zero and results too large for a float.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"invalid syntax: {err.msg}") from err
    value = _evaluate_node(tree.body)
    if isinstance(value, complex):
        raise ValueError("the result is a complex number")
    if isinstance(value, int) and abs(value) >= 10**MAX_RESULT_DIGITS:
        raise ValueError(f"the result has more than {MAX_RESULT_DIGITS} digits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ArithmeticError("the result is too large for a float")
    return value


@tool(parse_docstring=True)
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with numbers, + - * / // % ** and parentheses.

    Args:
        expression: Arithmetic expression to evaluate.
    """
    try:
        value = evaluate_arithmetic(expression)
    except (ValueError, ArithmeticError) as err:
        return f"Error: cannot evaluate {expression!r}: {err}."
    return f"{expression.strip()} = {_format_number(value)}"


TOOLS: list[BaseTool] = [get_weather, convert_currency, calculator]

# The prompt teaches the tool-calling pattern with one worked example, in two forms. Without both, Qwen2.5-Coder
# 0.5B (greedy decoding, untrained routers, the default task) fails:
# - With only the instructions, it writes calls as bare JSON, repeats every tool after the first result,
#   and never gives a final answer.
# - The example in the system prompt, with the <tool_call> tags written out, makes it call one tool per
#   reply. Without it the model puts both calls in one reply.
# - The example conversation (EXAMPLE_QUESTION through its answer) makes it stop calling tools and answer
#   once both results are in. Without it the model repeats the last call until --max-steps.
# The example uses Paris, GBP and JPY, unlike the default task, so a call copied from it is easy to spot.
EXAMPLE_QUESTION = "What is the weather in Paris, and how much is 5 GBP in JPY?"
EXAMPLE_CALLS: list[ToolCall] = [
    tool_call(name="get_weather", args={"city": "Paris"}, id="example_call_1"),
    tool_call(name="convert_currency", args={"amount": 5, "from_currency": "GBP", "to_currency": "JPY"},
              id="example_call_2"),
]


def example_answer() -> str:
    """Return the final answer to :data:`EXAMPLE_QUESTION`, built from the same tables as the tools."""
    celsius, conditions = WEATHER_TABLE["paris"]
    yen = convert_amount(5, "GBP", "JPY")
    return (
        f"In Paris it is {_format_number(celsius)} C with {conditions}, "
        f"and 5 GBP is {yen:.2f} JPY at the fixed sample rate."
    )


def _render_call(call: ToolCall) -> str:
    """Render a call in the format that Qwen2.5's chat template specifies for tool calls."""
    return "<tool_call>\n" + json.dumps({"name": call["name"], "arguments": call["args"]}) + "\n</tool_call>"


def build_system_prompt() -> str:
    """Return the system prompt: one tool call per reply, shown on :data:`EXAMPLE_QUESTION`."""
    first, second = EXAMPLE_CALLS
    return "\n".join([
        "You are a helpful assistant that answers with tools. Make one tool call per reply, "
        "with the exact values from the question.",
        f'Example: for "{EXAMPLE_QUESTION}" you first reply',
        _render_call(first),
        "then, after its <tool_response>, you reply",
        _render_call(second),
        "then, after its <tool_response>, you reply",
        example_answer(),
    ])


def example_conversation() -> list[BaseMessage]:
    """Return :data:`EXAMPLE_QUESTION` answered with the real tools, as messages to put before the task."""
    messages: list[BaseMessage] = [HumanMessage(EXAMPLE_QUESTION)]
    tools_by_name = {tool_.name: tool_ for tool_ in TOOLS}
    for call in EXAMPLE_CALLS:
        messages.append(AIMessage(content="", tool_calls=[call]))
        messages.append(tools_by_name[call["name"]].invoke(call))
    messages.append(AIMessage(content=example_answer()))
    return messages


SYSTEM_PROMPT = build_system_prompt()


@dataclass
class AgentRun:
    """Result of one agent run: the final answer, the tool calls executed and the compute report."""

    final_answer: str = ""
    tool_call_log: list[dict[str, Any]] = field(default_factory=list)
    report: EpisodeReport = field(default_factory=EpisodeReport)

    @property
    def finished(self) -> bool:
        """Whether the agent ended with a non-empty final answer."""
        return bool(self.final_answer.strip())


def print_model_reply(step: int, message: AIMessage) -> None:
    """Print one model reply: its compute, then its tool calls or its text."""
    compute = message.response_metadata.get("compute", {})
    skipped = ",".join(map(str, compute.get("blocks_skipped", []))) or "none"
    print(
        f"[step {step}] model call, mode {compute.get('mode', '?')}, blocks skipped: {skipped}, "
        f"GFLOPs run {compute.get('flops_executed', 0) / 1e9:.2f} of {compute.get('flops_full', 0) / 1e9:.2f} full",
        flush=True,
    )
    for call in message.tool_calls:
        print(f"  tool call: {call['name']}({json.dumps(call['args'])})", flush=True)
    for call in message.invalid_tool_calls:
        print(f"  invalid tool call: {call.get('error')} (raw: {call.get('args')!r})", flush=True)
    if not message.tool_calls and not message.invalid_tool_calls:
        print(f"  final answer: {message.text}", flush=True)


def print_tool_result(message: ToolMessage) -> None:
    """Print one tool result."""
    print(f"  tool result ({message.name}): {message.text}", flush=True)


def _log_entry(call: ToolCall, result: ToolMessage) -> dict[str, Any]:
    return {"name": call["name"], "args": call["args"], "result": result.text}


def run_tool_call(call: ToolCall, tools_by_name: dict[str, BaseTool]) -> ToolMessage:
    """Run one tool call and return its ``ToolMessage``, an error message (not an exception) for invalid arguments."""
    try:
        return tools_by_name[call["name"]].invoke(call)
    except ValidationError as err:
        return ToolMessage(content=f"Error: invalid arguments for {call['name']}: {err}", name=call["name"],
                           tool_call_id=call["id"], status="error")


def _invalid_call_messages(message: AIMessage) -> list[ToolMessage]:
    """Tell the model why each of its unusable tool calls was rejected, so it can try again."""
    return [
        ToolMessage(content=f"Error: invalid tool call: {call.get('error')}", name=call.get("name") or "",
                    tool_call_id=call.get("id") or "", status="error")
        for call in message.invalid_tool_calls
    ]


def run_with_loop(llm: LayerRouteChat, tools: Sequence[BaseTool], task: str, max_steps: int) -> AgentRun:
    """Run the agent as a plain langchain-core loop of ``invoke`` and tool calls, at most ``max_steps`` model calls."""
    llm.reset_compute_report()
    model = llm.bind_tools(tools)
    tools_by_name = {tool_.name: tool_ for tool_ in tools}
    messages: list[BaseMessage] = [SystemMessage(SYSTEM_PROMPT), *example_conversation(), HumanMessage(task)]
    run = AgentRun()

    for step in range(1, max_steps + 1):
        reply = model.invoke(messages)
        messages.append(reply)
        print_model_reply(step, reply)
        if not reply.tool_calls and not reply.invalid_tool_calls:
            run.final_answer = reply.text
            break
        for call in reply.tool_calls:
            result = run_tool_call(call, tools_by_name)
            print_tool_result(result)
            run.tool_call_log.append(_log_entry(call, result))
            messages.append(result)
        messages.extend(_invalid_call_messages(reply))

    run.report = llm.compute_report()
    return run


def _print_agent_update(node: str, update: Any, run: AgentRun, calls_by_id: dict[str, ToolCall],
                        step: int) -> int:
    """Print the messages of one ``create_agent`` graph update, log tool calls, and return the step count."""
    if not isinstance(update, dict):
        return step
    for message in update.get("messages") or []:
        if node == "model" and isinstance(message, AIMessage):
            step += 1
            print_model_reply(step, message)
            calls_by_id.update({call["id"]: call for call in message.tool_calls if call["id"]})
            if not message.tool_calls and not message.invalid_tool_calls:
                run.final_answer = message.text
        elif isinstance(message, ToolMessage):
            print_tool_result(message)
            call = calls_by_id.get(message.tool_call_id)
            if call is not None:
                run.tool_call_log.append(_log_entry(call, message))
    return step


def run_with_create_agent(llm: LayerRouteChat, tools: Sequence[BaseTool], task: str, max_steps: int) -> AgentRun:
    """Run the agent built by ``langchain.agents.create_agent``, at most ``max_steps`` model calls."""
    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelCallLimitMiddleware

    # exit_behavior="end" makes the graph stop with an AIMessage from the middleware (not from the
    # "model" node), so a run cut short keeps an empty final answer.
    limit = ModelCallLimitMiddleware(run_limit=max_steps, exit_behavior="end")
    agent = create_agent(llm, tools=list(tools), system_prompt=SYSTEM_PROMPT, middleware=[limit])
    handler = ComputeReportHandler()
    run = AgentRun()
    calls_by_id: dict[str, ToolCall] = {}
    step = 0

    inputs = {"messages": [*example_conversation(), HumanMessage(task)]}
    for chunk in agent.stream(inputs, config={"callbacks": [handler]}, stream_mode="updates"):
        for node, update in chunk.items():
            step = _print_agent_update(node, update, run, calls_by_id, step)

    run.report = handler.report()
    return run


def resolve_driver(driver: str) -> str:
    """Map ``auto`` to ``create_agent`` when ``langchain.agents.create_agent`` can be imported, else to ``loop``."""
    if driver != "auto":
        return driver
    try:
        from langchain.agents import create_agent  # noqa: F401
    except ImportError:
        return "loop"
    return "create_agent"


def episode_json(run: AgentRun, driver: str, task: str) -> dict[str, Any]:
    """Return the episode report data with the driver, task, final answer and tool call log added."""
    data = run.report.to_dict()
    data.update({
        "driver": driver,
        "task": task,
        "final_answer": run.final_answer,
        "tool_call_log": run.tool_call_log,
    })
    return data


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a tool-calling agent on LayerRouteChat and print per-step FLOPs.")
    parser.add_argument("--task", default=DEFAULT_TASK, help=f"question for the agent (default: {DEFAULT_TASK!r})")
    parser.add_argument("--driver", choices=("auto", "loop", "create_agent"), default="auto",
                        help="agent driver: auto uses create_agent when langchain>=1.0 is installed, else loop "
                             "(default: %(default)s)")
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS,
                        help=f"maximum number of model calls (default: {DEFAULT_MAX_STEPS})")
    parser.add_argument("--max-tokens", type=int, default=LayerRouteChat.model_fields["max_tokens"].default,
                        help="maximum new tokens per model call (default: %(default)s)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="model spec: offline pack name, local folder, .gguf file or hub id (default: %(default)s)")
    parser.add_argument("--adapter", default=DEFAULT_ADAPTER,
                        help="routing adapter: a folder, 'default' (the shipped adapter, if the package has one) "
                             "or 'none' (untrained routers that run every block) (default: %(default)s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the episode report as JSON to PATH")
    args = parser.parse_args(argv)
    if args.max_steps < 1:
        parser.error(f"--max-steps must be at least 1, got {args.max_steps}")
    if args.max_tokens < 1:
        parser.error(f"--max-tokens must be at least 1, got {args.max_tokens}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent on the task, print its steps and the episode table, and return the exit status."""
    args = parse_args(argv)
    driver = resolve_driver(args.driver)
    adapter = None if args.adapter.lower() == "none" else args.adapter
    llm = LayerRouteChat(model=args.model, adapter=adapter, max_tokens=args.max_tokens)

    print(f"Task: {args.task}\nDriver: {driver}\n", flush=True)
    agent_runner = run_with_create_agent if driver == "create_agent" else run_with_loop
    run = agent_runner(llm, TOOLS, args.task, args.max_steps)

    if not run.finished:
        print(f"\nNo final answer: the agent stopped after {len(run.report.steps)} model calls "
              f"(--max-steps {args.max_steps}). Raise --max-steps or rephrase the task.")
    print("\n" + run.report.to_markdown())
    if args.json is not None:
        args.json.write_text(json.dumps(episode_json(run, driver, args.task), indent=2) + "\n")
        print(f"\nEpisode report written to {args.json}")
    return 0 if run.finished else 1


if __name__ == "__main__":
    raise SystemExit(main())
