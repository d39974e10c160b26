"""The step-latency benchmark: its ratio arithmetic and its engine loop on a tiny model (no timing checks)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import tiny_qwen2
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from transformers import AutoModelForCausalLM, AutoTokenizer

import benchmarks.engines as engines_module
from benchmarks.agent_steps import WEATHER, AgentStep, agent_steps
from benchmarks.dtype_compare import main as dtype_compare_main
from benchmarks.dtype_compare import summarise_by_dtype
from benchmarks.engines import (
    ChatHuggingFaceEngine,
    LayerRouteEngine,
    Measurement,
    TransformersGenerate,
    llama_cpp_failure,
    normalised_step_seconds,
)
from benchmarks.latency_summary import StepSummary, compute_ratios, run_rounds, summarise
from layerroute_agent import LayerRouteChat
from layerroute_agent.adapter import BaseModelIdentity, save_adapter
from layerroute_agent.flops import FlopsCounter, ModelShape
from layerroute_agent.routing import RouterStack


def _measurement(**changes: object) -> Measurement:
    fields = {"engine": "e", "step": "s", "round_index": 0, "prompt_tokens": 10, "generated_tokens": 8,
              "decode_calls": 7, "prefill_seconds": 1.0, "decode_seconds": 3.5, "step_seconds": 5.0,
              "peak_memory_bytes": None, "blocks_run": 4, "routers_evaluated": 0}
    return Measurement(**{**fields, **changes})


def test_normalised_seconds_forced_length() -> None:
    assert normalised_step_seconds(_measurement(), new_tokens=8) == 5.0


def test_normalised_seconds_extends_early_stop() -> None:
    # 3 tokens generated, the end-of-turn token took a 4th pass: 7 passes are needed for 8 tokens, 3 missing.
    short = _measurement(generated_tokens=3, decode_calls=4, decode_seconds=2.0, step_seconds=4.0)
    assert normalised_step_seconds(short, new_tokens=8) == pytest.approx(4.0 + 3 * 0.5)


def test_normalised_seconds_without_decode_rate() -> None:
    assert normalised_step_seconds(_measurement(generated_tokens=0, decode_calls=0, decode_seconds=0.0), 8) is None


def _summary(engine: str, step: str, kind: str, seconds: float, flops: int = 100) -> StepSummary:
    return StepSummary(engine=engine, step=step, kind=kind, rounds=3, prompt_tokens=10, generated_tokens=8,
                       prefill_seconds=0.1, decode_tokens_per_second=10.0, step_seconds=seconds,
                       peak_memory_mb=1.0, flops=flops, flops_full=100)


def test_ratio_arithmetic() -> None:
    rows = [
        _summary("transformers", "t", "tool_call", 10.0), _summary("transformers", "p", "planning", 4.0),
        _summary("layerroute_all_blocks", "t", "tool_call", 10.2, flops=104),
        _summary("layerroute_all_blocks", "p", "planning", 4.08),
        _summary("layerroute", "t", "tool_call", 8.0, flops=75), _summary("layerroute", "p", "planning", 4.0),
        _summary("chat_huggingface", "p", "planning", 6.0),
        _summary("llama_cpp", "t", "tool_call", 6.0), _summary("llama_cpp", "p", "planning", 3.0),
    ]
    ratios = compute_ratios(rows)
    assert ratios["routing_overhead"] == pytest.approx(14.28 / 14.0 - 1)
    assert ratios["tool_call_speedup"] == pytest.approx(10.0 / 8.0)
    assert ratios["planning_speedup"] == pytest.approx(1.0)
    assert ratios["routing_only_tool_call_speedup"] == pytest.approx(10.2 / 8.0)
    # Against all-blocks LayerRouteChat (its rejected drafts cost 4% extra): seconds saved 1 - 8 / 10.2 against
    # FLOPs saved 1 - 75 / 104 on the tool-call step.
    assert ratios["time_to_flops_saving"] == pytest.approx((1 - 8.0 / 10.2) / (1 - 75 / 104))
    assert ratios["time_to_flops_saving_routed_steps"] == pytest.approx(ratios["time_to_flops_saving"])
    # ChatHuggingFace served the planning step only.
    assert ratios["vs_chat_huggingface"] == pytest.approx(6.0 / 4.0)
    assert ratios["vs_chat_huggingface_tool_call"] is None
    assert ratios["vs_llama_cpp"] == pytest.approx(9.0 / 12.0)


def test_summary_counts_rejected_drafts_as_run() -> None:
    steps = [AgentStep("s", "tool_call", [HumanMessage("x")], 8)]
    counter = FlopsCounter(ModelShape.from_config(tiny_qwen2().config))
    rows = [_measurement(tokens_drafted=6, tokens_accepted=2, extra_draft_flops=extra) for extra in (10, 30, 20)]
    summary = summarise(rows, steps, counter)[0]
    assert summary.flops == counter.step(10, 7, 4, 0) + 20
    assert summary.flops_full == counter.step(10, 7, 4, 0)
    assert (summary.tokens_drafted, summary.tokens_accepted) == (6, 2)


def test_ratios_missing_engine_are_none() -> None:
    ratios = compute_ratios([_summary("layerroute", "t", "tool_call", 8.0)])
    assert ratios["tool_call_speedup"] is None
    assert ratios["routing_overhead"] is None
    assert ratios["vs_llama_cpp"] is None


def test_time_to_flops_routed_steps_only() -> None:
    rows = [_summary("layerroute_all_blocks", "short", "tool_call", 2.0, flops=100),
            _summary("layerroute", "short", "tool_call", 1.6, flops=80),
            _summary("layerroute_all_blocks", "long", "tool_call", 5.0, flops=300),
            _summary("layerroute", "long", "tool_call", 5.3, flops=300)]
    ratios = compute_ratios(rows)
    assert ratios["time_to_flops_saving"] == pytest.approx((1 - 6.9 / 7.0) / (1 - 380 / 400))
    assert ratios["time_to_flops_saving_routed_steps"] == pytest.approx((1 - 1.6 / 2.0) / (1 - 80 / 100))


def test_time_to_flops_none_without_saving() -> None:
    rows = [_summary("transformers", "t", "tool_call", 10.0), _summary("layerroute_all_blocks", "t", "tool_call", 10.0),
            _summary("layerroute", "t", "tool_call", 9.0)]
    ratios = compute_ratios(rows)
    assert ratios["tool_call_speedup"] == pytest.approx(10.0 / 9.0)
    assert ratios["time_to_flops_saving"] is None


def test_agent_steps_quick_subset() -> None:
    quick, full = agent_steps(quick=True), agent_steps(quick=False)
    assert {s.name for s in quick} < {s.name for s in full}
    assert {s.kind for s in quick} == {"tool_call", "planning"}
    assert all(s.tools for s in full if s.kind == "tool_call")


@pytest.fixture(scope="module")
def skipping_adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapter for the tiny model whose router of block 1 always skips it."""
    model = tiny_qwen2(seed=1)
    routers = RouterStack(4, model.config.hidden_size)
    with torch.no_grad():
        routers[1].proj.bias.fill_(-5.0)
    folder = tmp_path_factory.mktemp("adapter")
    save_adapter(folder, model, routers, BaseModelIdentity.of(model, "tiny"), None)
    return folder


