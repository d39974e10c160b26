"""Tests of the example agents: their tools, every driver on a scripted chat model, and on the real model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.tool import ToolCall, tool_call
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, PrivateAttr

from layerroute_agent import ComputeTracker, EpisodeReport, StepRecord

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"


def _load_example(name: str) -> ModuleType:
    # examples/ is not a package, so each module is loaded from its file path.
    spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = _load_example("tool_agent")
agent_tools = _load_example("agent_tools")


def calculate(expression: str) -> str:
    return agent_tools.calculator.invoke({"expression": expression})


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2", "1 + 2 = 3"),
        ("10 - 4 - 3", "10 - 4 - 3 = 3"),
        ("6 * 7", "6 * 7 = 42"),
        ("7 / 2", "7 / 2 = 3.5"),
        ("2 ** 10", "2 ** 10 = 1024"),
        ("12 * (3 + 4)", "12 * (3 + 4) = 84"),
        ("(1 + 2) * (3 - 5) / 4", "(1 + 2) * (3 - 5) / 4 = -1.5"),
        ("-3 + +5", "-3 + +5 = 2"),
        ("2.5 * 4", "2.5 * 4 = 10"),
        ("  8 // 3 + 8 % 3 ", "8 // 3 + 8 % 3 = 4"),
        ("2 ** -2", "2 ** -2 = 0.25"),
        ("2 ** 1000 // 2 ** 999", "2 ** 1000 // 2 ** 999 = 2"),
    ],
)
def test_calculator_arithmetic(expression: str, expected: str) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "x + 1",
        "abs(-3)",
        "__import__('os').system('true')",
        "(1).real",
        "'a' * 3",
        "[1, 2]",
        "1 if 1 else 2",
        "True + 1",
        "1 +",
        "",
        "9 ** 9 ** 9",
        "((9 ** 99) ** 99) ** 99",
        "9 ** 999 * 9 ** 999",
        "1 / 0",
        "(-8) ** 0.5",
        "1e308 * 10",
        "10.0 ** 100 * 1e300",
        "1" * 201,
    ],
)
def test_calculator_rejects_non_arithmetic(expression: str) -> None:
    result = calculate(expression)

    assert result.startswith("Error: cannot evaluate"), result


def test_calculator_names_rejected_node() -> None:
    assert "Name is not allowed" in calculate("x + 1")
    assert "Call is not allowed" in calculate("abs(-3)")


def test_weather_known_city_any_case() -> None:
    assert agent_tools.get_weather.invoke({"city": "Lyon"}) == "Weather in Lyon: 14 C, partly cloudy."
    assert agent_tools.get_weather.invoke({"city": "  tokyo "}) == "Weather in Tokyo: 18 C, clear sky."


def test_weather_unknown_city_returns_error() -> None:
    result = agent_tools.get_weather.invoke({"city": "Atlantis"})

    assert result.startswith("Error: no weather data for city 'Atlantis'")
    assert "Berlin, Lyon, Paris, Tokyo" in result


def test_convert_currency_eur_to_usd() -> None:
    result = agent_tools.convert_currency.invoke({"amount": 20, "from_currency": "eur", "to_currency": "USD"})

    assert result == "20 EUR = 21.60 USD (fixed sample rate: 1 EUR = 1.0800 USD)."


def test_convert_amount_matches_rate_table() -> None:
    rates = agent_tools.USD_PER_UNIT

    assert agent_tools.convert_amount(20, "EUR", "USD") == pytest.approx(21.6)
    assert agent_tools.convert_amount(5, "GBP", "JPY") == pytest.approx(5 * rates["GBP"] / rates["JPY"])
    assert agent_tools.convert_amount(100, "USD", "USD") == pytest.approx(100)


def test_convert_currency_unknown_code_returns_error() -> None:
    result = agent_tools.convert_currency.invoke({"amount": 1, "from_currency": "EUR", "to_currency": "XYZ"})

    assert result.startswith("Error: unknown currency code 'XYZ'")


def test_example_answer_uses_tool_tables() -> None:
    conversation = example.example_conversation()
    tool_results = [message.text for message in conversation if message.type == "tool"]

    assert tool_results == ["Weather in Paris: 12 C, light rain.",
                            "5 GBP = 947.76 JPY (fixed sample rate: 1 GBP = 189.5522 JPY)."]
    assert "947.76 JPY" in example.example_answer()


def _run_example(driver: str, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    json_path = tmp_path / f"episode_{driver}.json"
    status = example.main(["--driver", driver, "--json", str(json_path)])
    return status, json.loads(json_path.read_text())


def _calls_named(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [entry["args"] for entry in data["tool_call_log"] if entry["name"] == name]


def _check_episode(status: int, data: dict[str, Any], driver: str) -> None:
    assert status == 0
    assert data["driver"] == driver
    assert data["task"] == example.DEFAULT_TASK
    assert data["final_answer"].strip()

    weather_calls = _calls_named(data, "get_weather")
    assert any(str(args.get("city", "")).strip().lower() == "lyon" for args in weather_calls), weather_calls

    conversions = _calls_named(data, "convert_currency")
    assert any(
        float(args.get("amount", 0)) == 20
        and str(args.get("from_currency", "")).upper() == "EUR"
        and str(args.get("to_currency", "")).upper() == "USD"
        for args in conversions
    ), conversions

    steps = data["steps"]
    assert len(steps) >= 3
    modes = {step["mode"] for step in steps}
    assert "tool_call" in modes
    assert "planning" in modes
    for step in steps:
        # Untrained routers run every block and add their own FLOPs, so executed may exceed full.
        assert step["flops_full"] > 0
        assert step["flops_executed"] > 0
        assert isinstance(step["blocks_skipped"], list)


@pytest.mark.real_model
def test_loop_driver_real_model(tmp_path: Path) -> None:
    status, data = _run_example("loop", tmp_path)

    _check_episode(status, data, "loop")


@pytest.mark.real_model
def test_create_agent_driver_real_model(tmp_path: Path) -> None:
    pytest.importorskip("langchain.agents")

    status, data = _run_example("create_agent", tmp_path)

    _check_episode(status, data, "create_agent")


class _ScriptedAgentModel(BaseChatModel):
    """A chat model that calls the tools an agent needs, one call per reply, then answers from the results.

    A question that mentions Tokyo gets one weather call; any other question gets the default task's two
    calls. Each reply carries a compute record, so the drivers' reports work as with ``LayerRouteChat``.
    """

    seen: list[list[BaseMessage]] = Field(default_factory=list)
    """The messages of every call, in order."""
    always_call: bool = False
    """Call ``get_weather`` on every reply and never answer."""
    _tracker: ComputeTracker = PrivateAttr(default_factory=ComputeTracker)

    @property
    def _llm_type(self) -> str:
        return "scripted-agent"

    def bind_tools(self, tools: Any, **kwargs: Any) -> _ScriptedAgentModel:
        return self

    def compute_report(self) -> EpisodeReport:
        return self._tracker.report()

    def reset_compute_report(self) -> None:
        self._tracker.reset()

    def _plan(self, question: str) -> list[ToolCall]:
        if "Tokyo" in question:
            return [tool_call(name="get_weather", args={"city": "Tokyo"}, id="")]
        return [tool_call(name="get_weather", args={"city": "Lyon"}, id=""),
                tool_call(name="convert_currency", args={"amount": 20, "from_currency": "EUR", "to_currency": "USD"},
                          id="")]

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        last_question = max(i for i, message in enumerate(messages) if isinstance(message, HumanMessage))
        results = [message.text for message in messages[last_question:] if isinstance(message, ToolMessage)]
        plan = self._plan(messages[last_question].text)
        if self.always_call or len(results) < len(plan):
            call = plan[0] if self.always_call else plan[len(results)]
            calls = [{**call, "id": f"call_{len(messages)}"}]
            message = AIMessage(content="", tool_calls=calls)
        else:
            message = AIMessage(content="Answer: " + " ".join(results))
        record = StepRecord(mode="tool_call" if message.tool_calls else "planning", model_name="scripted",
                            routing="untrained", blocks_run=[0, 1], blocks_skipped=[], flops_executed=2 * len(messages),
                            flops_full=2 * len(messages), tokens_in=len(messages), tokens_out=1, prefill_seconds=0.0,
                            decode_seconds=0.0, tool_calls=[call["name"] for call in message.tool_calls])
        self._tracker.add(record)
        message.response_metadata = {"compute": record.to_dict()}
        return ChatResult(generations=[ChatGeneration(message=message)])


DRIVER_NAMES = ["loop", "create_agent", "langgraph"]


@pytest.mark.parametrize("driver", DRIVER_NAMES)
def test_driver_follow_up_same_thread(driver: str) -> None:
    model = _ScriptedAgentModel()

    run = example.DRIVERS[driver](model, agent_tools.TOOLS, [example.DEFAULT_TASK, example.DEFAULT_FOLLOW_UP], 4)

    assert run.finished
    assert run.questions == [example.DEFAULT_TASK, example.DEFAULT_FOLLOW_UP]
    assert run.final_answers[0].startswith("Answer: Weather in Lyon")
    assert run.final_answers[1] == "Answer: Weather in Tokyo: 18 C, clear sky."
    assert [entry["name"] for entry in run.tool_call_log] == ["get_weather", "convert_currency", "get_weather"]
    assert run.tool_call_log[2]["args"] == {"city": "Tokyo"}
    assert [step.mode for step in run.report.steps] == ["tool_call", "tool_call", "planning", "tool_call", "planning"]
    # The follow-up turn's first model call receives the whole first turn, kept by the thread.
    follow_up_call = model.seen[3]
    assert any(message.text == example.DEFAULT_TASK for message in follow_up_call)
    assert any(message.text.startswith("Answer: Weather in Lyon") for message in follow_up_call)
    assert isinstance(follow_up_call[0], SystemMessage)


@pytest.mark.parametrize("driver", DRIVER_NAMES)
def test_driver_stops_at_max_steps(driver: str) -> None:
    model = _ScriptedAgentModel(always_call=True)

    run = example.DRIVERS[driver](model, agent_tools.TOOLS, [example.DEFAULT_TASK, example.DEFAULT_FOLLOW_UP], 3)

    assert not run.finished
    assert run.questions == [example.DEFAULT_TASK]
    assert len(model.seen) == 3
    assert len(run.report.steps) == 3


def test_write_reports_json_csv_png(tmp_path: Path) -> None:
    run = example.DRIVERS["langgraph"](_ScriptedAgentModel(), agent_tools.TOOLS, [example.DEFAULT_TASK], 4)
    paths = {name: tmp_path / f"episode.{name}" for name in ("json", "csv", "png")}
    args = example.parse_args(["--json", str(paths["json"]), "--csv", str(paths["csv"]), "--plot", str(paths["png"])])

    example.write_reports(run, "langgraph", args)

    data = json.loads(paths["json"].read_text())
    assert data["turns"] == [{"question": example.DEFAULT_TASK, "final_answer": run.final_answer}]
    assert len(data["steps"]) == 3
    assert EpisodeReport.from_csv(paths["csv"].read_text()) == run.report
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_option_rejects_non_png(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        example.parse_args(["--plot", "chart.jpg"])

    assert "--plot writes a PNG file, so PATH must end in .png, got 'chart.jpg'" in capsys.readouterr().err


@pytest.mark.real_model
def test_langgraph_follow_up_real_model(tmp_path: Path) -> None:
    pytest.importorskip("langgraph.prebuilt")
    paths = {name: tmp_path / f"episode.{name}" for name in ("json", "csv", "png")}

    status = example.main(["--driver", "langgraph", "--follow-up", example.DEFAULT_FOLLOW_UP, "--max-tokens", "64",
                           "--json", str(paths["json"]), "--csv", str(paths["csv"]), "--plot", str(paths["png"])])

    data = json.loads(paths["json"].read_text())
    _check_episode(status, data, "langgraph")
    assert [turn["question"] for turn in data["turns"]] == [example.DEFAULT_TASK, example.DEFAULT_FOLLOW_UP]
    assert all(turn["final_answer"].strip() for turn in data["turns"])
    follow_up_calls = data["tool_call_log"][2:]
    assert {"name": "get_weather", "args": {"city": "Tokyo"}} in [
        {"name": entry["name"], "args": entry["args"]} for entry in follow_up_calls]
    assert len(paths["csv"].read_text().splitlines()) == 1 + len(data["steps"])
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.real_model
async def test_stream_agent_real_model() -> None:
    pytest.importorskip("langchain.agents")
    stream_example = _load_example("stream_agent")

    status, run = await stream_example.amain(["--max-tokens", "64"])

    assert status == 0
    started = [start["name"] for start in run.tool_starts]
    assert "get_weather" in started
    assert "convert_currency" in started
    assert [end["name"] for end in run.tool_ends] == started
    assert any("Lyon" in end["output"] for end in run.tool_ends)
    # The final answer is plain text, so it arrives in several streamed chunks.
    assert run.text_chunks > 1
    assert run.final_answer.strip()
    assert len(run.report.steps) == run.model_calls


def test_routing_options_reach_chat_model() -> None:
    default = example.build_llm(example.parse_args(["--adapter", "none"]))
    assert (default.parallel_tool_calls, default.routing, default.route_after_tool_results) == (False, True, False)
    flags = ["--adapter", "none", "--parallel-tool-calls", "--full-depth", "--route-after-tool-results"]
    changed = example.build_llm(example.parse_args(flags))
    assert (changed.parallel_tool_calls, changed.routing, changed.route_after_tool_results) == (True, False, True)
    assert changed.adapter is None
    assert default.draft_tokens == 4
    assert example.build_llm(example.parse_args(["--adapter", "none", "--draft-tokens", "0"])).draft_tokens == 0


def test_draft_tokens_option_rejects_negative(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        example.parse_args(["--draft-tokens", "-1"])

    assert "--draft-tokens must be >= 0 (0 turns drafting off), got -1" in capsys.readouterr().err
