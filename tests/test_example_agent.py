"""Tests of ``examples/tool_agent.py``: its three tools without a model, and both drivers on the real model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLE_PATH = Path(__file__).resolve().parents[1] / "examples" / "tool_agent.py"


def _load_example() -> ModuleType:
    # examples/ is not a package, so the module is loaded from its file path.
    spec = importlib.util.spec_from_file_location("tool_agent_example", EXAMPLE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = _load_example()


def calculate(expression: str) -> str:
    return example.calculator.invoke({"expression": expression})


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
    assert example.get_weather.invoke({"city": "Lyon"}) == "Weather in Lyon: 14 C, partly cloudy."
    assert example.get_weather.invoke({"city": "  tokyo "}) == "Weather in Tokyo: 18 C, clear sky."


def test_weather_unknown_city_returns_error() -> None:
    result = example.get_weather.invoke({"city": "Atlantis"})

    assert result.startswith("Error: no weather data for city 'Atlantis'")
    assert "Berlin, Lyon, Paris, Tokyo" in result


def test_convert_currency_eur_to_usd() -> None:
    result = example.convert_currency.invoke({"amount": 20, "from_currency": "eur", "to_currency": "USD"})

    assert result == "20 EUR = 21.60 USD (fixed sample rate: 1 EUR = 1.0800 USD)."


def test_convert_amount_matches_rate_table() -> None:
    rates = example.USD_PER_UNIT

    assert example.convert_amount(20, "EUR", "USD") == pytest.approx(21.6)
    assert example.convert_amount(5, "GBP", "JPY") == pytest.approx(5 * rates["GBP"] / rates["JPY"])
    assert example.convert_amount(100, "USD", "USD") == pytest.approx(100)


def test_convert_currency_unknown_code_returns_error() -> None:
    result = example.convert_currency.invoke({"amount": 1, "from_currency": "EUR", "to_currency": "XYZ"})

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