def _tiny_steps() -> list[AgentStep]:
    call = {"name": "get_weather", "args": {"city": "Lyon"}, "id": "call_1", "type": "tool_call"}
    history = [HumanMessage("Weather in Lyon?"), AIMessage("", tool_calls=[call]),
               ToolMessage("sunny", tool_call_id="call_1")]
    return [
        AgentStep("tool", "tool_call", [HumanMessage("What is the weather in Paris?")], 4, [WEATHER]),
        AgentStep("history", "tool_call", history, 4, [WEATHER]),
        AgentStep("plan", "planning", [HumanMessage("Plan a trip.")], 5),
    ]


def test_engine_loop_on_tiny_model(tiny_model_dir: Path, skipping_adapter: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    spec = str(tiny_model_dir)
    engines = [
        TransformersGenerate(model, tokenizer, "cpu"),
        LayerRouteEngine(LayerRouteChat(model=spec, adapter=str(skipping_adapter), routing=False),
                         "layerroute_all_blocks", "all blocks"),
        LayerRouteEngine(LayerRouteChat(model=spec, adapter=str(skipping_adapter)), "layerroute", "routed"),
        ChatHuggingFaceEngine(model, tokenizer, "cpu"),
    ]
    steps = _tiny_steps()
    order: list[tuple[int, str, str]] = []
    kept = run_rounds(engines, steps, rounds=2, warmup=1,
                      on_measurement=lambda m: order.append((m.round_index, m.step, m.engine)))

    assert len(order) == 3 * (4 + 4 + 3)  # ChatHuggingFace cannot serve the step with tool history
    assert len(kept) == 2 * (4 + 4 + 3)
    assert all(m.round_index >= 1 for m in kept)
    firsts = [order[i][2] for i in range(len(order)) if i == 0 or order[i][:2] != order[i - 1][:2]]
    assert firsts[:4] == ["transformers", "layerroute_all_blocks", "layerroute", "chat_huggingface"]

    forced = [m for m in kept if m.engine in ("transformers", "chat_huggingface")]
    assert all(m.generated_tokens == {"tool": 4, "history": 4, "plan": 5}[m.step] for m in forced)
    assert all(m.decode_calls == m.generated_tokens - 1 for m in forced)
    prompt_tokens = {(m.engine, m.step): m.prompt_tokens for m in kept}
    for step in ("tool", "history", "plan"):
        assert prompt_tokens[("transformers", step)] == prompt_tokens[("layerroute", step)]
    assert prompt_tokens[("chat_huggingface", "plan")] == prompt_tokens[("transformers", "plan")]

    counter = FlopsCounter(ModelShape.from_config(model.config))
    summaries = {(s.engine, s.step): s for s in summarise(kept, steps, counter)}
    assert summaries[("layerroute", "tool")].flops_saved_share > 0.1
    assert summaries[("layerroute_all_blocks", "tool")].flops_saved_share == 0.0
    # The history step ends with a tool result, so LayerRouteChat runs every block and no router there.
    assert summaries[("layerroute", "history")].flops_saved_share == 0.0
    assert all(m.routers_evaluated == 0 for m in kept if (m.engine, m.step) == ("layerroute", "history"))
    assert summaries[("transformers", "plan")].step_seconds > 0
    ratios = compute_ratios(list(summaries.values()))
    for key in ("routing_overhead", "tool_call_speedup", "planning_speedup", "time_to_flops_saving",
                "vs_chat_huggingface"):
        assert isinstance(ratios[key], float), key
    assert ratios["vs_llama_cpp"] is None


def test_llama_probe_reports_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines_module, "_LLAMA_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGILL)")
    failure = llama_cpp_failure(tmp_path / "model.gguf", threads=1)
    assert failure is not None
    assert "signal SIGILL" in failure
    assert "-DGGML_NATIVE=OFF" in failure


