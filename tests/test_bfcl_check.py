"""The BFCL answer check: names, required and optional arguments, value normalisation."""

from __future__ import annotations

from training.bfcl_check import call_matches

TRUTH = [{"uber.ride": {"loc": ["2020 Addison Street, Berkeley, CA, USA"], "type": ["comfort"], "time": [600],
                        "note": ["", "none"]}}]


def test_exact_call_matches() -> None:
    args = {"loc": "2020 Addison Street, Berkeley, CA, USA", "type": "comfort", "time": 600}
    assert call_matches("uber.ride", args, TRUTH)


def test_case_and_number_type_are_normalised() -> None:
    args = {"loc": " 2020 addison street, berkeley, ca, usa", "type": "Comfort", "time": 600.0, "note": "None"}
    assert call_matches("uber.ride", args, TRUTH)


def test_wrong_name_fails() -> None:
    assert not call_matches("uber_ride", {"loc": "x", "type": "comfort", "time": 600}, TRUTH)


def test_missing_required_argument_fails() -> None:
    assert not call_matches("uber.ride", {"loc": "2020 Addison Street, Berkeley, CA, USA", "type": "comfort"}, TRUTH)


def test_unknown_argument_fails() -> None:
    args = {"loc": "2020 Addison Street, Berkeley, CA, USA", "type": "comfort", "time": 600, "speed": 3}
    assert not call_matches("uber.ride", args, TRUTH)


def test_wrong_value_fails() -> None:
    args = {"loc": "2020 Addison Street, Berkeley, CA, USA", "type": "pool", "time": 600}
    assert not call_matches("uber.ride", args, TRUTH)


def test_list_values_compare_elementwise() -> None:
    truth = [{"f": {"xs": [[1, 2, 3]]}}]
    assert call_matches("f", {"xs": [1.0, 2, 3]}, truth)
    assert not call_matches("f", {"xs": [1, 2]}, truth)
