"""Tests of training.data: loaders on small local files and on the installed BFCL and CHAMP data, rendering, mixing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import build_tokenizer

from training.data import (
    END_OF_TURN,
    TRAIN_BFCL_CATEGORIES,
    SkipCounter,
    TraceExample,
    bfcl_data_file,
    bfcl_function_to_tool,
    bfcl_schema,
    build_training_set,
    count_examples,
    format_calls,
    load_bfcl,
    load_bfcl_eval,
    load_champ,
    load_glaive,
    load_gsm8k,
    load_hermes,
    load_turing,
    mix_examples,
    offer_unused_tools,
    read_rows,
    render_example,
    render_examples,
    render_prompt,
    split_examples,
)

WEATHER_FUNCTION = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_TOOL = {"type": "function", "function": WEATHER_FUNCTION}
TOOL_CALL = re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.DOTALL)


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def parsed_calls(target: str) -> list[dict[str, Any]]:
    return [json.loads(block) for block in TOOL_CALL.findall(target)]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer()


# --- Hermes -----------------------------------------------------------------------------------------

def hermes_system(tools_text: str) -> dict[str, str]:
    return {"from": "system", "value": "You are a function calling AI model.\n<tools>\n" + tools_text + "\n</tools>\n"
                                       "For each function call return a json object."}


HERMES_GOOD = {
    "id": "trace-1",
    "conversations": [
        hermes_system(repr([WEATHER_TOOL])),  # Python-literal tools, as many Hermes rows have.
        {"from": "human", "value": "Weather in Paris and Lyon?"},
        {"from": "gpt", "value": "<tool_call>\n{'arguments': {'city': 'Paris'}, 'name': 'get_weather'}\n</tool_call>\n"
                                 '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call>\n'},
        {"from": "tool", "value": '<tool_response>\n{"name": "get_weather", "content": "sunny"}\n</tool_response>\n'
                                  '<tool_response>\n{"name": "get_weather", "content": "rain"}\n</tool_response>'},
        {"from": "gpt", "value": "Paris is sunny and Lyon has rain."},
        {"from": "human", "value": "Thanks!"},
        {"from": "gpt", "value": "You are welcome."},
    ],
}


def test_hermes_one_example_per_assistant_step(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "hermes.jsonl", [HERMES_GOOD])
    skips = SkipCounter()
    examples = load_hermes(source, skips=skips)

    assert not skips
    assert [example.mode for example in examples] == ["tool_call", "planning", "planning"]
    assert all(example.source == "hermes" and example.trace_id == "trace-1" for example in examples)
    assert all(example.tools == [WEATHER_TOOL] for example in examples)

    first, second, third = examples
    assert first.messages == [{"role": "user", "content": "Weather in Paris and Lyon?"}]
    assert [call["name"] for call in parsed_calls(first.target)] == ["get_weather", "get_weather"]
    assert [call["arguments"] for call in parsed_calls(first.target)] == [{"city": "Paris"}, {"city": "Lyon"}]
    assert first.target.startswith("<tool_call>\n")
    assert first.target.endswith("\n</tool_call>")

    assert [message["role"] for message in second.messages] == ["user", "assistant", "tool", "tool"]
    assert second.messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert second.messages[2]["content"] == '{"name": "get_weather", "content": "sunny"}'
    assert second.target == "Paris is sunny and Lyon has rain."
    assert third.messages[-1] == {"role": "user", "content": "Thanks!"}
    assert third.target == "You are welcome."


def test_hermes_tools_field_and_text_with_call(tmp_path: Path) -> None:
    row = {
        "id": "trace-2",
        "tools": json.dumps([WEATHER_TOOL]),
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Weather in Oslo?"},
            {"from": "gpt", "value": 'Let me check.\n<tool_call>\n'
                                     '{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}\n</tool_call>'},
        ],
    }
    examples = load_hermes(write_jsonl(tmp_path / "hermes.jsonl", [row]))

    assert len(examples) == 1
    assert examples[0].messages[0] == {"role": "system", "content": "Be brief."}
    assert examples[0].tools == [WEATHER_TOOL]
    assert examples[0].mode == "tool_call"
    assert examples[0].target.startswith("Let me check.\n<tool_call>\n")
    assert parsed_calls(examples[0].target) == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]


def test_hermes_malformed_rows_counted(tmp_path: Path) -> None:
    start = [hermes_system(json.dumps([WEATHER_TOOL])), {"from": "human", "value": "Weather?"}]
    bad_call = {"from": "gpt", "value": "<tool_call>\n{'name': 'get_weather', \n</tool_call>"}
    unknown_call = {"from": "gpt", "value": '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'}
    rows = [
        {"id": "bad-call", "conversations": [*start, bad_call]},
        {"id": "unknown-tool", "conversations": [*start, unknown_call]},
        {"id": "speaker", "conversations": [{"from": "narrator", "value": "Once upon a time"}]},
        {"id": "no-turns"},
        HERMES_GOOD,
    ]
    source = tmp_path / "hermes.jsonl"
    write_jsonl(source, rows)
    with source.open("a", encoding="utf-8") as handle:
        handle.write("{not json\n")
    skips = SkipCounter()
    examples = load_hermes(source, skips=skips)

    assert len(examples) == 3
    assert skips["hermes:unparseable tool call"] == 1
    assert skips["hermes:call to a tool not in the tool list"] == 1
    assert skips["hermes:unknown speaker"] == 1
    assert skips["hermes:missing conversations"] == 1
    assert skips["hermes:invalid JSON line"] == 1
    assert sum(skips.values()) == 5


# --- Glaive -----------------------------------------------------------------------------------------

TIME_FUNCTION = {"name": "get_time", "description": "Get the time.", "parameters": {"type": "object", "properties": {}}}
GLAIVE_SYSTEM = ("SYSTEM: You are a helpful assistant with access to the following functions. Use them if required -\n"
                 + json.dumps(WEATHER_FUNCTION, indent=4) + "\n\n" + json.dumps(TIME_FUNCTION, indent=4))
GLAIVE_CHAT = (
    "USER: What is the weather in Rome?\n\n\n"
    "ASSISTANT: <functioncall> {\"name\": \"get_weather\", \"arguments\": '{\"city\": \"Rome\"}'} <|endoftext|>\n\n\n"
    "FUNCTION RESPONSE: {\"weather\": \"sunny\"}\n\n\n"
    "ASSISTANT: It is sunny in Rome. <|endoftext|>\n\n\n"
    "USER: And the time?\n\n\n"
    "ASSISTANT: <functioncall> {\"name\": \"get_time\", \"arguments\": '{}'} <|endoftext|>\n"
)


def test_glaive_one_example_per_assistant_step(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "glaive.jsonl", [{"system": GLAIVE_SYSTEM, "chat": GLAIVE_CHAT}])
    skips = SkipCounter()
    examples = load_glaive(source, skips=skips)

    assert not skips
    assert [example.mode for example in examples] == ["tool_call", "planning", "tool_call"]
    assert [tool["function"]["name"] for tool in examples[0].tools] == ["get_weather", "get_time"]
    assert examples[0].messages == [{"role": "user", "content": "What is the weather in Rome?"}]
    assert parsed_calls(examples[0].target) == [{"name": "get_weather", "arguments": {"city": "Rome"}}]
    assert [message["role"] for message in examples[1].messages] == ["user", "assistant", "tool"]
    assert examples[1].messages[2]["content"] == '{"weather": "sunny"}'
    assert examples[1].target == "It is sunny in Rome."
    assert parsed_calls(examples[2].target) == [{"name": "get_time", "arguments": {}}]


def test_glaive_without_tools_keeps_system(tmp_path: Path) -> None:
    row = {"system": "SYSTEM: You are a helpful assistant, with no access to external functions.",
           "chat": "USER: Tell me a joke.\n\n\nASSISTANT: Why did the chicken cross the road? <|endoftext|>\n"}
    examples = load_glaive(write_jsonl(tmp_path / "glaive.jsonl", [row]))

    assert len(examples) == 1
    assert examples[0].tools is None
    assert examples[0].messages[0] == {"role": "system",
                                       "content": "You are a helpful assistant, with no access to external functions."}
    assert examples[0].mode == "planning"


def test_glaive_malformed_rows_counted(tmp_path: Path) -> None:
    ask = "USER: Weather?\n\n\nASSISTANT: <functioncall> "
    rows = [
        {"system": GLAIVE_SYSTEM, "chat": ask + "{\"name\": \"get_weather\", \"arguments\": '{city: Rome'}"},
        {"system": "SYSTEM: functions -\n{\"name\": \"broken\",", "chat": "USER: hi\n\n\nASSISTANT: hello"},
        {"system": GLAIVE_SYSTEM},
        {"system": GLAIVE_SYSTEM, "chat": "USER: hi\n\n\nASSISTANT: <|endoftext|>"},
        {"system": "SYSTEM: no tools", "chat": ask + "{\"name\": \"get_weather\", \"arguments\": {}}"},
    ]
    skips = SkipCounter()
    examples = load_glaive(write_jsonl(tmp_path / "glaive.jsonl", rows), skips=skips)

    assert examples == []
    assert skips["glaive:unparseable function call"] == 1
    assert skips["glaive:unparseable function definitions"] == 1
    assert skips["glaive:missing chat"] == 1
    assert skips["glaive:empty assistant turn"] == 1
    assert skips["glaive:call to a tool not in the tool list"] == 1


# --- GSM8K and Turing -------------------------------------------------------------------------------

def test_gsm8k_parquet_planning_examples(tmp_path: Path) -> None:
    rows = [
        {"question": "Natalia sold 48 clips in April and half as many in May. How many in all?",
         "answer": ("In May she sold 48/2 = <<48/2=24>>24 clips.\n"
                    "In all she sold 48+24 = <<48+24=72>>72 clips.\n#### 72")},
        {"question": "No final line?", "answer": "It is 3."},
        {"question": "", "answer": "1 + 1 = 2\n#### 2"},
    ]
    source = tmp_path / "gsm8k.parquet"
    pq.write_table(pa.Table.from_pylist(rows), source)
    skips = SkipCounter()
    examples = load_gsm8k(source, skips=skips)

    assert len(examples) == 1
    assert examples[0].mode == "planning"
    assert examples[0].source == "gsm8k"
    assert examples[0].tools is None
    assert examples[0].messages == [{"role": "user", "content": rows[0]["question"]}]
    assert examples[0].target == ("1. In May she sold 48/2 = 24 clips.\n2. In all she sold 48+24 = 72 clips.\n"
                                  "Final answer: 72")
    assert skips["gsm8k:answer has no '####' line"] == 1
    assert skips["gsm8k:missing question"] == 1


def test_turing_json_planning_examples(tmp_path: Path) -> None:
    rows = [
        {"conversation_id": "7", "domain": "Physics", "question": "Find the escape speed.", "answer": "11.2 km/s"},
        {"conversation_id": "8", "question": "Solve x + 1 = 3.", "reasoning": "Subtract 1 from both sides.",
         "answer": "x = 2"},
        {"conversation_id": "9", "answer": "42"},
        {"conversation_id": "10", "question": "Unanswered?"},
    ]
    source = tmp_path / "turing.json"
    source.write_text(json.dumps(rows), encoding="utf-8")
    skips = SkipCounter()
    examples = load_turing(source, skips=skips)

    assert [example.trace_id for example in examples] == ["7", "8"]
    assert examples[0].target == "Final answer: 11.2 km/s"
    assert examples[1].target == "Subtract 1 from both sides.\nFinal answer: x = 2"
    assert all(example.mode == "planning" for example in examples)
    assert skips["turing:missing question"] == 1
    assert skips["turing:missing reasoning and answer"] == 1


def test_read_rows_rejects_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        read_rows(tmp_path / "missing.jsonl", "test", SkipCounter())
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'.csv'"):
        read_rows(csv_file, "test", SkipCounter())


def test_read_rows_counts_non_objects(tmp_path: Path) -> None:
    skips = SkipCounter()
    rows = read_rows(write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}, [1, 2], {"a": 2}]), "test", skips, limit=3)

    assert rows == [{"a": 1}, {"a": 2}]
    assert skips["test:row is not an object"] == 1


def test_hub_id_read_through_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    requests = []

    def fake_load_dataset(path: str, name: str | None = None, *, split: str) -> datasets.Dataset:
        requests.append((path, name, split))
        return datasets.Dataset.from_list([{"question": f"{n} + 1?", "answer": f"{n} + 1 = {n + 1}\n#### {n + 1}"}
                                           for n in range(5)])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    examples = load_gsm8k(limit=3)

    assert requests == [("openai/gsm8k", "main", "train")]
    expected = [f"1. {n} + 1 = {n + 1}\nFinal answer: {n + 1}" for n in range(3)]
    assert [example.target for example in examples] == expected


# --- BFCL -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bfcl_examples() -> list[TraceExample]:
    return load_bfcl(TRAIN_BFCL_CATEGORIES)


def test_bfcl_simple_python_item(bfcl_examples: list[TraceExample]) -> None:
    example = next(example for example in bfcl_examples if example.trace_id == "simple_python_0")

    assert example.mode == "tool_call"
    assert example.source == "bfcl:simple_python"
    assert example.messages == [{"role": "user", "content": "Find the area of a triangle with a base of 10 units "
                                                            "and height of 5 units."}]
    calls = parsed_calls(example.target)
    assert len(calls) == 1
    assert calls[0]["name"] == "calculate_triangle_area"
    assert calls[0]["arguments"] == {"base": 10, "height": 5, "unit": "units"}
    assert example.target == "<tool_call>\n" + json.dumps(calls[0]) + "\n</tool_call>"
    parameters = example.tools[0]["function"]["parameters"]
    assert parameters["type"] == "object"
    assert parameters["properties"]["base"]["type"] == "integer"


def test_bfcl_parallel_targets_join_calls(bfcl_examples: list[TraceExample]) -> None:
    example = next(example for example in bfcl_examples if example.trace_id == "parallel_0")
    calls = parsed_calls(example.target)

    assert [call["arguments"] for call in calls] == [{"artist": "Taylor Swift", "duration": 20},
                                                     {"artist": "Maroon 5", "duration": 15}]
    assert "</tool_call>\n<tool_call>" in example.target


def test_bfcl_omitted_and_nested_arguments(bfcl_examples: list[TraceExample]) -> None:
    by_id = {example.trace_id: example for example in bfcl_examples}
    hypot = parsed_calls(by_id["simple_python_2"].target)[0]["arguments"]
    java = parsed_calls(by_id["simple_java_1"].target)[0]["arguments"]

    assert hypot == {"x": 4, "y": 5, "z": 0}  # allowed ["", 0]: the first value that is not "".
    assert java["params"] == {"limit": 50, "schemaFilter": "public"}  # one allowed-value level inside a HashMap


def test_bfcl_all_omitted_argument_left_out(bfcl_examples: list[TraceExample]) -> None:
    path = bfcl_data_file("simple_python", possible_answer=True)
    answers = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    item_id, name, argument = next((row["id"], name, argument) for row in answers
                                   for name, arguments in row["ground_truth"][0].items()
                                   for argument, allowed in arguments.items() if allowed == [""])
    example = next(example for example in bfcl_examples if example.trace_id == item_id)

    call = parsed_calls(example.target)[0]
    assert call["name"] == name
    assert argument not in call["arguments"]


def test_bfcl_counts_and_no_eval_rows(bfcl_examples: list[TraceExample]) -> None:
    counts = count_examples(bfcl_examples)

    assert set(counts) == {(f"bfcl:{category}", "tool_call") for category in TRAIN_BFCL_CATEGORIES}
    assert counts[("bfcl:simple_python", "tool_call")] == 400
    assert not any("live" in example.trace_id or "irrelevance" in example.trace_id for example in bfcl_examples)


def test_bfcl_schema_type_mapping() -> None:
    schema = bfcl_schema({
        "type": "dict",
        "properties": {
            "ratio": {"type": "float", "description": "A ratio."},
            "point": {"type": "tuple", "items": {"type": "float"}},
            "anything": {"type": "any", "description": "Any value."},
            "options": {"type": "dict", "properties": {"depth": {"type": "integer"}}},
            "names": {"type": "array", "items": {"type": "String"}},
            "flag": {"type": "boolean", "optional": True},
        },
        "required": ["ratio"],
    })

    assert schema["type"] == "object"
    properties = schema["properties"]
    assert properties["ratio"] == {"type": "number", "description": "A ratio."}
    assert properties["point"] == {"type": "array", "items": {"type": "number"}}
    assert properties["anything"] == {"description": "Any value."}
    assert properties["options"] == {"type": "object", "properties": {"depth": {"type": "integer"}}}
    assert properties["names"]["items"] == {"type": "string"}
    assert properties["flag"] == {"type": "boolean"}
    assert schema["required"] == ["ratio"]


def test_bfcl_unknown_type_raises() -> None:
    with pytest.raises(ValueError, match="'complex128'"):
        bfcl_schema({"type": "complex128"})


def test_bfcl_real_tuple_and_any_converted() -> None:
    functions = [function
                 for category in ("simple_python", "parallel", "multiple", "simple_java")
                 for line in bfcl_data_file(category).read_text(encoding="utf-8").splitlines() if line.strip()
                 for function in json.loads(line)["function"]]
    typed = [(function, name) for function in functions
             for name, parameter in function["parameters"]["properties"].items()
             if parameter.get("type") in ("tuple", "any")]
    tuple_function, tuple_name = next((f, n) for f, n in typed if f["parameters"]["properties"][n]["type"] == "tuple")
    any_function, any_name = next((f, n) for f, n in typed if f["parameters"]["properties"][n]["type"] == "any")

    tuple_tool = bfcl_function_to_tool(tuple_function)["function"]["parameters"]
    any_tool = bfcl_function_to_tool(any_function)["function"]["parameters"]
    assert tuple_tool["type"] == "object"
    assert tuple_tool["properties"][tuple_name]["type"] == "array"
    assert "type" not in any_tool["properties"][any_name]


@pytest.mark.parametrize("category", ["live_simple", "irrelevance", "live_multiple", "live_irrelevance"])
def test_bfcl_eval_category_rejected_for_training(category: str) -> None:
    with pytest.raises(ValueError, match="held out for evaluation"):
        load_bfcl([category])


def test_bfcl_training_set_rejects_eval_category() -> None:
    with pytest.raises(ValueError, match="held out for evaluation"):
        build_training_set(bfcl_categories=["simple_python", "live_simple"], champ=False)


def test_bfcl_unsupported_category_raises() -> None:
    with pytest.raises(ValueError, match="Unsupported BFCL category 'multi_turn_base'"):
        load_bfcl(["multi_turn_base"])


def test_bfcl_eval_split_loads_live_simple() -> None:
    examples = load_bfcl(["live_simple"], split="eval")

    assert examples and all(example.source == "bfcl:live_simple" for example in examples)
    with pytest.raises(ValueError, match="no possible answers"):
        load_bfcl(["irrelevance"], split="eval")


def test_bfcl_eval_items_keep_ground_truth() -> None:
    live = load_bfcl_eval("live_simple")
    irrelevance = load_bfcl_eval("irrelevance")

    first = next(item for item in live if item.id == "live_simple_0-0-0")
    assert first.ground_truth == [{"get_user_info": {"user_id": [7890], "special": ["black"]}}]
    assert first.expects_call
    assert first.tools[0]["function"]["name"] == "get_user_info"
    assert len(irrelevance) == 240
    assert all(item.ground_truth == [] and not item.expects_call for item in irrelevance)


# --- CHAMP ------------------------------------------------------------------------------------------

def test_champ_planning_examples() -> None:
    skips = SkipCounter()
    examples = load_champ(skips=skips)

    assert len(examples) == 270
    assert not skips
    assert all(example.mode == "planning" for example in examples)
    assert all(example.source == "champ" and example.tools is None for example in examples)
    first = next(example for example in examples if example.trace_id == "P_Combinatorics_1")
    assert first.messages[0]["role"] == "user"
    assert first.messages[0]["content"].startswith("Let a string consist of digit 1, 2, 3.")
    assert first.target.startswith("1. Let x_n, y_n, z_n be")
    assert first.target.endswith("\nFinal answer: 239")
    assert "@@" not in first.target


# --- Rendering --------------------------------------------------------------------------------------

def weather_example(target: str = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
                    ) -> TraceExample:
    return TraceExample(messages=[{"role": "user", "content": "What is the weather in Paris?"}], target=target,
                        tools=[WEATHER_TOOL], mode="tool_call", source="test", trace_id="w")


def test_render_prompt_length_matches_prompt(tokenizer: Any) -> None:
    example = weather_example()
    rendered = render_example(example, tokenizer, max_length=1024)

    assert rendered is not None
    prompt = tokenizer.decode(rendered.input_ids[:rendered.prompt_length], clean_up_tokenization_spaces=False)
    target = tokenizer.decode(rendered.input_ids[rendered.prompt_length:], clean_up_tokenization_spaces=False)
    assert prompt == render_prompt(example, tokenizer)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert target == example.target + END_OF_TURN
    assert rendered.input_ids[-1] == tokenizer.convert_tokens_to_ids(END_OF_TURN)
    assert (rendered.mode, rendered.source) == ("tool_call", "test")


def test_render_multi_turn_trace(tmp_path: Path, tokenizer: Any) -> None:
    examples = load_hermes(write_jsonl(tmp_path / "hermes.jsonl", [HERMES_GOOD]))
    rendered = render_examples(examples, tokenizer, max_length=4096)

    assert len(rendered) == 3
    for example, result in zip(examples, rendered, strict=True):
        prompt = tokenizer.decode(result.input_ids[:result.prompt_length], clean_up_tokenization_spaces=False)
        assert prompt == render_prompt(example, tokenizer)
        assert result.after_tool_result == (example.messages[-1]["role"] == "tool")
    assert [result.after_tool_result for result in rendered] == [False, True, False]


def test_render_too_long_skipped_and_counted(tokenizer: Any) -> None:
    example = weather_example()
    full = render_example(example, tokenizer, max_length=4096)
    assert full is not None
    length = len(full.input_ids)
    skips = SkipCounter()

    assert render_example(example, tokenizer, max_length=length, skips=skips) is not None
    assert render_example(example, tokenizer, max_length=length - 1, skips=skips) is None
    assert render_example(example, tokenizer, max_length=full.prompt_length, skips=skips) is None
    assert skips == SkipCounter({"test:too long": 2})


def test_render_examples_counts_skips(tokenizer: Any) -> None:
    short = weather_example()
    long = weather_example(target="It is sunny. " * 400)
    skips = SkipCounter()
    rendered = render_examples([short, long, short], tokenizer, max_length=256, skips=skips)

    assert len(rendered) == 2
    assert skips["test:too long"] == 1


def test_render_rejects_tiny_max_length(tokenizer: Any) -> None:
    with pytest.raises(ValueError, match="max_length must be at least 2"):
        render_example(weather_example(), tokenizer, max_length=1)


@pytest.mark.real_model
def test_bfcl_targets_match_qwen_template(bfcl_examples: list[TraceExample]) -> None:
    from layerroute_agent.loading import load_model

    qwen = load_model().tokenizer
    for example in bfcl_examples[::25]:
        calls = parsed_calls(example.target)
        reply = {"role": "assistant", "content": "",
                 "tool_calls": [{"type": "function", "function": call} for call in calls]}
        full = qwen.apply_chat_template(example.messages + [reply], tools=example.tools, tokenize=False)
        assert full == render_prompt(example, qwen) + example.target + END_OF_TURN + "\n"


# --- Splitting and mixing ---------------------------------------------------------------------------

def make_examples(count: int, mode: str, source: str, steps: int = 1) -> list[TraceExample]:
    return [TraceExample(messages=[{"role": "user", "content": f"{source} {index}"}], target=f"step {step}",
                         tools=None, mode=mode, source=source, trace_id=str(index))  # type: ignore[arg-type]
            for index in range(count) for step in range(steps)]


def test_split_is_deterministic_and_keeps_traces() -> None:
    examples = make_examples(50, "planning", "a", steps=3) + make_examples(30, "tool_call", "b")
    train, evaluation = split_examples(examples, eval_fraction=0.2, seed=3)
    again = split_examples(examples, eval_fraction=0.2, seed=3)
    other = split_examples(examples, eval_fraction=0.2, seed=4)

    assert (train, evaluation) == again
    assert evaluation != other[1]
    assert len(train) + len(evaluation) == len(examples)
    assert len({(e.source, e.trace_id) for e in evaluation}) == 16  # 20% of 80 traces
    train_traces = {(e.source, e.trace_id) for e in train}
    assert not train_traces & {(e.source, e.trace_id) for e in evaluation}


def test_split_rejects_bad_fraction() -> None:
    with pytest.raises(ValueError, match="eval_fraction"):
        split_examples(make_examples(3, "planning", "a"), eval_fraction=1.0)


def test_mix_caps_each_mode() -> None:
    examples = make_examples(40, "tool_call", "a") + make_examples(10, "planning", "b")

    capped = mix_examples(examples, max_per_mode=15, seed=1)
    assert count_examples(capped) == {("a", "tool_call"): 15, ("b", "planning"): 10}
    balanced = mix_examples(examples, balance_modes=True, seed=1)
    assert count_examples(balanced) == {("a", "tool_call"): 10, ("b", "planning"): 10}
    assert mix_examples(examples, seed=1) == mix_examples(examples, seed=1)
    assert len(mix_examples(examples, seed=1)) == 50


def _tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}


def test_offer_unused_tools_share() -> None:
    calls = [TraceExample(messages=[{"role": "user", "content": f"call {i}"}], target="{}", tools=[_tool(f"f{i}")],
                          mode="tool_call", source="bfcl", trace_id=str(i)) for i in range(20)]
    examples = calls + make_examples(200, "planning", "champ")

    offered = offer_unused_tools(examples, share=0.5, seed=3)

    assert offered[:20] == calls
    changed = [e for e in offered if e.source == "champ+tools"]
    assert 70 < len(changed) < 130
    for example in changed:
        assert example.mode == "planning"
        assert example.target.startswith("step")
        assert 1 <= len(example.tools) <= 3
        # The shortest quarter of the 20 tools: names f0 to f9 are one character shorter than f10 to f19.
        assert {t["function"]["name"] for t in example.tools} <= {f"f{i}" for i in range(5)}
    unchanged = [e for e in offered[20:] if e.source == "champ"]
    assert all(e.tools is None for e in unchanged)
    assert offer_unused_tools(examples, share=0.5, seed=3) == offered
    assert offer_unused_tools(examples, share=0.0) == examples


def test_offer_unused_tools_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="Invalid share 1.5"):
        offer_unused_tools([], share=1.5)
    with pytest.raises(ValueError, match="No tool-call example carries tools"):
        offer_unused_tools(make_examples(3, "planning", "champ"), share=0.5)


def test_build_training_set_with_local_sources(tmp_path: Path) -> None:
    gsm8k = write_jsonl(tmp_path / "gsm8k.jsonl", [{"question": "1 + 1?", "answer": "1 + 1 = 2\n#### 2"},
                                                   {"question": "Bad", "answer": "no mark"}])
    hermes = write_jsonl(tmp_path / "hermes.jsonl", [HERMES_GOOD])
    skips = SkipCounter()
    examples = build_training_set(bfcl_categories=["simple_javascript"], champ=False, gsm8k=gsm8k, hermes=hermes,
                                  skips=skips)

    assert count_examples(examples) == {("bfcl:simple_javascript", "tool_call"): 50, ("gsm8k", "planning"): 1,
                                        ("hermes", "tool_call"): 1, ("hermes", "planning"): 2}
    assert skips == SkipCounter({"gsm8k:answer has no '####' line": 1})


def test_json_call_format_writes_bare_objects_one_per_line() -> None:
    first = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    second = '{"name": "get_weather", "arguments": {"city": "Lyon"}}'
    tagged = f"Checking.\n<tool_call>\n{first}\n</tool_call>\n<tool_call>\n{second}\n</tool_call>"

    assert format_calls(tagged, "json") == f"Checking.\n{first}\n{second}"


def test_tagged_call_format_keeps_the_target() -> None:
    tagged = weather_example().target

    assert format_calls(tagged, "tagged") == tagged


def test_unknown_call_format_is_named() -> None:
    with pytest.raises(ValueError, match="'xml'"):
        format_calls("text", "xml")


def test_render_example_applies_the_call_format(tokenizer: Any) -> None:
    rendered = render_example(weather_example(), tokenizer, max_length=1024, call_format="json")

    assert rendered is not None
    target = tokenizer.decode(rendered.input_ids[rendered.prompt_length:], clean_up_tokenization_spaces=False)
    assert target == '{"name": "get_weather", "arguments": {"city": "Paris"}}' + END_OF_TURN