def test_llama_probe_reports_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines_module, "_LLAMA_PROBE", "import sys; sys.exit('no model here')")
    failure = llama_cpp_failure(tmp_path / "model.gguf", threads=1)
    assert failure is not None
    assert "exited with code 1: no model here" in failure


def test_llama_probe_passes_clean_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines_module, "_LLAMA_PROBE", "import sys; assert len(sys.argv) == 3")
    assert llama_cpp_failure(tmp_path / "model.gguf", threads=1) is None


def test_dtype_summary_ratios_to_first() -> None:
    measurements = [
        _measurement(engine="bfloat16", step="tool_short", step_seconds=2.0),
        _measurement(engine="bfloat16", step="tool_short", step_seconds=4.0),
        _measurement(engine="float32", step="tool_short", step_seconds=6.0),
        _measurement(engine="float32", step="tool_short", step_seconds=8.0),
    ]
    steps = [AgentStep("tool_short", "tool_call", [HumanMessage("What is the weather in Paris?")], 8, [WEATHER])]
    counter = FlopsCounter(ModelShape.from_config(tiny_qwen2().config))
    summary = summarise_by_dtype(summarise(measurements, steps, counter), ["bfloat16", "float32"])
    assert summary["tool_short"]["bfloat16"]["step_seconds"] == pytest.approx(3.0)
    assert summary["tool_short"]["bfloat16"]["step_time_ratio"] == pytest.approx(1.0)
    assert summary["tool_short"]["float32"]["step_time_ratio"] == pytest.approx(7.0 / 3.0)
    assert summary["tool_short"]["float32"]["decode_tokens_per_second"] == pytest.approx(7 / 3.5)


def test_dtype_compare_runs_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "dtype.json"
    code = dtype_compare_main(["--model", str(tiny_model_dir), "--dtypes", "float32,bfloat16", "--rounds", "1",
                               "--warmup", "0", "--steps", "tool_short,plan_short", "--json", str(output)])
    assert code == 0
    report = json.loads(output.read_text())
    assert report["dtypes"] == ["float32", "bfloat16"]
    assert list(report["steps"]) == ["tool_short", "plan_short"]
    for rows in report["steps"].values():
        assert rows["float32"]["step_time_ratio"] == pytest.approx(1.0)
        assert rows["bfloat16"]["step_seconds"] > 0


def test_dtype_compare_needs_two_dtypes() -> None:
    with pytest.raises(SystemExit):
        dtype_compare_main(["--dtypes", "bfloat16"])


@pytest.mark.parametrize(("flags", "message"), [
    (["--steps", "tool_huge"], "--steps must name quick steps among .*got 'tool_huge'"),
    (["--dtypes", "bfloat16,fp32"], "not torch dtypes: \\['fp32'\\]"),
    (["--dtypes", "bfloat16,bfloat16"], "at least two different dtypes"),
])
def test_dtype_compare_rejects_bad_flags(flags: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        dtype_compare_main(flags)
    assert re.search(message, capsys.readouterr().err)


def test_decode_profile_on_tiny_model(tiny_model_dir: Path) -> None:
    from benchmarks.decode_profile import profile_table, seconds_per_pass, seconds_per_token
    from layerroute_agent.runtime import get_runtime

    routed = get_runtime(str(tiny_model_dir), None, "float32", "cpu").routed
    prompt = torch.randint(5, 500, (1, 12))
    assert seconds_per_token(routed, prompt, tokens=3) > 0
    assert seconds_per_pass(routed, prompt, width=3, passes=3) > 0
    table = profile_table(routed, prompt, tokens=3, rows=5)
    assert "aten::" in table
    assert "Self CPU" in table


def test_ratios_of_saved_run_match(tmp_path: Path) -> None:
    from dataclasses import asdict

    from benchmarks.latency_summary import main, ratios_of_saved_run

    rows = [_summary("transformers", "t", "tool_call", 10.0), _summary("layerroute_all_blocks", "t", "tool_call", 9.0),
            _summary("layerroute", "t", "tool_call", 8.0, flops=80)]
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"summaries": [{**asdict(row), "flops_saved_share": 0.0} for row in rows]}))
    assert ratios_of_saved_run(path) == compute_ratios(rows)
    assert main([str(path)]) == 0
    assert main([]) == 2
