"""Profile the decode passes of one agent step: where the time of a decoded token goes, by operator.

Run from the repository root::

    python -m benchmarks.decode_profile --step tool_short
    python -m benchmarks.decode_profile --step tool_short --compile-blocks

Every block runs (no routers), so the numbers describe the engine, not the adapter. The script prints the time per decoded token over a few warm passes, the time of one pass of
several tokens (what a pass with drafted tokens costs), and the torch profiler's table of operators by
self CPU time. ``--compile-blocks`` wraps each decoder block in ``torch.compile``
first and times the compiled blocks the same way (the first passes, which compile, are left out).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.agent_steps import agent_steps
from benchmarks.engines import _prompt_ids
from layerroute_agent.loading import DEFAULT_MODEL
from layerroute_agent.routing import RoutedCausalLM, RouteOverride
from layerroute_agent.runtime import get_runtime


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    steps = [step.name for step in agent_steps(quick=False)]
    parser.add_argument("--step", default="tool_short", choices=steps, help="agent step whose prompt is decoded")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model spec (default: the offline pack)")
    parser.add_argument("--adapter", default="default", help="adapter folder, 'default' or 'none'")
    parser.add_argument("--dtype", default="bfloat16", help="torch dtype: bfloat16 (default) or float32")
    parser.add_argument("--tokens", type=int, default=16, help="decode passes per timing (default 16)")
    parser.add_argument("--rows", type=int, default=15, help="operators shown in the profile table (default 15)")
    parser.add_argument("--compile-blocks", action="store_true", help="also time the blocks under torch.compile")
    args = parser.parse_args(argv)
    if args.tokens < 1:
        parser.error(f"--tokens must be >= 1, got {args.tokens}")
    return args


def seconds_per_token(routed: RoutedCausalLM, prompt: torch.Tensor, tokens: int) -> float:
    """Prefill ``prompt`` at full depth, then return the mean seconds of ``tokens`` greedy one-token passes."""
    logits, state = routed.prefill(prompt, torch.ones_like(prompt), override=RouteOverride.run_all())
    started = time.perf_counter()
    for _ in range(tokens):
        logits = routed.decode(logits.argmax(dim=-1, keepdim=True), state)
    return (time.perf_counter() - started) / tokens


def seconds_per_pass(routed: RoutedCausalLM, prompt: torch.Tensor, width: int, passes: int) -> float:
    """Return the median seconds of a decode pass of ``width`` tokens after ``prompt`` (each pass is rewound)."""
    _, state = routed.prefill(prompt, torch.ones_like(prompt), override=RouteOverride.run_all())
    tokens = prompt[:, -width:]
    times = []
    for _ in range(passes):
        started = time.perf_counter()
        routed.verify(tokens, state)
        times.append(time.perf_counter() - started)
        routed.rewind(state, width)
    return sorted(times)[len(times) // 2]


def profile_table(routed: RoutedCausalLM, prompt: torch.Tensor, tokens: int, rows: int) -> str:
    """Return the profiler's operator table (by self CPU time) over ``tokens`` one-token passes."""
    logits, state = routed.prefill(prompt, torch.ones_like(prompt), override=RouteOverride.run_all())
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(tokens):
            logits = routed.decode(logits.argmax(dim=-1, keepdim=True), state)
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def _timings(label: str, routed: RoutedCausalLM, prompt: torch.Tensor, tokens: int) -> None:
    times = [seconds_per_token(routed, prompt, tokens) for _ in range(3)]
    print(f"{label}: {' '.join(f'{t * 1000:.1f}' for t in times)} ms per decoded token (3 timings)", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Print decode timings and the operator profile; return the exit status."""
    args = _parse_args(argv)
    runtime = get_runtime(args.model, None if args.adapter == "none" else args.adapter, args.dtype, "cpu")
    step = next(step for step in agent_steps(quick=False) if step.name == args.step)
    prompt = torch.tensor([_prompt_ids(runtime.tokenizer, step)])
    routed = runtime.routed
    print(f"{step.name}: {prompt.shape[1]} prompt tokens, {args.dtype}, {torch.get_num_threads()} threads")
    _timings("eager", routed, prompt, args.tokens)
    one_token_seconds = seconds_per_pass(routed, prompt, 1, args.tokens)
    for width in (1, 2, 3, 5, 8):
        seconds = seconds_per_pass(routed, prompt, width, args.tokens)
        print(f"pass of {width} tokens: {seconds * 1000:.1f} ms, {seconds / one_token_seconds:.2f} x a pass of 1",
              flush=True)
    print(profile_table(routed, prompt, args.tokens, args.rows))
    if args.compile_blocks:
        for layer in routed.parts.layers:
            layer.forward = torch.compile(layer.forward, dynamic=True)
        started = time.perf_counter()
        seconds_per_token(routed, prompt, 2)
        print(f"compiling took {time.perf_counter() - started:.1f} s", flush=True)
        _timings("compiled blocks", routed, prompt, args.tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
