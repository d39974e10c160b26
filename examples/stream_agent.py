"""Stream a whole ``create_agent`` run with ``astream_events``: model tokens as they are generated, and
each tool call as it starts and ends.

Run it from the repository root, with the project's virtualenv active (needs the ``agents`` extra)::

    python examples/stream_agent.py
    python examples/stream_agent.py --task "What is the weather in Berlin, and how much is 30 CHF in EUR?"

The agent, its tools and its prompt are the ones of ``examples/tool_agent.py``. Text replies stream
token by token. A reply that is a tool call streams no text: ``LayerRouteChat`` buffers tool-call text
until the call is complete, so the call appears whole when the model call ends. At the end the script
prints the episode table that a :class:`~layerroute_agent.ComputeReportHandler` gathered from the run.
The exit status is 0 when the agent gave a final answer, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

# examples/ is not a package: put this folder on the path so that the sibling modules import.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_tools import TOOLS  # noqa: E402
from tool_agent import (  # noqa: E402
    DEFAULT_MAX_STEPS,
    DEFAULT_TASK,
    SYSTEM_PROMPT,
    check_step_limits,
    example_conversation,
)

from layerroute_agent import ComputeReportHandler, EpisodeReport, LayerRouteChat  # noqa: E402
from layerroute_agent.runtime import DEFAULT_ADAPTER  # noqa: E402


@dataclass
class StreamedRun:
    """Events of one streamed agent run: counts, tool starts and ends, the final answer and the compute."""

    model_calls: int = 0
    text_chunks: int = 0
    """Number of ``on_chat_model_stream`` events that carried text."""
    tool_starts: list[dict[str, Any]] = field(default_factory=list)
    """``{"name", "input"}`` of each ``on_tool_start`` event."""
    tool_ends: list[dict[str, Any]] = field(default_factory=list)
    """``{"name", "output"}`` of each ``on_tool_end`` event, the output as text."""
    final_answer: str = ""
    report: EpisodeReport = field(default_factory=EpisodeReport)


def _output_text(output: Any) -> str:
    return output.text if isinstance(output, ToolMessage) else str(output)


def handle_event(event: dict[str, Any], run: StreamedRun) -> None:
    """Print one ``astream_events`` (v2) event and record it in ``run``."""
    kind, data = event["event"], event["data"]
    if kind == "on_chat_model_start":
        run.model_calls += 1
        print(f"\n[model call {run.model_calls}] ", end="", flush=True)
    elif kind == "on_chat_model_stream" and data["chunk"].text:
        run.text_chunks += 1
        print(data["chunk"].text, end="", flush=True)
    elif kind == "on_chat_model_end":
        _print_model_end(data["output"], run)
    elif kind == "on_tool_start":
        run.tool_starts.append({"name": event["name"], "input": data.get("input")})
        print(f"[tool start] {event['name']} {json.dumps(data.get('input'))}", flush=True)
    elif kind == "on_tool_end":
        output = _output_text(data.get("output"))
        run.tool_ends.append({"name": event["name"], "output": output})
        print(f"[tool end] {event['name']}: {output}", flush=True)


def _print_model_end(message: AIMessage, run: StreamedRun) -> None:
    """Finish the line of a model call: its tool calls, or mark its text as the answer so far."""
    compute = message.response_metadata.get("compute", {})
    for call in message.tool_calls:
        print(f"tool call {call['name']}({json.dumps(call['args'])})", end=" ", flush=True)
    if not message.tool_calls and not message.invalid_tool_calls:
        run.final_answer = message.text
    print(f"\n  ({compute.get('mode', '?')}, {compute.get('tokens_out', '?')} tokens, "
          f"GFLOPs run {compute.get('flops_executed', 0) / 1e9:.2f} of {compute.get('flops_full', 0) / 1e9:.2f})",
          flush=True)


async def stream_agent(llm: LayerRouteChat, task: str, max_steps: int) -> StreamedRun:
    """Run the example agent on ``task`` with ``astream_events``, printing events as they arrive."""
    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelCallLimitMiddleware

    limit = ModelCallLimitMiddleware(run_limit=max_steps, exit_behavior="end")
    agent = create_agent(llm, tools=TOOLS, system_prompt=SYSTEM_PROMPT, middleware=[limit])
    handler = ComputeReportHandler()
    run = StreamedRun()

    inputs = {"messages": [*example_conversation(), HumanMessage(task)]}
    async for event in agent.astream_events(inputs, config={"callbacks": [handler]}, version="v2"):
        handle_event(event, run)

    run.report = handler.report()
    return run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Stream a create_agent run on LayerRouteChat with astream_events.")
    parser.add_argument("--task", default=DEFAULT_TASK, help=f"question for the agent (default: {DEFAULT_TASK!r})")
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS,
                        help="maximum number of model calls (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=LayerRouteChat.model_fields["max_tokens"].default,
                        help="maximum new tokens per model call (default: %(default)s)")
    parser.add_argument("--adapter", default=DEFAULT_ADAPTER,
                        help="routing adapter: a folder, 'default' or 'none' (default: %(default)s)")
    args = parser.parse_args(argv)
    check_step_limits(parser, args)
    return args


async def amain(argv: Sequence[str] | None = None) -> tuple[int, StreamedRun]:
    """Parse the options, stream the run, print the episode table, and return the exit status and the run."""
    args = parse_args(argv)
    adapter = None if args.adapter.lower() == "none" else args.adapter
    # The system prompt requests one call per reply, and parallel_tool_calls=False enforces it.
    llm = LayerRouteChat(adapter=adapter, max_tokens=args.max_tokens, parallel_tool_calls=False)

    print(f"Task: {args.task}", flush=True)
    run = await stream_agent(llm, args.task, args.max_steps)
    print("\n" + run.report.to_text())
    return (0 if run.final_answer.strip() else 1), run


if __name__ == "__main__":
    raise SystemExit(asyncio.run(amain())[0])
