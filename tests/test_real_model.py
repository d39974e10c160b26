"""A few checks on the real offline Qwen2.5-Coder-0.5B-Instruct model (marked ``real_model``; slow)."""

from __future__ import annotations

import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from layerroute_agent import LayerRouteChat
from layerroute_agent.routing import RoutedCausalLM, RouteOverride
from layerroute_agent.runtime import shipped_adapter_path

pytestmark = pytest.mark.real_model


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"sunny in {city}"


@pytest.fixture(scope="module")
def llm() -> LayerRouteChat:
    return LayerRouteChat(max_tokens=48)


def test_offline_pack_shapes(llm: LayerRouteChat) -> None:
    config = llm.runtime.routed.model.config
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("qwen2", 24, 896)
    assert (config.num_attention_heads, config.num_key_value_heads) == (14, 2)


def test_default_loads_shipped_adapter(llm: LayerRouteChat) -> None:
    shipped = shipped_adapter_path()
    assert shipped is not None
    assert llm.runtime.adapter == str(shipped)
    reply = llm.bind_tools([get_weather]).invoke("What is the weather in Paris right now?")
    assert reply.response_metadata["compute"]["routing"] == "learnt"


def test_step_after_tool_result_matches_base_model(llm: LayerRouteChat) -> None:
    history = [HumanMessage("What is the weather in Paris right now?"),
               AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
               ToolMessage("sunny in Paris", tool_call_id="c1")]
    routed = llm.bind_tools([get_weather]).invoke(history)
    base = LayerRouteChat(max_tokens=llm.max_tokens, adapter=None).bind_tools([get_weather]).invoke(history)
    assert routed.response_metadata["compute"]["routing"] == "after_tool_result"
    assert routed.content == base.content
    assert [(c["name"], c["args"]) for c in routed.tool_calls] == [(c["name"], c["args"]) for c in base.tool_calls]


def test_drafting_same_call_fewer_passes(llm: LayerRouteChat) -> None:
    question = "What is the weather in Lyon right now?"
    drafted = llm.bind_tools([get_weather]).invoke(question)
    plain = LayerRouteChat(max_tokens=llm.max_tokens, draft_tokens=0).bind_tools([get_weather]).invoke(question)
    assert drafted.content == plain.content
    assert [(c["name"], c["args"]) for c in drafted.tool_calls] == [(c["name"], c["args"]) for c in plain.tool_calls]
    assert [c["name"] for c in drafted.tool_calls] == ["get_weather"]
    with_drafts, without = drafted.response_metadata["compute"], plain.response_metadata["compute"]
    assert with_drafts["tokens_accepted"] > 0
    assert with_drafts["decode_passes"] < without["decode_passes"]
    assert with_drafts["flops_full"] == without["flops_full"]


def test_routed_greedy_matches_base_generate(llm: LayerRouteChat) -> None:
    runtime = llm.runtime
    model, tokenizer = runtime.routed.model, runtime.tokenizer
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "List three prime numbers."}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    input_ids = prompt["input_ids"]
    expected = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=16,
                              do_sample=False)[0, input_ids.shape[1]:]
    routed = RoutedCausalLM(model)
    logits, state = routed.prefill(input_ids, torch.ones_like(input_ids), RouteOverride.run_all())
    tokens = []
    for _ in range(len(expected)):
        token = logits.argmax(-1, keepdim=True)
        tokens.append(int(token))
        logits = routed.decode(token, state)
    assert tokens == expected.tolist()


def test_weather_question_gives_weather_call(llm: LayerRouteChat) -> None:
    reply = llm.bind_tools([get_weather]).invoke("What is the weather in Paris right now?")
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("get_weather", {"city": "Paris"})]
    compute = reply.response_metadata["compute"]
    assert compute["mode"] == "tool_call"
    assert compute["flops_full"] > 0


def test_required_tool_choice_always_calls(llm: LayerRouteChat) -> None:
    reply = llm.bind_tools([get_weather], tool_choice="required").invoke("Tell me a joke.")
    assert [c["name"] for c in reply.tool_calls] == ["get_weather"]


@tool
def convert_currency(amount: float, source: str, target: str) -> str:
    """Convert an amount of money from one currency to another."""
    return f"{amount} {source} in {target}"


def test_required_with_two_tools_calls_one(llm: LayerRouteChat) -> None:
    reply = llm.bind_tools([get_weather, convert_currency], tool_choice="required").invoke("Tell me a joke.")
    assert len(reply.tool_calls) == 1
    assert reply.tool_calls[0]["name"] in ("get_weather", "convert_currency")
    assert reply.usage_metadata["output_tokens"] < llm.max_tokens


def test_any_with_two_tools_calls_one(llm: LayerRouteChat) -> None:
    reply = llm.bind_tools([get_weather, convert_currency], tool_choice="any").invoke("How much is 20 EUR in USD?")
    assert [c["name"] for c in reply.tool_calls] == ["convert_currency"]


def test_named_tool_among_several_is_called(llm: LayerRouteChat) -> None:
    bound = llm.bind_tools([get_weather, convert_currency], tool_choice="convert_currency")
    reply = bound.invoke("What is the weather in Paris?")
    assert [c["name"] for c in reply.tool_calls] == ["convert_currency"]


def test_none_tool_choice_gives_no_call(llm: LayerRouteChat) -> None:
    reply = llm.bind_tools([get_weather], tool_choice="none").invoke("What is the weather in Paris right now?")
    assert reply.tool_calls == []
    assert reply.invalid_tool_calls == []
    assert reply.response_metadata["compute"]["mode"] == "planning"


def test_structured_output_by_function_calling(llm: LayerRouteChat) -> None:
    class Joke(BaseModel):
        """Joke to tell user."""

        setup: str = Field(description="question to set up a joke")
        punchline: str = Field(description="answer to resolve the joke")

    joke = llm.with_structured_output(Joke, method="function_calling").invoke("Tell me a joke about cats.")
    assert isinstance(joke, Joke)
    assert joke.setup
    assert joke.punchline
