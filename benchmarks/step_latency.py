"""Time agent steps through the routed model and the engines a user would otherwise run, side by side.

Run from the repository root::

    python -m benchmarks.step_latency --quick --json step_latency.json
    python -m benchmarks.step_latency --adapter runs/my-run/adapter --json step_latency.json

Engines, alternated within every round so that machine noise falls on all of them alike:

1. ``transformers``: plain transformers ``generate`` on the base model (no routers), greedy;
2. ``layerroute_all_blocks``: ``LayerRouteChat(routing=False)``, the adapter loaded but every block run;
3. ``layerroute``: ``LayerRouteChat`` with its routing adapter;
4. ``chat_huggingface``: ``ChatHuggingFace`` over a ``HuggingFacePipeline`` of the base model, on the
   steps it serves;
5. ``llama_cpp``: llama-cpp-python on the Q4_K_M GGUF of the same model (CPU only).

Every engine generates the same number of tokens per step (see :mod:`benchmarks.engines`). The table
gives medians per engine and step; the ``ratios`` are defined in
:func:`benchmarks.latency_summary.compute_ratios`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

from benchmarks.agent_steps import agent_steps
from benchmarks.engines import (
    ChatHuggingFaceEngine,
    Engine,
    LayerRouteEngine,
    LlamaCppEngine,
    Measurement,
    TransformersGenerate,
    llama_cpp_failure,
)
from benchmarks.latency_summary import (
    ALL_BLOCKS,
    BASELINE,
    CHAT_HF,
    LLAMA_CPP,
    ROUTED,
    StepSummary,
    compute_ratios,
    run_rounds,
    summarise,
    summary_rows,
)
from layerroute_agent import LayerRouteChat
from layerroute_agent.flops import FlopsCounter, ModelShape
from layerroute_agent.loading import DEFAULT_MODEL, load_model
from layerroute_agent.runtime import resolve_adapter

ENGINE_NAMES = (BASELINE, ALL_BLOCKS, ROUTED, CHAT_HF, LLAMA_CPP)
logger = logging.getLogger("benchmarks.step_latency")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="4 steps, 16/32 new tokens, 1 warm-up + 3 rounds (the full run: 6 steps, 32/64 new "
                             "tokens, 1 warm-up + 5 rounds)")
    parser.add_argument("--json", type=Path, help="write measurements, medians and ratios to this JSON file")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model spec (default: the offline pack)")
    parser.add_argument("--adapter", default="default",
                        help="routing adapter folder, 'default' for the adapter shipped with the package, or 'none' for "
                             "untrained routers (every block runs)")
    parser.add_argument("--route-after-tool-results", action="store_true",
                        help="let the routed engine skip blocks on steps whose prompt ends with a tool result "
                             "(tool_history steps); by default LayerRouteChat runs every block there")
    parser.add_argument("--draft-tokens", type=int, default=LayerRouteChat.model_fields["draft_tokens"].default,
                        help="LayerRouteChat's draft_tokens for engines 2 and 3 (default: its own default; 0 decodes "
                             "one token per pass, as the other engines do)")
    parser.add_argument("--engines", default=",".join(ENGINE_NAMES),
                        help=f"comma-separated engines to run (default: all of {', '.join(ENGINE_NAMES)})")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (llama.cpp stays on CPU)")
    parser.add_argument("--dtype", default="bfloat16", help="torch dtype: bfloat16 (default) or float32")
    parser.add_argument("--rounds", type=int, help="kept rounds per step (default: 3 quick, 5 full)")
    parser.add_argument("--warmup", type=int, default=1, help="dropped warm-up rounds (default 1)")
    parser.add_argument("--llama-threads", type=int, default=2, help="llama.cpp threads (default 2)")
    parser.add_argument("--gguf", type=Path,
                        help="GGUF file for llama.cpp (default: the offline pack's, assembled if needed)")
    args = parser.parse_args(argv)
    if args.adapter == "none":
        args.adapter = None
    unknown = sorted(set(args.engines.split(",")) - set(ENGINE_NAMES))
    if unknown:
        parser.error(f"unknown engines {unknown}; choose from {', '.join(ENGINE_NAMES)}")
    if args.draft_tokens < 0:
        parser.error(f"--draft-tokens must be >= 0, got {args.draft_tokens}")
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    return args


def _llama_engine(args: argparse.Namespace, tokenizer: object, num_blocks: int, context: int) -> Engine | None:
    if torch.device(args.device).type != "cpu":
        print("llama_cpp skipped: this benchmark runs llama.cpp on CPU only, not next to a GPU engine")
        return None
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama_cpp skipped: llama-cpp-python is not installed (pip install llama-cpp-python==0.3.36; "
              "it compiles from source, several minutes)")
        return None
    gguf = args.gguf
    if gguf is None:
        if args.model != DEFAULT_MODEL:
            print(f"llama_cpp skipped: pass --gguf with the GGUF of {args.model!r}")
            return None
        from layerroute_agent.offline_pack import assemble_gguf

        gguf = assemble_gguf()
    failure = llama_cpp_failure(gguf, args.llama_threads)
    if failure is not None:
        print(f"llama_cpp skipped: {failure}")
        return None
    return LlamaCppEngine(gguf, tokenizer, args.llama_threads, context, num_blocks)


def build_engines(args: argparse.Namespace, context: int) -> list[Engine]:
    """Load the requested engines in the numbered order; the base-model engines share one loaded model."""
    wanted = [name for name in ENGINE_NAMES if name in args.engines.split(",")]
    adapter = resolve_adapter(args.model, args.adapter)
    if adapter is None and ROUTED in wanted:
        print(f"warning: no routing adapter for {args.model!r} (adapter={args.adapter!r}): the routed engine runs "
              "untrained routers, which run every block")
    engines: list[Engine] = []
    base = None
    if BASELINE in wanted or CHAT_HF in wanted or not {ALL_BLOCKS, ROUTED} & set(wanted):
        base = load_model(args.model, dtype=args.dtype, device=args.device)
    for name in wanted:
        if name == BASELINE:
            engines.append(TransformersGenerate(base.model, base.tokenizer, args.device))
        elif name in (ALL_BLOCKS, ROUTED):
            llm = LayerRouteChat(model=args.model, adapter=adapter, dtype=args.dtype, device=args.device,
                                 routing=name == ROUTED, route_after_tool_results=args.route_after_tool_results,
                                 draft_tokens=args.draft_tokens)
            label = "LayerRouteChat, all blocks" if name == ALL_BLOCKS else "LayerRouteChat, routed"
            engines.append(LayerRouteEngine(llm, name, label))
        elif name == CHAT_HF:
            try:
                engines.append(ChatHuggingFaceEngine(base.model, base.tokenizer, args.device))
            except ImportError:
                print("chat_huggingface skipped: langchain-huggingface is not installed "
                      "(pip install langchain-huggingface==1.2.3 --no-deps)")
        elif name == LLAMA_CPP:
            model, tokenizer = _reference_model(engines) if base is None else (base.model, base.tokenizer)
            engine = _llama_engine(args, tokenizer, model.config.num_hidden_layers, context)
            if engine is not None:
                engines.append(engine)
    return engines


def _reference_model(engines: list[Engine]) -> tuple[torch.nn.Module, object]:
    """Return a loaded model and tokenizer of the benchmarked spec, from the first engine that has one."""
    for engine in engines:
        if isinstance(engine, LayerRouteEngine):
            return engine.llm.runtime.routed.model, engine.llm.runtime.tokenizer
        if isinstance(engine, (TransformersGenerate, ChatHuggingFaceEngine)):
            return engine.model, engine.tokenizer
    raise RuntimeError("no loaded transformers model among the engines")


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_table(summaries: list[StepSummary], labels: dict[str, str]) -> str:
    """Return a markdown table: one row per (step, engine), in step order, then engine order."""
    lines = ["| step | engine | prompt tokens | prefill s | decode tok/s | step s | peak step MB | FLOPs saved | "
             "drafts kept |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        drafts = f"{s.tokens_accepted:g}/{s.tokens_drafted:g}" if s.tokens_drafted else "-"
        lines.append(f"| {s.step} | {labels[s.engine]} | {s.prompt_tokens} | {s.prefill_seconds:.3f} | "
                     f"{_cell(s.decode_tokens_per_second, '.1f')} | {_cell(s.step_seconds, '.3f')} | "
                     f"{_cell(s.peak_memory_mb, '.0f')} | {s.flops_saved_share:.1%} | {drafts} |")
    return "\n".join(lines)


def _cpu_model() -> str | None:
    """Return the CPU model name from ``/proc/cpuinfo`` (Linux), or ``None`` where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _machine() -> dict[str, object]:
    return {"platform": platform.platform(), "processor": platform.processor() or _cpu_model(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def _progress(measurement: Measurement) -> None:
    print(f"  round {measurement.round_index} {measurement.step:18s} {measurement.engine:22s} "
          f"{measurement.step_seconds:7.2f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table and ratios; return the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    steps = agent_steps(args.quick)
    rounds = args.rounds or (3 if args.quick else 5)
    engines = build_engines(args, context=4096)
    if not engines:
        print("No engine could be loaded; see the messages above.")
        return 1
    for engine in engines:
        for step in steps:
            reason = engine.unserved_reason(step)
            if reason:
                print(f"{engine.name} does not run {step.name}: {reason}")
    started = time.perf_counter()
    measurements = run_rounds(engines, steps, rounds, args.warmup, _progress)
    elapsed = time.perf_counter() - started
    counter = FlopsCounter(ModelShape.from_config(_reference_model(engines)[0].config))
    order = {s.name: i for i, s in enumerate(steps)}
    engine_order = {e.name: i for i, e in enumerate(engines)}
    summaries = sorted(summarise(measurements, steps, counter),
                       key=lambda s: (order[s.step], engine_order[s.engine]))
    ratios = compute_ratios(summaries)
    labels = {e.name: e.label for e in engines}
    print()
    print(format_table(summaries, labels))
    print()
    print("ratios: " + json.dumps({k: None if v is None else round(v, 4) for k, v in ratios.items()}))
    print(f"({len(measurements)} kept measurements in {elapsed:.0f} s; step s is at exactly the step's new-token "
          "count; peak step MB is the peak above the memory in use before the step)")
    if args.json:
        report = {
            "args": {k: str(v) for k, v in vars(args).items()}, "machine": _machine(), "seconds": elapsed,
            "steps": [{"name": s.name, "kind": s.kind, "new_tokens": s.new_tokens} for s in steps],
            "engines": {e.name: {"label": e.label, "weights_mb": e.weights_bytes() / 2**20} for e in engines},
            "summaries": summary_rows(summaries), "ratios": ratios,
            "measurements": [vars(m) for m in measurements],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
