"""Run a tool-calling agent on ``LayerRouteChat`` and print the compute of every model call.

Run it from the repository root, with the project's virtualenv active::

    python examples/tool_agent.py
    python examples/tool_agent.py --driver langgraph --follow-up "And what is the weather in Tokyo?"
    python examples/tool_agent.py --driver loop --json episode.json --csv episode.csv --plot episode.png

The agent works on the task with three local tools (``examples/agent_tools.py``): ``get_weather`` (a
fixed table of four cities), ``convert_currency`` (fixed sample exchange rates) and ``calculator``
(arithmetic parsed with ``ast``). It prints each model reply as it arrives, with its tool calls and
arguments, each tool result and the final answer. Each ``--follow-up`` question is asked after the
previous answer, in the same conversation (the same LangGraph thread), so the model sees the earlier
turns. At the end it prints the episode table: one row per model call with its mode (``tool_call`` or
``planning``), the decoder blocks skipped, and the FLOPs executed against the FLOPs of the same call at
full depth. ``--csv`` and ``--plot`` write the same report as CSV and as a PNG chart (the ``plot`` extra).

Three drivers run the same agent:

- ``loop``: a plain langchain-core loop: ``bind_tools``, ``invoke``, run each tool call, append a
  ``ToolMessage``, repeat.
- ``create_agent``: ``langchain.agents.create_agent`` (the ``agents`` extra, ``langchain>=1.0``).
- ``langgraph``: a ``StateGraph`` written out by hand: a model node, ``langgraph.prebuilt.ToolNode``
  and ``tools_condition`` between them.

``--driver auto`` (the default) picks ``create_agent`` when ``langchain`` is installed, else the loop.
``examples/stream_agent.py`` streams a ``create_agent`` run token by token with ``astream_events``.

The exit status is 0 when the agent gave a final answer to every question, and 1 when it stopped
without one (at ``--max-steps`` model calls in a turn, or on an empty reply).

NOTE: the prompt is tuned for the default task on Qwen2.5-Coder 0.5B with untrained routers. Other
two-part questions like it usually work, but with a single-part task such as "What is 12 * (3 + 4)?"
the model repeats the same tool call until ``--max-steps``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.tool import ToolCall, tool_call
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from pydantic import ValidationError

# examples/ is not a package: put this folder on the path so that the sibling module imports however this
# file is loaded (as a script, or by file path from the tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_tools import TOOLS, WEATHER_TABLE, convert_amount, format_number  # noqa: E402

from layerroute_agent import DEFAULT_MODEL, ComputeReportHandler, EpisodeReport, LayerRouteChat  # noqa: E402
from layerroute_agent.runtime import DEFAULT_ADAPTER  # noqa: E402

DEFAULT_TASK = "What is the weather in Lyon right now, and how much is 20 EUR in USD?"
DEFAULT_FOLLOW_UP = "And what is the weather in Tokyo?"
DEFAULT_MAX_STEPS = 6
THREAD_ID = "tool-agent-example"


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
        f"In Paris it is {format_number(celsius)} C with {conditions}, "
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
    """Result of one agent run: each question with its final answer, the tool calls executed, the compute."""

    questions: list[str] = field(default_factory=list)
    final_answers: list[str] = field(default_factory=list)
    """One entry per question; empty when the agent stopped without answering it."""
    tool_call_log: list[dict[str, Any]] = field(default_factory=list)
    report: EpisodeReport = field(default_factory=EpisodeReport)

    @property
    def final_answer(self) -> str:
        """The answer to the last question, empty if there is none."""
        return self.final_answers[-1] if self.final_answers else ""

    @property
    def finished(self) -> bool:
        """Whether the agent gave a non-empty final answer to every question."""
        return bool(self.questions) and all(answer.strip() for answer in self.final_answers)

    def start_turn(self, question: str) -> None:
        """Record a new question and print it."""
        self.questions.append(question)
        self.final_answers.append("")
        print(f"\n[turn {len(self.questions)}] user: {question}", flush=True)


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


def run_with_loop(llm: LayerRouteChat, tools: Sequence[BaseTool], questions: Sequence[str],
                  max_steps: int) -> AgentRun:
    """Run the agent as a plain langchain-core loop of ``invoke`` and tool calls, at most ``max_steps`` model
    calls per question. Later questions are appended to the same message list."""
    llm.reset_compute_report()
    model = llm.bind_tools(tools)
    tools_by_name = {tool_.name: tool_ for tool_ in tools}
    messages: list[BaseMessage] = [SystemMessage(SYSTEM_PROMPT), *example_conversation()]
    run = AgentRun()
    step = 0

    for question in questions:
        run.start_turn(question)
        messages.append(HumanMessage(question))
        for _ in range(max_steps):
            step += 1
            reply = model.invoke(messages)
            messages.append(reply)
            print_model_reply(step, reply)
            if not reply.tool_calls and not reply.invalid_tool_calls:
                run.final_answers[-1] = reply.text
                break
            for call in reply.tool_calls:
                result = run_tool_call(call, tools_by_name)
                print_tool_result(result)
                run.tool_call_log.append(_log_entry(call, result))
                messages.append(result)
            messages.extend(_invalid_call_messages(reply))
        if not run.final_answers[-1].strip():
            break

    run.report = llm.compute_report()
    return run


def _print_agent_update(node: str, update: Any, run: AgentRun, calls_by_id: dict[str, ToolCall],
                        step: int) -> int:
    """Print the messages of one graph update, log tool calls, and return the step count."""
    if not isinstance(update, dict):
        return step
    for message in update.get("messages") or []:
        if node == "model" and isinstance(message, AIMessage):
            step += 1
            print_model_reply(step, message)
            calls_by_id.update({call["id"]: call for call in message.tool_calls if call["id"]})
            if not message.tool_calls and not message.invalid_tool_calls:
                run.final_answers[-1] = message.text
        elif isinstance(message, ToolMessage):
            print_tool_result(message)
            call = calls_by_id.get(message.tool_call_id)
            if call is not None:
                run.tool_call_log.append(_log_entry(call, message))
    return step


def turn_inputs(questions: Sequence[str]) -> Iterator[tuple[str, dict[str, list[BaseMessage]]]]:
    """Yield each question with the graph input for its turn.

    The first turn starts the thread with the worked example. Later turns send only the new question,
    because the checkpointer keeps the earlier messages of the thread.
    """
    for index, question in enumerate(questions):
        history = example_conversation() if index == 0 else []
        yield question, {"messages": [*history, HumanMessage(question)]}


def run_graph(graph: Any, questions: Sequence[str], config: RunnableConfig) -> AgentRun:
    """Stream a compiled agent graph over the questions, one turn each, in one thread.

    ``config`` must name a ``thread_id`` (the graph needs a checkpointer) and its callbacks must include a
    :class:`ComputeReportHandler`. A turn that ends without an answer ends the run.
    """
    from langgraph.errors import GraphRecursionError

    run = AgentRun()
    calls_by_id: dict[str, ToolCall] = {}
    step = 0
    for question, inputs in turn_inputs(questions):
        run.start_turn(question)
        try:
            for chunk in graph.stream(inputs, config=config, stream_mode="updates"):
                for node, update in chunk.items():
                    step = _print_agent_update(node, update, run, calls_by_id, step)
        except GraphRecursionError:
            print("  the graph reached its recursion limit (--max-steps) without a final answer", flush=True)
        if not run.final_answers[-1].strip():
            break

    handlers = [handler for handler in config["callbacks"] if isinstance(handler, ComputeReportHandler)]
    run.report = handlers[0].report()
    return run


def run_with_create_agent(llm: LayerRouteChat, tools: Sequence[BaseTool], questions: Sequence[str],
                          max_steps: int) -> AgentRun:
    """Run the agent built by ``langchain.agents.create_agent``, at most ``max_steps`` model calls per question."""
    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelCallLimitMiddleware
    from langgraph.checkpoint.memory import InMemorySaver

    # run_limit counts the model calls of one invoke, that is one question. exit_behavior="end" makes the
    # graph stop with an AIMessage from the middleware (not from the "model" node), so a run cut short
    # keeps an empty final answer.
    limit = ModelCallLimitMiddleware(run_limit=max_steps, exit_behavior="end")
    agent = create_agent(llm, tools=list(tools), system_prompt=SYSTEM_PROMPT, middleware=[limit],
                         checkpointer=InMemorySaver())
    config: RunnableConfig = {"callbacks": [ComputeReportHandler()], "configurable": {"thread_id": THREAD_ID}}
    return run_graph(agent, questions, config)


def build_langgraph_agent(llm: LayerRouteChat, tools: Sequence[BaseTool]) -> Any:
    """Build the agent as a LangGraph ``StateGraph``: model node -> ``ToolNode`` -> model node, until a reply
    has no tool calls. The compiled graph keeps each thread's messages in memory."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    model = llm.bind_tools(tools)

    def call_model(state: MessagesState, config: RunnableConfig) -> dict[str, list[BaseMessage]]:
        # The system prompt is added on every call instead of being stored in the thread's state.
        return {"messages": [model.invoke([SystemMessage(SYSTEM_PROMPT), *state["messages"]], config)]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode(list(tools)))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)  # to "tools" if the reply has tool calls, else end
    graph.add_edge("tools", "model")
    return graph.compile(checkpointer=InMemorySaver())


