"""LayerRouteChat on a tiny random model: messages in, chunks and metadata out, tools, threads, async."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import script_replies
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool

import layerroute_agent.runtime as runtime_module
from layerroute_agent import ComputeReportHandler, LayerRouteChat


@tool
def get_weather(city: str) -> str:
    """Return the weather in a city."""
    return f"sunny in {city}"


@tool
def convert_currency(amount: float, source: str, target: str) -> str:
    """Convert an amount of money from one currency to another."""
    return f"{amount} {source} in {target}"


@pytest.fixture
def llm(tiny_model_dir: Path) -> LayerRouteChat:
    return LayerRouteChat(model=str(tiny_model_dir), adapter=None, max_tokens=12)


def test_invoke_returns_usage_and_compute(llm: LayerRouteChat) -> None:
    reply = llm.invoke("What is the weather?")
    assert isinstance(reply, AIMessage)
    assert reply.usage_metadata["output_tokens"] <= 12
    assert reply.usage_metadata["total_tokens"] == reply.usage_metadata["input_tokens"] + \
        reply.usage_metadata["output_tokens"]
    metadata = reply.response_metadata
    assert metadata["model_name"] == llm.model_name
    assert metadata["finish_reason"] in ("stop", "length")
    compute = metadata["compute"]
    assert compute["mode"] == "planning"
    assert compute["routing"] == "no_tools"
    assert compute["blocks_skipped"] == []
    assert compute["blocks_run"] == [0, 1, 2, 3]
    assert compute["flops_executed"] > 0
    assert compute["flops_full"] > 0


def test_stream_aggregates_to_invoke(llm: LayerRouteChat) -> None:
    chunks = list(llm.stream("Convert 20 EUR"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    reply = llm.invoke("Convert 20 EUR")
    assert merged.content == reply.content
    assert merged.usage_metadata == reply.usage_metadata


def test_drafting_keeps_replies_and_is_reported(tiny_model_dir: Path) -> None:
    plain = LayerRouteChat(model=str(tiny_model_dir), adapter=None, max_tokens=24, draft_tokens=0)
    drafted = LayerRouteChat(model=str(tiny_model_dir), adapter=None, max_tokens=24)
    assert drafted.draft_tokens == 4
    prompt = "weather in Lyon, " + plain.invoke("weather in Lyon").content + " weather in Lyon"
    plain_reply, drafted_reply = plain.invoke(prompt), drafted.invoke(prompt)
    assert drafted_reply.content == plain_reply.content
    without, drafting = plain_reply.response_metadata["compute"], drafted_reply.response_metadata["compute"]
    assert (without["tokens_drafted"], without["tokens_accepted"]) == (0, 0)
    # One pass per token after the first, plus one for the end-of-turn token when the reply ended early.
    assert without["decode_passes"] in (without["tokens_out"] - 1, without["tokens_out"])
    assert drafting["tokens_drafted"] >= drafting["tokens_accepted"] > 0
    assert drafting["decode_passes"] < without["decode_passes"]
    # The full-depth reference decodes one token per pass, so the two replies have the same reference FLOPs.
    assert drafting["flops_full"] == without["flops_full"]
    per_call = drafted.invoke(prompt, draft_tokens=0).response_metadata["compute"]
    assert (per_call["tokens_drafted"], per_call["decode_passes"]) == (0, without["decode_passes"])


def test_max_tokens_gives_length_finish(tiny_model_dir: Path) -> None:
    llm = LayerRouteChat(model=str(tiny_model_dir), adapter=None, max_tokens=3)
    reply = llm.invoke("hello", stop=None)
    # The fixed random model emits no end-of-turn token in its first three tokens for this prompt.
    assert reply.response_metadata["finish_reason"] == "length"
    assert reply.usage_metadata["output_tokens"] == 3
    assert reply.response_metadata["compute"]["tokens_out"] == 3


def test_named_tool_choice_forces_that_tool(llm: LayerRouteChat) -> None:
    reply = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("weather?")
    # A random model cannot finish the JSON, so the forced call arrives as an invalid call, never an exception.
    calls = reply.tool_calls + reply.invalid_tool_calls
    assert len(calls) == 1
    assert calls[0]["name"] in ("get_weather", None)
    assert reply.response_metadata["compute"]["mode"] == "tool_call"
    for invalid in reply.invalid_tool_calls:
        assert invalid["error"]
        assert invalid["args"].startswith('{"name": "get_weather", "arguments": {')


def test_tool_choice_none_offers_no_tool(llm: LayerRouteChat) -> None:
    reply = llm.bind_tools([get_weather], tool_choice="none").invoke("weather?")
    assert reply.tool_calls == []
    assert reply.invalid_tool_calls == []
    assert reply.response_metadata["compute"]["mode"] == "planning"


def test_unknown_tool_choice_is_rejected(llm: LayerRouteChat) -> None:
    with pytest.raises(ValueError, match="tool_choice 'send_email' is not supported"):
        llm.bind_tools([get_weather], tool_choice="send_email")


def test_tool_message_history_is_rendered(llm: LayerRouteChat) -> None:
    history = [
        HumanMessage("weather in Lyon?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Lyon"}, "id": "c1"}]),
        ToolMessage("sunny in Lyon", tool_call_id="c1"),
    ]
    tools = [convert_to_openai_tool(get_weather)]
    prompt_ids = llm._prompt_ids(llm.runtime, history, tools, prefix="")
    prompt = llm.runtime.tokenizer.decode(prompt_ids)
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Lyon"}}</tool_call>' in prompt
    assert "<tool_response>sunny in Lyon</tool_response>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    reply = llm.bind_tools([get_weather]).invoke(history)
    assert reply.usage_metadata["input_tokens"] == len(prompt_ids)


def test_instances_share_the_loaded_model(tiny_model_dir: Path) -> None:
    first = LayerRouteChat(model=str(tiny_model_dir), adapter=None)
    second = LayerRouteChat(model=str(tiny_model_dir), adapter=None, temperature=0.7)
    assert first.runtime is second.runtime


def test_threads_give_the_same_greedy_replies(llm: LayerRouteChat) -> None:
    prompts = [f"question number {i}" for i in range(6)]
    sequential = [llm.invoke(p).content for p in prompts]
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = list(pool.map(lambda p: llm.invoke(p).content, prompts))
    assert threaded == sequential


def test_seeded_sampling_is_reproducible(tiny_model_dir: Path) -> None:
    llm = LayerRouteChat(model=str(tiny_model_dir), adapter=None, temperature=1.0, top_p=0.9, seed=11)
    assert llm.invoke("hi").content == llm.invoke("hi").content


async def test_async_invoke_and_stream(llm: LayerRouteChat) -> None:
    reply, chunks = await asyncio.gather(llm.ainvoke("hello"), _collect(llm.astream("hello")))
    assert "".join(c.content for c in chunks) == reply.content


async def _collect(stream) -> list[AIMessageChunk]:
    return [chunk async for chunk in stream]


def test_compute_report_and_handler(llm: LayerRouteChat) -> None:
    llm.reset_compute_report()
    handler = ComputeReportHandler()
    llm.invoke("one", config={"callbacks": [handler]})
    llm.bind_tools([get_weather], tool_choice="any").invoke("two", config={"callbacks": [handler]})
    report = llm.compute_report()
    assert [s.mode for s in report.steps] == ["planning", "tool_call"]
    assert [s.mode for s in handler.report().steps] == ["planning", "tool_call"]
    data = json.loads(report.to_json())
    assert {"mode", "tool_calls", "flops_executed", "flops_full", "blocks_skipped"} <= set(data["steps"][0])
    table = report.to_markdown()
    assert table.count("\n") == len(report.steps) + 2
    assert "| 2 | tool_call |" in table


def test_model_spec_errors_name_the_fix() -> None:
    with pytest.raises(FileNotFoundError, match="neither a model folder nor a .gguf file"):
        LayerRouteChat(model="./no/such/folder").invoke("x")
    with pytest.raises(FileNotFoundError, match="pass an adapter folder, 'default' or None"):
        LayerRouteChat(adapter="/no/such/adapter").invoke("x")


def test_stream_and_invoke_agree_on_mixed_reply(llm: LayerRouteChat, monkeypatch: pytest.MonkeyPatch) -> None:
    pieces = ["\n", "Let me ", "check.", "<tool_call>", '{"name": "get_weather", "arguments": {"city": "Lyon"}}',
              "</tool_call>", "<tool_call>{bad}</tool_call>", "\nDone"]
    script_replies(llm, pieces, monkeypatch)
    bound = llm.bind_tools([get_weather])
    chunks = list(bound.stream("weather?"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    reply = bound.invoke("weather?")
    assert reply.content == merged.content == "Let me check.\nDone"
    assert [c["args"] for c in reply.tool_calls] == [c["args"] for c in merged.tool_calls] == [{"city": "Lyon"}]
    assert len(reply.invalid_tool_calls) == len(merged.invalid_tool_calls) == 1
    assert "invalid JSON in <tool_call>" in reply.invalid_tool_calls[0]["error"]
    assert "invalid JSON in <tool_call>" in merged.invalid_tool_calls[0]["args"]


def test_call_time_tool_choice_is_normalised(llm: LayerRouteChat, monkeypatch: pytest.MonkeyPatch) -> None:
    script_replies(llm, ['"city": "Lyon"}}'], monkeypatch)
    tools = [get_weather]
    for choice in ("required", True, {"type": "function", "function": {"name": "get_weather"}}, {"type": "any"}):
        reply = llm.invoke("weather?", tools=tools, tool_choice=choice)
        assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("get_weather", {"city": "Lyon"})], choice


def test_forced_prefix_starts_the_call(llm: LayerRouteChat, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    runtime = llm.runtime
    real_run_step = runtime.run_step

    def run_step(prompt_ids, config, *depth):
        seen["prompt"] = runtime.tokenizer.decode(prompt_ids)
        seen["constraint"] = config.constraint
        yield from real_run_step(prompt_ids, config, *depth)

    monkeypatch.setattr(runtime, "run_step", run_step)
    llm.bind_tools([get_weather], tool_choice="get_weather").invoke("weather?")
    assert seen["prompt"].endswith('<|im_start|>assistant\n{"name": "get_weather", "arguments": {')
    assert seen["constraint"].complete_length('"city": "Lyon"}} and more') == len('"city": "Lyon"}}')


def test_bad_call_settings_name_the_argument(llm: LayerRouteChat) -> None:
    with pytest.raises(ValueError, match="max_tokens must be a positive integer, got 0"):
        llm.invoke("x", max_tokens=0)
    assert llm.invoke("x", max_tokens=None).usage_metadata["output_tokens"] <= llm.max_tokens
    with pytest.raises(ValueError, match="tool_choice {'type': 'web'} is not supported"):
        llm.bind_tools([get_weather], tool_choice={"type": "web"})
    for bad in (-1, 2.5, "4", True):
        with pytest.raises(ValueError, match=r"draft_tokens must be an integer >= 0 \(0 turns drafting off\), got "):
            llm.invoke("x", draft_tokens=bad)
    assert llm.invoke("x", draft_tokens=None).usage_metadata["output_tokens"] <= llm.max_tokens


def test_too_long_prompt_is_rejected(llm: LayerRouteChat) -> None:
    with pytest.raises(ValueError, match=r"The prompt has \d+ tokens but .* handles at most 1024"):
        llm.invoke("weather " * 1200)


def test_cache_key_includes_seed(llm: LayerRouteChat) -> None:
    first = LayerRouteChat(model=llm.model_name, adapter=None, seed=1)._identifying_params
    second = LayerRouteChat(model=llm.model_name, adapter=None, seed=2)._identifying_params
    assert first != second


def test_path_spellings_share_one_model(tiny_model_dir: Path) -> None:
    plain = LayerRouteChat(model=str(tiny_model_dir), adapter=None)
    slashed = LayerRouteChat(model=str(tiny_model_dir) + "/", adapter=None)
    assert plain.runtime is slashed.runtime


def test_episode_report_round_trips(llm: LayerRouteChat) -> None:
    from layerroute_agent import EpisodeReport

    llm.reset_compute_report()
    llm.invoke("one")
    report = llm.compute_report()
    assert EpisodeReport.from_dict(json.loads(report.to_json())) == report


def test_one_call_mode_ends_at_first_call(llm: LayerRouteChat, monkeypatch: pytest.MonkeyPatch) -> None:
    from layerroute_agent.tool_calls import first_call_end

    seen = script_replies(llm, ['{"name": "get_weather", "arguments": {"city": "Lyon"}}'], monkeypatch)
    llm.bind_tools([get_weather], parallel_tool_calls=False).invoke("weather?")
    assert seen["config"].end_after is first_call_end
    one_call = LayerRouteChat(model=llm.model_name, adapter=None, max_tokens=12, parallel_tool_calls=False)
    one_call.bind_tools([get_weather]).invoke("weather?")
    assert seen["config"].end_after is first_call_end
    one_call.bind_tools([get_weather], parallel_tool_calls=True).invoke("weather?")
    assert seen["config"].end_after is None
    one_call.invoke("no tools bound")
    assert seen["config"].end_after is None
    # A forced call is already one call, through its constraint.
    one_call.bind_tools([get_weather], tool_choice="get_weather").invoke("weather?")
    assert seen["config"].end_after is None
    assert seen["config"].constraint is not None


def test_step_after_tool_result_runs_every_block(tiny_model_dir: Path) -> None:
    history = [HumanMessage("weather in Lyon?"),
               AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Lyon"}, "id": "c1"}]),
               ToolMessage("sunny in Lyon", tool_call_id="c1")]
    default = LayerRouteChat(model=str(tiny_model_dir), adapter=None, max_tokens=4).bind_tools([get_weather])
    assert default.invoke(history).response_metadata["compute"]["routing"] == "after_tool_result"
    assert default.invoke(history[:1]).response_metadata["compute"]["routing"] == "untrained"
    routed = LayerRouteChat(model=str(tiny_model_dir), adapter=None, max_tokens=4, route_after_tool_results=True)
    assert routed.bind_tools([get_weather]).invoke(history).response_metadata["compute"]["routing"] == "untrained"
    off = LayerRouteChat(model=str(tiny_model_dir), adapter=None, max_tokens=4, routing=False)
    assert off.invoke(history).response_metadata["compute"]["routing"] == "override"


def record_models(monkeypatch: pytest.MonkeyPatch) -> list:
    """Make every step record the model it runs (routed or base twin) in the returned list."""
    seen = []
    real_stream = runtime_module.stream_tokens

    def stream_tokens(model, *args):
        seen.append(model)
        return real_stream(model, *args)

    monkeypatch.setattr(runtime_module, "stream_tokens", stream_tokens)
    return seen


def test_step_after_tool_result_uses_base_weights(tiny_model_dir: Path, tiny_adapter: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    history = [HumanMessage("weather in Lyon?"),
               AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Lyon"}, "id": "c1"}]),
               ToolMessage("sunny in Lyon", tool_call_id="c1")]
    llm = LayerRouteChat(model=str(tiny_model_dir), adapter=str(tiny_adapter), max_tokens=4)
    runtime = llm.runtime
    assert runtime.base is not None and runtime.base is not runtime.routed
    seen = record_models(monkeypatch)
    llm.bind_tools([get_weather]).invoke(history)
    llm.bind_tools([get_weather]).invoke(history[:1])
    LayerRouteChat(model=str(tiny_model_dir), adapter=str(tiny_adapter), max_tokens=4, routing=False).invoke(history)
    assert seen == [runtime.base, runtime.routed, runtime.routed]


def test_steps_outside_agents_use_base_weights(tiny_model_dir: Path, tiny_adapter: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    llm = LayerRouteChat(model=str(tiny_model_dir), adapter=str(tiny_adapter), max_tokens=6)
    runtime = llm.runtime
    seen = record_models(monkeypatch)
    tools = [get_weather, convert_currency]
    tool_result = [HumanMessage("weather in Lyon?"),
                   AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Lyon"}, "id": "c1"}]),
                   ToolMessage("sunny in Lyon", tool_call_id="c1")]
    cases = [
        ("named tool", lambda chat: chat.bind_tools(tools, tool_choice="get_weather").invoke("weather?"),
         "forced_reply"),
        ("any", lambda chat: chat.bind_tools(tools, tool_choice="any").invoke("weather?"), "forced_reply"),
        ("required", lambda chat: chat.bind_tools(tools, tool_choice="required").invoke("weather?"), "forced_reply"),
        ("true", lambda chat: chat.bind_tools([get_weather], tool_choice=True).invoke("weather?"), "forced_reply"),
        ("auto", lambda chat: chat.bind_tools(tools, tool_choice="auto").invoke("weather?"), "learnt"),
        ("free", lambda chat: chat.bind_tools(tools).invoke("weather?"), "learnt"),
        ("none", lambda chat: chat.bind_tools(tools, tool_choice="none").invoke("weather?"), "no_tools"),
        ("plain", lambda chat: chat.invoke("hello"), "no_tools"),
        ("structured", lambda chat: chat.with_structured_output({"title": "City", "type": "object"},
                                                                 include_raw=True).invoke("city?")["raw"],
         "forced_reply"),
        ("forced after result", lambda chat: chat.bind_tools(tools, tool_choice="any").invoke(tool_result),
         "after_tool_result"),
    ]
    for name, call, reason in cases:
        seen.clear()
        assert call(llm).response_metadata["compute"]["routing"] == reason, name
        assert seen == [runtime.routed if reason == "learnt" else runtime.base], name

    routed = llm.model_copy(update={"route_outside_agent_steps": True})
    for name, call, reason in cases:
        seen.clear()
        expected = "after_tool_result" if reason == "after_tool_result" else "learnt"
        assert call(routed).response_metadata["compute"]["routing"] == expected, name
        assert seen == [runtime.base if expected == "after_tool_result" else runtime.routed], name


def test_anthropic_tool_result_counts_as_tool_result(tiny_model_dir: Path) -> None:
    llm = LayerRouteChat(model=str(tiny_model_dir), adapter=None, max_tokens=4).bind_tools([get_weather])
    call = AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Lyon"}, "id": "c1"}])
    result_only = HumanMessage([{"type": "tool_result", "tool_use_id": "c1", "content": "sunny in Lyon"}])
    with_text = HumanMessage([{"type": "tool_result", "tool_use_id": "c1", "content": "sunny in Lyon"},
                              {"type": "text", "text": "And in Paris?"}])
    history = [HumanMessage("weather in Lyon?"), call]
    assert llm.invoke([*history, result_only]).response_metadata["compute"]["routing"] == "after_tool_result"
    assert llm.invoke([*history, with_text]).response_metadata["compute"]["routing"] == "untrained"
