"""The base-answer file: replies reused only under the same key, and an evaluation that reads them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import training.evaluate as evaluate_module
from training.base_answers import BaseAnswers, answer_key
from training.evaluate import EvalSizes, evaluate

KEY = answer_key("some/model", "float32", 128)
CALL = {"name": "get_weather", "args": {"city": "Lyon"}, "id": "call_0", "type": "tool_call"}


def test_put_then_open_returns_reply(tmp_path: Path) -> None:
    path = tmp_path / "answers.json"
    BaseAnswers.open(path, KEY).put("live_simple_0-0-0", {"calls": [CALL], "invalid": 0})
    reopened = BaseAnswers.open(path, KEY)
    assert reopened.get("live_simple_0-0-0") == {"calls": [CALL], "invalid": 0}
    assert reopened.get("live_simple_1-1-0") is None


def test_other_key_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "answers.json"
    BaseAnswers.open(path, KEY).put("item", {"calls": [], "invalid": 1})
    other = answer_key("some/model", "bfloat16", 128)
    assert BaseAnswers.open(path, other).get("item") is None


def test_two_keys_share_file(tmp_path: Path) -> None:
    path = tmp_path / "answers.json"
    other = answer_key("some/model", "float32", 96)
    BaseAnswers.open(path, KEY).put("item", "first")
    BaseAnswers.open(path, other).put("item", "second")
    assert BaseAnswers.open(path, KEY).get("item") == "first"
    assert BaseAnswers.open(path, other).get("item") == "second"


def test_unjsonable_value_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "answers.json"
    answers = BaseAnswers.open(path, KEY)
    with pytest.raises(TypeError):
        answers.put("item", {1, 2})
    answers.put("other", "fine")
    assert answers.get("item") is None
    assert list(tmp_path.iterdir()) == [path]


def test_unreadable_file_starts_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "answers.json"
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        answers = BaseAnswers.open(path, KEY)
    assert answers.get("item") is None
    answers.put("item", "a reply")
    assert list(json.loads(path.read_text())["sections"].values()) == [{"item": "a reply"}]


@pytest.mark.parametrize("content", ["[1, 2]", '{"key": {}}', '{"key": {}, "replies": []}'])
def test_wrong_layout_starts_empty(tmp_path: Path, content: str) -> None:
    path = tmp_path / "answers.json"
    path.write_text(content)
    assert BaseAnswers.open(path, KEY).replies == {}


def test_no_path_keeps_nothing_on_disk(tmp_path: Path) -> None:
    answers = BaseAnswers.open(None, KEY)
    answers.put("item", "a reply")
    assert answers.get("item") == "a reply"
    assert list(tmp_path.iterdir()) == []


def test_second_eval_reuses_base_replies(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         tiny_adapter: Path) -> None:
    path = tmp_path / "base-answers.json"
    sizes = EvalSizes(per_mode=2, bfcl=2)
    first = evaluate(str(tiny_adapter), model=str(tiny_model_dir), sizes=sizes, dtype="float32", base_answers=path)
    sections = json.loads(path.read_text())["sections"]
    assert [len(replies) for replies in sections.values()] == [4]  # 2 live_simple + 2 irrelevance items

    generated = []
    original = evaluate_module._reply_calls

    def counting(llm, item):
        generated.append(llm.adapter)
        return original(llm, item)

    monkeypatch.setattr(evaluate_module, "_reply_calls", counting)
    second = evaluate(str(tiny_adapter), model=str(tiny_model_dir), sizes=sizes, dtype="float32", base_answers=path)
    assert generated == [str(tiny_adapter)] * 4  # only the routed model generated
    assert second["bfcl_live_simple"] == first["bfcl_live_simple"]
    assert second["bfcl_irrelevance"] == first["bfcl_irrelevance"]
