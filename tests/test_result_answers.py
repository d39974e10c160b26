"""Template replies after a turn's tool results: one sentence per call, built from the real result."""

from __future__ import annotations

import json
from typing import Any

import pytest

from training.config import TrainConfig
from training.data import assistant_message, load_bfcl_multi_turn
from training.data.result_answers import MAX_ITEMS, MAX_TEXT, describe, template_answer
from training.prepare import _multi_turn_answerer


def _turn(*calls: tuple[str, dict[str, Any], str]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "earlier question"},
                                      assistant_message("", [("old_call", {})]),
                                      {"role": "tool", "content": '{"stale": 1}'},
                                      assistant_message("Earlier answer."),
                                      {"role": "user", "content": "new question"}]
    for name, arguments, result in calls:
        messages.append(assistant_message("", [(name, arguments)]))
        messages.append({"role": "tool", "content": result})
    return messages


def test_answer_reports_each_call_of_turn() -> None:
    messages = _turn(("cd", {"folder": "research"}, '{"current_working_directory": "research"}'),
                     ("lockDoors", {}, '{"lockStatus": "locked", "remainingUnlockedDoors": 0}'))
    answer = template_answer(messages, [])
    assert answer == ("Done. cd returned current working directory research. "
                      "lockDoors returned lock status locked, remaining unlocked doors 0.")


def test_answer_ignores_earlier_turns() -> None:
    answer = template_answer(_turn(("get_watchlist", {}, '{"watchlist": ["NVDA"]}')), [])
    assert answer is not None
    assert "old_call" not in answer
    assert "stale" not in answer


def test_answer_reports_errors() -> None:
    answer = template_answer(_turn(("cd", {"folder": "x"}, '{"error": "cd: x: No such directory"}')), [])
    assert answer == "Not everything worked. cd failed: cd: x: No such directory."


@pytest.mark.parametrize(("content", "expected"), [
    ("Lyon: 14 C, light rain", "get_weather returned Lyon: 14 C, light rain."),
    ("null", "get_weather finished with no result."),
    ("{}", "get_weather finished with no result."),
    ('{"ok": true, "missing": null}', "get_weather returned ok yes, missing nothing."),
])
def test_answer_handles_plain_and_empty_results(content: str, expected: str) -> None:
    assert template_answer(_turn(("get_weather", {}, content)), []) == f"Done. {expected}"


def test_answer_needs_a_call_in_the_turn() -> None:
    messages = [{"role": "user", "content": "hello"}]
    assert template_answer(messages, []) is None


def test_describe_caps_lists_objects_and_text() -> None:
    assert describe(list(range(MAX_ITEMS + 3))) == "0, 1, 2, 3, 4 and 3 more"
    wide = {f"key_{index}": index for index in range(MAX_ITEMS + 1)}
    assert describe(wide).endswith("key 4 4 and 1 more")
    long_text = describe("word " * 100)
    assert len(long_text) <= MAX_TEXT
    assert long_text.endswith("...")
    assert describe([]) == "none"


def test_replay_with_template_answers() -> None:
    examples = load_bfcl_multi_turn(template_answer, limit=2, max_turns=2)
    answers = [example for example in examples if example.mode == "planning"]
    # Two tasks of two turns each: every turn ends with a template reply, so none is cut.
    assert len(answers) == 4
    first = answers[0]
    assert first.target.startswith("Done. ")
    results = [json.loads(m["content"]) for m in first.messages if m["role"] == "tool"]
    assert "current working directory document" in first.target
    assert results[0] == {"current_working_directory": "document"}


def test_config_picks_answerer() -> None:
    assert _multi_turn_answerer(TrainConfig(sources=("bfcl_multi_turn",))) is template_answer
    with pytest.raises(ValueError, match="multi_turn_answers must be one of"):
        TrainConfig(multi_turn_answers="teacher")
