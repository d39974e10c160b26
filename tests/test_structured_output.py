"""with_structured_output on a tiny model: prompts, parsing, validation and errors that show the raw reply."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import script_replies
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field
from typing_extensions import Annotated, TypedDict

from layerroute_agent import LayerRouteChat
from layerroute_agent.structured_output import schema_errors
from layerroute_agent.tool_calls import to_template_messages


class Joke(BaseModel):
    """Joke to tell user."""

    setup: str = Field(description="question to set up a joke")
    punchline: str = Field(description="answer to resolve the joke")


class JokeDict(TypedDict):
    """Joke to tell user."""

    setup: Annotated[str, ..., "question to set up a joke"]
    rating: Annotated[int | None, None, "from 1 to 10"]


JOKE_SCHEMA = {
    "title": "Joke",
    "type": "object",
    "properties": {"setup": {"type": "string"}, "punchline": {"type": "string"}},
    "required": ["setup", "punchline"],
}


@pytest.fixture
def llm(tiny_model_dir: Path) -> LayerRouteChat:
    return LayerRouteChat(model=str(tiny_model_dir), adapter=None, max_tokens=12)


def test_json_schema_prompt_and_result(llm: LayerRouteChat, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = script_replies(llm, ['"setup": "Why?", ', '"punchline": "Because."}'], monkeypatch)
    joke = llm.with_structured_output(Joke).invoke("Tell me a joke.")
    assert joke == Joke(setup="Why?", punchline="Because.")
    assert seen["prompt"].startswith("<|im_start|>system\nReply with one JSON object and nothing else.")
    assert '"punchline": {"description": "answer to resolve the joke"' in seen["prompt"]
    assert seen["prompt"].endswith("<|im_start|>assistant\n{")
    assert seen["config"].constraint.complete_length('"a": 1} more') == len('"a": 1}')


def test_instruction_joins_existing_system_message(llm: LayerRouteChat, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = script_replies(llm, ['"setup": "a", "punchline": "b"}'], monkeypatch)
    llm.with_structured_output(Joke).invoke([SystemMessage("Be brief."), HumanMessage("Joke?")])
    assert seen["prompt"].startswith("<|im_start|>system\nBe brief.\n\nReply with one JSON object")
    assert seen["prompt"].count("<|im_start|>system") == 1


def test_schema_kinds_and_methods(llm: LayerRouteChat, monkeypatch: pytest.MonkeyPatch) -> None:
    script_replies(llm, ['"setup": "a", "punchline": "b"}'], monkeypatch)
    for method in ("json_schema", "json_mode"):
        assert llm.with_structured_output(JOKE_SCHEMA, method=method).invoke("x") == {"setup": "a", "punchline": "b"}
        assert llm.with_structured_output(JokeDict, method=method).invoke("x") == {"setup": "a", "punchline": "b"}
    assert llm.with_structured_output(None, method="json_mode").invoke("x") == {"setup": "a", "punchline": "b"}


def test_function_calling_reads_the_forced_call(llm: LayerRouteChat, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = script_replies(llm, ['"setup": "a", "punchline": "b"}}'], monkeypatch)
    joke = llm.with_structured_output(Joke, method="function_calling").invoke("x")
    assert joke == Joke(setup="a", punchline="b")
    assert seen["prompt"].endswith('<|im_start|>assistant\n{"name": "Joke", "arguments": {')


def test_bad_reply_raises_with_raw_text(llm: LayerRouteChat, monkeypatch: pytest.MonkeyPatch) -> None:
    script_replies(llm, ['"setup": "Why?"}'], monkeypatch)
    with pytest.raises(OutputParserException, match=r"(?s)does not fit Joke.*Raw reply: '\{\"setup\": \"Why\?\"\}'"):
        llm.with_structured_output(Joke).invoke("x")
    with pytest.raises(OutputParserException, match=r"missing required property 'punchline'"):
        llm.with_structured_output(JOKE_SCHEMA).invoke("x")


def test_cut_reply_raises_not_json(llm: LayerRouteChat, monkeypatch: pytest.MonkeyPatch) -> None:
    script_replies(llm, ['"setup": "Why'], monkeypatch)
    with pytest.raises(OutputParserException, match=r"(?s)is not valid JSON.*Raw reply: '\{\"setup\": \"Why'"):
        llm.with_structured_output(Joke).invoke("x")
    with pytest.raises(OutputParserException, match=r"has no valid Joke tool call"):
        llm.with_structured_output(Joke, method="function_calling").invoke("x")


def test_include_raw_returns_error_not_none(llm: LayerRouteChat, monkeypatch: pytest.MonkeyPatch) -> None:
    script_replies(llm, ['"setup": 3}'], monkeypatch)
    out = llm.with_structured_output(Joke, include_raw=True).invoke("x")
    assert isinstance(out["raw"], AIMessage)
    assert out["raw"].content == '{"setup": 3}'
    assert out["parsed"] is None
    assert isinstance(out["parsing_error"], OutputParserException)
    script_replies(llm, ['"setup": "a", "punchline": "b"}'], monkeypatch)
    out = llm.with_structured_output(Joke, include_raw=True).invoke("x")
    assert out["parsed"] == Joke(setup="a", punchline="b")
    assert out["parsing_error"] is None


def test_stream_yields_the_parsed_object(llm: LayerRouteChat, monkeypatch: pytest.MonkeyPatch) -> None:
    script_replies(llm, ['"setup": "a", ', '"punchline": "b"}'], monkeypatch)
    chunks = list(llm.with_structured_output(JOKE_SCHEMA).stream("x"))
    assert chunks == [{"setup": "a", "punchline": "b"}]


def test_structured_output_argument_errors(llm: LayerRouteChat) -> None:
    with pytest.raises(ValueError, match="method 'xml' is not supported"):
        llm.with_structured_output(Joke, method="xml")
    with pytest.raises(ValueError, match="method 'json_schema' needs a schema"):
        llm.with_structured_output(None)
    with pytest.raises(ValueError, match="unsupported arguments \\['tools'\\]"):
        llm.with_structured_output(Joke, tools=[])
    with pytest.raises(ValueError, match="top-level 'title'"):
        llm.with_structured_output({"type": "object"})


def test_response_format_argument(llm: LayerRouteChat, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = script_replies(llm, ['"a": 1}'], monkeypatch)
    reply = llm.invoke("x", response_format={"type": "json_object"})
    assert reply.content == '{"a": 1}'
    assert "Reply with one JSON object and nothing else.<|im_end|>" in seen["prompt"]
    with pytest.raises(ValueError, match="response_format {'type': 'yaml'} is not supported"):
        llm.invoke("x", response_format={"type": "yaml"})
    with pytest.raises(NotImplementedError, match="cannot be combined with tools"):
        llm.invoke("x", response_format={"type": "json_object"}, tools=[Joke])


@pytest.mark.parametrize(("value", "problem"), [
    ({"setup": "a", "punchline": "b"}, None),
    ({"setup": "a"}, "$: missing required property 'punchline'"),
    ({"setup": 1, "punchline": "b"}, "$.setup: expected string, got 1"),
    ([], "$: expected object, got []"),
])
def test_schema_errors(value: object, problem: str | None) -> None:
    problems = schema_errors(value, JOKE_SCHEMA)
    assert problems == ([] if problem is None else [problem])


def test_schema_errors_nested_refs_and_options() -> None:
    schema = {
        "type": "object",
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"],
                            "additionalProperties": False}},
        "properties": {
            "points": {"type": "array", "items": {"$ref": "#/$defs/Point"}},
            "unit": {"enum": ["m", "km"]},
            "label": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "note": {"type": "string"},
        },
        "required": ["points"],
    }
    assert schema_errors({"points": [{"x": 1}, {"x": 2.5}], "unit": "m", "label": None, "note": None}, schema) == []
    assert schema_errors({"points": [{"x": "1"}]}, schema) == ["$.points[0].x: expected number, got \"1\""]
    assert schema_errors({"points": [{"x": 1, "y": 2}]}, schema) == ["$.points[0]: unexpected property 'y'"]
    assert schema_errors({"points": [], "unit": "mi"}, schema) == ["$.unit: \"mi\" is not one of ['m', 'km']"]
    assert schema_errors({"points": [], "label": 3}, schema) == ["$.label: 3 matches none of the anyOf options"]
    assert schema_errors(True, {"type": "integer"}) == ["$: expected integer, got true"]


def test_anthropic_tool_result_becomes_tool_turn() -> None:
    message = HumanMessage([
        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "green"}]},
        {"type": "text", "text": "what's my favourite colour?"},
    ])
    assert to_template_messages([message]) == [
        {"role": "tool", "content": "green", "name": ""},
        {"role": "user", "content": "what's my favourite colour?"},
    ]
