"""Parsing replies into tool calls, and rendering LangChain messages for chat templates."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from layerroute_agent.tool_calls import first_call_end, parse_reply, streamable_text, to_template_messages

TOOLS = ["get_weather", "convert_currency"]


def test_tagged_call() -> None:
    parsed = parse_reply('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call>', TOOLS)
    assert [(c["name"], c["args"]) for c in parsed.tool_calls] == [("get_weather", {"city": "Lyon"})]
    assert parsed.content == ""
    assert parsed.invalid_tool_calls == []


def test_several_tagged_calls_and_text() -> None:
    text = ('Let me check.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Lyon"}}</tool_call>\n'
            '<tool_call>{"name": "convert_currency", "arguments": "{\\"amount\\": 20}"}</tool_call>')
    parsed = parse_reply(text, TOOLS)
    assert [c["name"] for c in parsed.tool_calls] == ["get_weather", "convert_currency"]
    assert parsed.tool_calls[1]["args"] == {"amount": 20}
    assert parsed.content == "Let me check."
    assert len({c["id"] for c in parsed.tool_calls}) == 2


def test_bare_json_call_after_tags_stripped() -> None:
    parsed = parse_reply('\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n', TOOLS)
    assert [(c["name"], c["args"]) for c in parsed.tool_calls] == [("get_weather", {"city": "Paris"})]


def test_bare_json_list_and_fence() -> None:
    parsed = parse_reply('```json\n[{"name": "get_weather", "arguments": {"city": "A"}}, '
                         '{"name": "get_weather", "parameters": {"city": "B"}}]\n```', TOOLS)
    assert [c["args"]["city"] for c in parsed.tool_calls] == ["A", "B"]


def test_bare_non_call_json_is_content() -> None:
    parsed = parse_reply('{"temperature": 21}', TOOLS)
    assert parsed.tool_calls == []
    assert parsed.invalid_tool_calls == []
    assert parsed.content == '{"temperature": 21}'


def test_no_tools_bound_keeps_json_as_content() -> None:
    parsed = parse_reply('{"name": "get_weather", "arguments": {}}', None)
    assert parsed.tool_calls == []
    assert parsed.content.startswith("{")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>', "invalid JSON in <tool_call>"),
        ('<tool_call>{"name": "get_weather", "arguments": {"city"', "unterminated <tool_call> block"),
        ('<tool_call>{"arguments": {}}</tool_call>', "no 'name' string"),
        ('<tool_call>{"name": "send_email", "arguments": {}}</tool_call>', "unknown tool 'send_email'"),
        ('<tool_call>{"name": "get_weather", "arguments": [1, 2]}</tool_call>', "must be a JSON object, got list"),
        ('<tool_call>{"name": "get_weather", "arguments": "{oops"}</tool_call>', "'arguments' is not valid JSON"),
        ('<tool_call>[1]</tool_call>', "expected a JSON object, got int"),
        ('{"name": "get_weather", "arguments": {"city": "Lyon"', "malformed JSON tool call"),
    ],
)
def test_malformed_calls_become_invalid_tool_calls(text: str, reason: str) -> None:
    parsed = parse_reply(text, TOOLS)
    assert parsed.tool_calls == []
    assert len(parsed.invalid_tool_calls) == 1
    assert reason in parsed.invalid_tool_calls[0]["error"]
    assert parsed.invalid_tool_calls[0]["args"]


def test_valid_and_invalid_calls_in_one_reply() -> None:
    text = ('<tool_call>{"name": "get_weather", "arguments": {"city": "Lyon"}}</tool_call>'
            '<tool_call>{"name": "get_weather", "arguments": {</tool_call>')
    parsed = parse_reply(text, TOOLS)
    assert len(parsed.tool_calls) == 1
    assert len(parsed.invalid_tool_calls) == 1


def test_streamable_text_holds_back_possible_calls() -> None:
    assert streamable_text("Sure <tool_") == "Sure"
    assert streamable_text('  {"name"') == ""
    assert streamable_text("text <tool_call>{") == "text"
    assert streamable_text("\nThe weather is sunny. ") == "The weather is sunny."
    assert streamable_text('A <tool_call>{"name": "x"}</tool_call>\nB') == "A \nB"


def test_streamable_text_is_a_prefix_of_parsed_content() -> None:
    reply = '\nLet me check.<tool_call>{"name": "get_weather", "arguments": {}}</tool_call><tool_call>{bad}</tool_call>\nDone'
    content = parse_reply(reply, TOOLS).content
    for end in range(len(reply) + 1):
        assert content.startswith(streamable_text(reply[:end])), reply[:end]
    assert streamable_text(reply) == content


def test_several_calls_in_one_tag() -> None:
    parsed = parse_reply('<tool_call>{"name": "get_weather", "arguments": {"city": "A"}}\n'
                         '{"name": "convert_currency", "arguments": {}}</tool_call>', TOOLS)
    assert [c["name"] for c in parsed.tool_calls] == ["get_weather", "convert_currency"]
    listed = parse_reply('<tool_call>[{"name": "get_weather", "arguments": {"city": "A"}}, '
                         '{"name": "get_weather", "arguments": {"city": "B"}}]</tool_call>', TOOLS)
    assert [c["args"]["city"] for c in listed.tool_calls] == ["A", "B"]


def test_json_answer_is_not_a_call() -> None:
    parsed = parse_reply('{"name": "Paris", "population": 2}', TOOLS)
    assert parsed.tool_calls == []
    assert parsed.invalid_tool_calls == []
    assert parsed.content == '{"name": "Paris", "population": 2}'


def test_template_messages_round_trip_tool_turns() -> None:
    messages = [
        SystemMessage("be brief"),
        HumanMessage("weather in Lyon?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Lyon"}, "id": "c1"}]),
        ToolMessage("sunny, 21 C", tool_call_id="c1", name="get_weather"),
    ]
    converted = to_template_messages(messages)
    assert [m["role"] for m in converted] == ["system", "user", "assistant", "tool"]
    assert converted[2]["tool_calls"] == [{"type": "function", "function": {"name": "get_weather",
                                                                           "arguments": {"city": "Lyon"}}}]
    assert converted[3]["content"] == "sunny, 21 C"


def test_template_messages_join_text_blocks() -> None:
    converted = to_template_messages([HumanMessage(content=[{"type": "text", "text": "a"}, "b"])])
    assert converted[0]["content"] == "ab"


def test_template_messages_reject_unknown_types() -> None:
    from langchain_core.messages import ChatMessage

    with pytest.raises(TypeError, match="Unsupported message type ChatMessage"):
        to_template_messages([ChatMessage(role="critic", content="x")])


def test_text_after_the_call_object_is_ignored() -> None:
    parsed = parse_reply('<tool_call>{"name": "get_weather", "arguments": {"city": "Lyon"}}.<|im_start|>', TOOLS)
    assert [(c["name"], c["args"]) for c in parsed.tool_calls] == [("get_weather", {"city": "Lyon"})]


def test_complete_bare_calls_survive_a_cut_reply() -> None:
    text = '{"name": "get_weather", "arguments": {"city": "A"}}\n{"name": "get_weather", "arguments": {"ci'
    parsed = parse_reply(text, TOOLS)
    assert [c["args"] for c in parsed.tool_calls] == [{"city": "A"}]
    assert len(parsed.invalid_tool_calls) == 1
    assert parsed.invalid_tool_calls[0]["args"].startswith('{"name": "get_weather", "arguments": {"ci')


CALL = '{"name": "get_weather", "arguments": {"city": "Lyon"}}'


@pytest.mark.parametrize(("text", "end"), [
    (CALL, len(CALL)),
    (f"\n{CALL}\n{CALL}", len(CALL) + 1),
    (CALL[:-1], None),
    (f"<tool_call>\n{CALL}\n</tool_call>\n<tool_call>", len(f"<tool_call>\n{CALL}\n</tool_call>")),
    (f"Let me check.<tool_call>\n{CALL}", None),
    (f"```json\n{CALL}\n```\nmore", len(f"```json\n{CALL}\n```")),
    (f"```json\n{CALL}", None),
    ('{"city": "Lyon"} and more', None),
    (f"[{CALL}, {CALL}]", None),
    ("The weather is fine.", None),
])
def test_first_call_end_finds_complete_call(text: str, end: int | None) -> None:
    assert first_call_end(text) == end
    if end is not None:
        assert len(parse_reply(text[:end], ["get_weather"]).tool_calls) == 1