def run_with_langgraph(llm: LayerRouteChat, tools: Sequence[BaseTool], questions: Sequence[str],
                       max_steps: int) -> AgentRun:
    """Run the hand-built ``StateGraph`` agent, at most ``max_steps`` model calls per question."""
    # Model call k is graph step 2k - 1 and its tool step is 2k, so 2 * max_steps steps allow max_steps calls.
    config: RunnableConfig = {"callbacks": [ComputeReportHandler()], "configurable": {"thread_id": THREAD_ID},
                              "recursion_limit": 2 * max_steps}
    return run_graph(build_langgraph_agent(llm, tools), questions, config)


DRIVERS = {"loop": run_with_loop, "create_agent": run_with_create_agent, "langgraph": run_with_langgraph}


def resolve_driver(driver: str) -> str:
    """Map ``auto`` to ``create_agent`` when ``langchain.agents.create_agent`` can be imported, else to ``loop``."""
    if driver != "auto":
        return driver
    try:
        from langchain.agents import create_agent  # noqa: F401
    except ImportError:
        return "loop"
    return "create_agent"


def episode_json(run: AgentRun, driver: str) -> dict[str, Any]:
    """Return the episode report data with the driver, the questions and answers, and the tool call log added."""
    data = run.report.to_dict()
    data.update({
        "driver": driver,
        "task": run.questions[0] if run.questions else "",
        "final_answer": run.final_answer,
        "turns": [{"question": question, "final_answer": answer}
                  for question, answer in zip(run.questions, run.final_answers, strict=True)],
        "tool_call_log": run.tool_call_log,
    })
    return data


