"""The fixed agent steps that the benchmarks time: tool-call and planning steps, short and long contexts.

Every step is a list of LangChain messages plus, for tool-call steps, the tools offered. Long contexts are
agent histories (earlier tool calls and their results) or a long document, so their length is typical of a
real agent loop. The texts are fixed, so every run and every engine gets the same prompts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

StepKind = Literal["tool_call", "planning"]


@dataclass(frozen=True)
class AgentStep:
    """One model call of an agent, as the benchmark replays it."""

    name: str
    kind: StepKind
    """``tool_call`` when the step is expected to emit a tool call, else ``planning``."""
    messages: list[BaseMessage]
    new_tokens: int
    """New tokens every engine generates in this step (see the benchmark's fixed-length rule)."""
    tools: list[dict[str, Any]] = field(default_factory=list)
    """Tools offered, in OpenAI function format; empty for planning steps."""


def _tool(name: str, description: str, properties: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": list(properties)},
    }}


WEATHER = _tool("get_weather", "Get the current weather for a city.",
                {"city": {"type": "string", "description": "City name, e.g. Lyon"}})
CURRENCY = _tool("convert_currency", "Convert an amount of money from one currency to another.",
                 {"amount": {"type": "number", "description": "Amount to convert"},
                  "source": {"type": "string", "description": "ISO code of the source currency"},
                  "target": {"type": "string", "description": "ISO code of the target currency"}})
FLIGHTS = _tool("search_flights", "Search direct flights between two airports on a date.",
                {"origin": {"type": "string", "description": "IATA code of the departure airport"},
                 "destination": {"type": "string", "description": "IATA code of the arrival airport"},
                 "date": {"type": "string", "description": "Departure date, YYYY-MM-DD"}})
HOTELS = _tool("search_hotels", "Search hotels in a city for a range of nights.",
               {"city": {"type": "string", "description": "City name"},
                "check_in": {"type": "string", "description": "Arrival date, YYYY-MM-DD"},
                "nights": {"type": "integer", "description": "Number of nights"}})
CALENDAR = _tool("add_calendar_event", "Add an event to the user's calendar.",
                 {"title": {"type": "string", "description": "Event title"},
                  "start": {"type": "string", "description": "Start time, ISO 8601"}})
EMAIL = _tool("send_email", "Send an email on behalf of the user.",
              {"to": {"type": "string", "description": "Recipient address"},
               "subject": {"type": "string", "description": "Subject line"},
               "body": {"type": "string", "description": "Message body"}})
TRAVEL_TOOLS = [WEATHER, CURRENCY, FLIGHTS, HOTELS, CALENDAR, EMAIL]


def flight_results(count: int) -> str:
    """Return a JSON tool result listing ``count`` made-up flights (a long, realistic tool output)."""
    flights = [{"flight": f"AF{1200 + 7 * i}", "departure": f"2025-06-12T{6 + i % 14:02d}:{(13 * i) % 60:02d}",
                "arrival": f"2025-06-12T{8 + i % 14:02d}:{(29 * i) % 60:02d}", "aircraft": "A320",
                "price_eur": 89 + 17 * (i % 9), "seats_left": 3 + (5 * i) % 11, "fare": ["basic", "standard"][i % 2]}
               for i in range(count)]
    return json.dumps({"origin": "CDG", "destination": "LYS", "results": flights})


def history_messages(tool_result: str | None, flight_count: int = 40) -> list[BaseMessage]:
    """Return an agent history: a trip request, a flight search call and its result.

    Args:
        tool_result: the tool message text; ``None`` uses a JSON list of ``flight_count`` made-up flights
            (a long, realistic tool output of about 100 tokens per flight).
    """
    call = {"name": "search_flights", "args": {"origin": "CDG", "destination": "LYS", "date": "2025-06-12"},
            "id": "call_1", "type": "tool_call"}
    return [
        HumanMessage("I fly from Paris CDG to Lyon on 2025-06-12 for a three-night conference. Find me the cheapest "
                     "morning flight, then book a hotel in Lyon for those nights, and tell me the weather there."),
        AIMessage("", tool_calls=[call]),
        ToolMessage(flight_results(flight_count) if tool_result is None else tool_result, tool_call_id="call_1"),
    ]


_REPORT = (
    "Quarterly operations report. Warehouse throughput rose in April after the new sorting line opened, fell "
    "in May during the software migration, and recovered in June. Returns stayed near four percent. Two "
    "suppliers missed delivery windows; one was replaced. Staff turnover in the night shift remains the main "
    "risk, and overtime costs exceeded the budget by eleven percent. "
)


def agent_steps(quick: bool) -> list[AgentStep]:
    """Return the benchmark's steps: four in ``quick`` mode, six otherwise.

    Token counts on the default model's chat template, approximately: tool_short 300, tool_history 1,200,
    tool_history_long 2,000 (full run only), plan_short 40, plan_long 960, plan_medium 440 (full run only).
    """
    tool_tokens, plan_tokens = (16, 32) if quick else (32, 64)
    steps = [
        AgentStep("tool_short", "tool_call", [HumanMessage("What is the weather in Lyon right now?")], tool_tokens,
                  [WEATHER, CURRENCY]),
        AgentStep("tool_history", "tool_call", history_messages(None, 4), tool_tokens, TRAVEL_TOOLS),
        AgentStep("plan_short", "planning",
                  [HumanMessage("Plan the steps to migrate a small web service from one server to another.")],
                  plan_tokens),
        AgentStep("plan_long", "planning",
                  [SystemMessage("You are an operations analyst."),
                   HumanMessage(_REPORT * 14 + "\nList the three actions to take first, with one reason each.")],
                  plan_tokens),
    ]
    if not quick:
        steps += [
            AgentStep("tool_history_long", "tool_call", history_messages(None, 13), tool_tokens, TRAVEL_TOOLS),
            AgentStep("plan_medium", "planning",
                      [HumanMessage(_REPORT * 6 + "\nWrite a plan to reduce overtime costs.")], plan_tokens),
        ]
    return steps


__all__ = ["AgentStep", "StepKind", "TRAVEL_TOOLS", "agent_steps", "flight_results", "history_messages"]
