"""BFCL multi-turn replay: real tool results from BFCL's simulated APIs, answers from a given function."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

import training.self_answers as self_answers_module
from layerroute_agent.runtime import get_runtime
from training.base_answers import BaseAnswers, answer_key
from training.config import TrainConfig
from training.data import SkipCounter, load_bfcl_multi_turn, parse_ground_truth_call
from training.prepare import _source_arguments, base_answers_path
from training.self_answers import base_model_answerer, step_id, usable_answer

ANSWER = "The steps are done."


def _fixed_answer(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    return ANSWER


@pytest.mark.parametrize(("text", "expected"), [
    ("cd(folder='document')", ("cd", [], {"folder": "document"})),
    ("sort('final_report.pdf')", ("sort", ["final_report.pdf"], {})),
    ("post_tweet(content='hi', tags=['#a', '#b'], mentions=[])",
     ("post_tweet", [], {"content": "hi", "tags": ["#a", "#b"], "mentions": []})),
])
def test_parse_call_splits_arguments(text: str, expected: tuple) -> None:
    assert parse_ground_truth_call(text) == expected


@pytest.mark.parametrize("text", ["cd(folder=path)", "api.cd(folder='x')", "cd(", "1 + 2"])
def test_parse_call_rejects_non_literals(text: str) -> None:
    with pytest.raises(ValueError, match="invalid BFCL ground-truth call"):
        parse_ground_truth_call(text)


@pytest.fixture(scope="module")
def replayed() -> list:
    return load_bfcl_multi_turn(_fixed_answer, limit=3, max_turns=2, max_tools=6)


def test_replay_first_step_is_first_call(replayed: list) -> None:
    first = replayed[0]
    assert first.trace_id == "multi_turn_base_0"
    assert first.mode == "tool_call"
    assert [m["role"] for m in first.messages] == ["user"]
    assert json.loads(first.target.split("\n")[1]) == {"name": "cd", "arguments": {"folder": "document"}}


def test_replay_holds_real_tool_results(replayed: list) -> None:
    second = replayed[1]
    assert [m["role"] for m in second.messages] == ["user", "assistant", "tool"]
    # GorillaFileSystem.cd returns the new working directory.
    assert json.loads(second.messages[2]["content"]) == {"current_working_directory": "document"}


def test_replay_answers_after_each_turn(replayed: list) -> None:
    planning = [example for example in replayed if example.mode == "planning"]
    assert len(planning) == 6  # 3 tasks x 2 turns
    assert {example.target for example in planning} == {ANSWER}
    for example in planning:
        assert example.messages[-1]["role"] == "tool"


def test_replay_offers_called_tools(replayed: list) -> None:
    for example in replayed:
        names = {tool["function"]["name"] for tool in example.tools}
        assert len(names) <= 6
        for message in example.messages:
            for call in message.get("tool_calls", []):
                assert call["function"]["name"] in names


def test_missing_answer_cuts_trace(caplog: pytest.LogCaptureFixture) -> None:
    skips = SkipCounter()
    with caplog.at_level(logging.WARNING):
        examples = load_bfcl_multi_turn(lambda messages, tools: None, limit=1, max_turns=2, skips=skips)
    assert "No replayed BFCL turn got a usable text answer" in caplog.text
    assert {example.mode for example in examples} == {"tool_call"}
    assert all(len([m for m in e.messages if m["role"] == "user"]) == 1 for e in examples)
    assert skips["bfcl_multi_turn:no usable text answer after a turn's results (trace cut there)"] == 1


def test_loader_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="limit must be None or >= 1, got -1; max_turns must be None or >= 1, "
                                         "got 0; max_tools must be >= 1, got 0"):
        load_bfcl_multi_turn(_fixed_answer, limit=-1, max_turns=0, max_tools=0)


def test_blank_answer_cuts_trace() -> None:
    examples = load_bfcl_multi_turn(lambda messages, tools: "  ", limit=1, max_turns=2)
    assert {example.mode for example in examples} == {"tool_call"}


def test_answer_function_gets_copies() -> None:
    def meddling(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        messages[0]["content"] = "changed"
        tools.clear()
        return ANSWER

    examples = load_bfcl_multi_turn(meddling, limit=1, max_turns=1)
    assert examples[0].messages[0]["content"] != "changed"
    assert examples[-1].tools


TOOLS = [{"type": "function", "function": {"name": "cd", "description": "", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(("reply", "expected"), [
    ({"text": "Moved the file.", "finish_reason": "stop"}, "Moved the file."),
    ({"text": "Moved the file and", "finish_reason": "length"}, None),
    ({"text": '{"name": "cd", "arguments": {"folder": "x"}}', "finish_reason": "stop"}, None),
    ({"text": "  ", "finish_reason": "stop"}, None),
    ({"text": '{"current_directory_content": ["workspace"]}', "finish_reason": "stop"}, None),
    ({"text": '{"result": "moved"}\n{"result": "copied"}', "finish_reason": "stop"}, None),
    ({"text": '```json\n{"result": "moved"}\n```', "finish_reason": "stop"}, None),
])
def test_usable_answer_cases(reply: dict, expected: str | None) -> None:
    assert usable_answer(reply, TOOLS) == expected


def test_answerer_generates_once(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = get_runtime(str(tiny_model_dir), None, "float32", "cpu")
    path = tmp_path / "answers.json"
    generated = []

    def fake_generate(runtime_: object, messages: list, tools: list, max_new_tokens: int) -> dict[str, str]:
        generated.append(max_new_tokens)
        return {"text": "Done.", "finish_reason": "stop"}

    monkeypatch.setattr(self_answers_module, "_generate", fake_generate)
    messages = [{"role": "user", "content": "Go to docs."}]
    answer = base_model_answerer(runtime, BaseAnswers.open(path, answer_key("m", "float32", 8)), max_new_tokens=8)
    assert answer(messages, TOOLS) == "Done."
    again = base_model_answerer(runtime, BaseAnswers.open(path, answer_key("m", "float32", 8)), max_new_tokens=8)
    assert again(messages, TOOLS) == "Done."
    assert generated == [8]
    (replies,) = json.loads(path.read_text())["sections"].values()
    assert replies[step_id(messages, TOOLS)]["text"] == "Done."


def test_answerer_runs_tiny_model(tiny_model_dir: Path) -> None:
    runtime = get_runtime(str(tiny_model_dir), None, "float32", "cpu")
    answers = BaseAnswers.open(None, answer_key("m", "float32", 4))
    messages = [{"role": "user", "content": "Hello"}]
    result = base_model_answerer(runtime, answers, max_new_tokens=4)(messages, TOOLS)
    stored = answers.get(step_id(messages, TOOLS))
    assert stored["finish_reason"] in ("stop", "length")
    assert result == usable_answer(stored, TOOLS)


def test_answerer_rejects_adapter_runtime(tiny_model_dir: Path, tiny_adapter: Path) -> None:
    runtime = get_runtime(str(tiny_model_dir), str(tiny_adapter), "float32", "cpu")
    with pytest.raises(ValueError, match="needs the base model"):
        base_model_answerer(runtime, BaseAnswers.open(None, {}))


def test_multi_turn_is_offline_source() -> None:
    assert _source_arguments(("bfcl", "bfcl_multi_turn")) == {"champ": False}
    with pytest.raises(ValueError, match="Data source 'bfcl_multi_turn=yes' takes no location"):
        _source_arguments(("bfcl_multi_turn=yes",))


def test_bfcl_source_picks_categories() -> None:
    arguments = _source_arguments(("bfcl=simple_python, multiple", "champ"))
    assert arguments == {"champ": True, "bfcl_categories": ("simple_python", "multiple")}
    with pytest.raises(ValueError, match="names no BFCL category"):
        _source_arguments(("bfcl=",))


def test_default_answers_path_names_model_and_dtype(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAYERROUTE_CACHE", str(tmp_path))
    path = base_answers_path(TrainConfig(model="offline:qwen2.5-coder-0.5b-instruct", dtype="bfloat16"))
    assert path == tmp_path / "base-answers-offline-qwen2.5-coder-0.5b-instruct-bfloat16.json"
    assert base_answers_path(TrainConfig(base_answers="x.json")) == Path("x.json")
