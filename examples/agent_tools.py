"""The three local tools of the example agents: weather, currency conversion and arithmetic.

``get_weather`` reads a fixed table of four cities, ``convert_currency`` uses fixed sample exchange rates,
and ``calculator`` evaluates arithmetic parsed with ``ast`` (never ``eval``). Each tool returns an
``Error: ...`` text for bad input instead of raising, so the model can read the error and try again.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from langchain_core.tools import BaseTool, tool

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


def format_number(value: float) -> str:
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
    return f"Weather in {key.title()}: {format_number(celsius)} C, {conditions}."


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
        f"{format_number(amount)} {source} = {converted:.2f} {target} "
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
    return f"{expression.strip()} = {format_number(value)}"


TOOLS: list[BaseTool] = [get_weather, convert_currency, calculator]