def check_step_limits(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit through ``parser.error`` when ``--max-steps`` or ``--max-tokens`` is below 1."""
    for flag in ("max_steps", "max_tokens"):
        value = getattr(args, flag)
        if value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {value}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a tool-calling agent on LayerRouteChat and print per-step FLOPs.")
    parser.add_argument("--task", default=DEFAULT_TASK, help=f"question for the agent (default: {DEFAULT_TASK!r})")
    parser.add_argument("--follow-up", action="append", default=[], metavar="QUESTION",
                        help="question to ask after the previous answer, in the same conversation; repeat the "
                             f"option for more turns (example: {DEFAULT_FOLLOW_UP!r})")
    parser.add_argument("--driver", choices=("auto", *DRIVERS), default="auto",
                        help="agent driver: auto uses create_agent when langchain>=1.0 is installed, else loop "
                             "(default: %(default)s)")
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS,
                        help=f"maximum number of model calls per question (default: {DEFAULT_MAX_STEPS})")
    parser.add_argument("--max-tokens", type=int, default=LayerRouteChat.model_fields["max_tokens"].default,
                        help="maximum new tokens per model call (default: %(default)s)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="model spec: offline pack name, local folder, .gguf file or hub id (default: %(default)s)")
    parser.add_argument("--adapter", default=DEFAULT_ADAPTER,
                        help="routing adapter: a folder, 'default' (the shipped adapter, if the package has one) "
                             "or 'none' (untrained routers that run every block) (default: %(default)s)")
    parser.add_argument("--parallel-tool-calls", action="store_true",
                        help="let one reply make several tool calls; by default a reply ends after its first "
                             "complete call, as the system prompt asks (LayerRouteChat(parallel_tool_calls=False))")
    parser.add_argument("--route-after-tool-results", action="store_true",
                        help="let the routers skip blocks on steps that follow a tool result too; by default "
                             "those steps run the base model (LayerRouteChat(route_after_tool_results=False))")
    parser.add_argument("--full-depth", action="store_true",
                        help="run every block on every step, with the adapter's LoRA kept (LayerRouteChat(routing=False))")
    parser.add_argument("--draft-tokens", type=int, default=LayerRouteChat.model_fields["draft_tokens"].default,
                        help="max drafted tokens per decode pass (default 4); 0 decodes one token per pass "
                             "(LayerRouteChat(draft_tokens=...))")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the episode report as JSON to PATH")
    parser.add_argument("--csv", type=Path, metavar="PATH", help="write one CSV row per model call to PATH")
    parser.add_argument("--plot", type=Path, metavar="PATH",
                        help="write a PNG chart of the FLOPs per model call to PATH (needs the plot extra)")
    args = parser.parse_args(argv)
    check_step_limits(parser, args)
    if args.draft_tokens < 0:
        parser.error(f"--draft-tokens must be >= 0 (0 turns drafting off), got {args.draft_tokens}")
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        parser.error(f"--plot writes a PNG file, so PATH must end in .png, got {str(args.plot)!r}")
    return args


def write_reports(run: AgentRun, driver: str, args: argparse.Namespace) -> None:
    """Write the episode report to the ``--json``, ``--csv`` and ``--plot`` paths that were given."""
    if args.json is not None:
        args.json.write_text(json.dumps(episode_json(run, driver), indent=2) + "\n")
        print(f"Episode report written to {args.json}")
    if args.csv is not None:
        run.report.to_csv(args.csv)
        print(f"CSV written to {args.csv}")
    if args.plot is not None and run.report.steps:
        run.report.plot(args.plot)
        print(f"Chart written to {args.plot}")


def build_llm(args: argparse.Namespace) -> LayerRouteChat:
    """Build the chat model from the command-line options."""
    adapter = None if args.adapter.lower() == "none" else args.adapter
    return LayerRouteChat(model=args.model, adapter=adapter, max_tokens=args.max_tokens,
                          parallel_tool_calls=args.parallel_tool_calls, routing=not args.full_depth,
                          route_after_tool_results=args.route_after_tool_results, draft_tokens=args.draft_tokens)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent on the task, print its steps and the episode table, and return the exit status."""
    args = parse_args(argv)
    driver = resolve_driver(args.driver)
    llm = build_llm(args)

    print(f"Driver: {driver}", flush=True)
    run = DRIVERS[driver](llm, TOOLS, [args.task, *args.follow_up], args.max_steps)

    if not run.finished:
        print(f"\nNo final answer to question {len(run.questions)}: the agent stopped after "
              f"{len(run.report.steps)} model calls in all (--max-steps {args.max_steps} per question). "
              "Raise --max-steps or rephrase the question.")
    print("\n" + run.report.to_text() + "\n")
    write_reports(run, driver, args)
    return 0 if run.finished else 1


if __name__ == "__main__":
    raise SystemExit(main())
