"""Checks a model's tool call against BFCL possible answers (name and every argument).

A BFCL ground truth is a list of ``{function_name: {argument: [allowed values]}}``. A call is correct when
its name matches, every argument it passes is allowed, and every argument whose allowed list lacks
``""`` (the marker for "may be omitted") is present. Strings compare case-insensitively after trimming;
numbers compare by value (``3 == 3.0``); lists and dicts compare element by element.
"""

from __future__ import annotations

from typing import Any


def _normalise(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower()
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_normalise(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    return value


def _value_allowed(value: Any, allowed: list[Any]) -> bool:
    normalised = _normalise(value)
    return any(normalised == _normalise(option) for option in allowed if option != "")


def call_matches(name: str, args: dict[str, Any], ground_truth: list[dict[str, dict[str, list[Any]]]]) -> bool:
    """Whether one call (name + arguments) matches any of the possible answers."""
    for answer in ground_truth:
        for expected_name, expected_args in answer.items():
            if name != expected_name:
                continue
            unknown = set(args) - set(expected_args)
            missing = [arg for arg, allowed in expected_args.items() if "" not in allowed and arg not in args]
            if unknown or missing:
                continue
            if all(_value_allowed(value, expected_args[arg]) for arg, value in args.items()):
                return True
    return False


__all__ = ["call_matches"]
