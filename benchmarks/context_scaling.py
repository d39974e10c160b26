"""Plot step latency and FLOPs against prompt length for the routed model and the same model at full depth.

Run from the repository root::

    python -m benchmarks.context_scaling --adapter runs/my-run/adapter --out-dir benchmark-results

Each prompt is a tool-call step (one tool, a request that quotes a long JSON list of flights) cut inside
the flight list to exactly the requested number of tokens. The routed and the all-blocks run
alternate on every length; ``--new-tokens`` tokens are generated per step, and a step that ends early
at the end-of-turn token is extended at its own decode rate. Writes ``context_scaling.png``,
``context_scaling.json`` and ``context_scaling.csv`` into ``--out-dir``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from langchain_core.messages import HumanMessage

from benchmarks.agent_steps import WEATHER, flight_results
from benchmarks.engines import Measurement, MemoryProbe, normalised_step_seconds
from layerroute_agent.generation import GenerationConfig, GenerationResult
from layerroute_agent.loading import DEFAULT_MODEL
from layerroute_agent.runtime import RoutedRuntime, get_runtime
from layerroute_agent.tool_calls import to_template_messages

DEFAULT_LENGTHS = (256, 512, 1024, 2048, 4096)
_FILL = "\u2063FILL\u2063"


def prompt_of_length(runtime: RoutedRuntime, length: int) -> list[int]:
    """Return exactly ``length`` prompt ids: a weather request with one tool after flight results cut to fit.

    Raises:
        ValueError: ``length`` is too short to hold the template around the tool result.
    """
    tokenizer = runtime.tokenizer
    request = f"Flight search results: {_FILL}\nI take the cheapest morning flight. What is the weather in Lyon?"
    text = tokenizer.apply_chat_template(to_template_messages([HumanMessage(request)]), tools=[WEATHER],
                                         add_generation_prompt=True, tokenize=False)
    head, tail = text.split(_FILL)
    filler = flight_results(40)
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    filler_ids = tokenizer(filler, add_special_tokens=False)["input_ids"]
    room = length - len(head_ids) - len(tail_ids)
    if room < 0:
        raise ValueError(f"length {length} is shorter than the prompt template ({len(head_ids) + len(tail_ids)} "
                         "tokens); pass lengths of at least that")
    while len(filler_ids) < room:
        filler_ids = filler_ids + filler_ids
    return head_ids + filler_ids[:room] + tail_ids


@dataclass
class ScalingPoint:
    """Medians of one mode at one prompt length."""

    mode: str
    """``routed`` (the adapter's decisions) or ``all_blocks``."""
    prompt_tokens: int
    prefill_seconds: float
    step_seconds: float | None
    gflops: float
    blocks_run: int


def _measure(runtime: RoutedRuntime, prompt_ids: list[int], new_tokens: int, route_all: bool,
             device: str) -> Measurement:
    probe = MemoryProbe(device)
    probe.start()
    started = time.perf_counter()
    result = None
    for piece in runtime.run_step(prompt_ids, GenerationConfig(max_new_tokens=new_tokens), route_all):
        if isinstance(piece, GenerationResult):
            result = piece
    step_seconds = time.perf_counter() - started
    routers = 0 if route_all else runtime.routed.num_blocks
    return Measurement("all_blocks" if route_all else "routed", str(len(prompt_ids)), 0, len(prompt_ids),
                       len(result.token_ids), result.decode_calls, result.prefill_seconds, result.decode_seconds,
                       step_seconds, probe.peak_above_start(), len(result.decisions.blocks_run(0)), routers)


def run_scaling(runtime: RoutedRuntime, lengths: list[int], new_tokens: int, rounds: int,
                device: str) -> list[ScalingPoint]:
    """Time both modes at every length, alternating them, and return their medians."""
    rows: dict[tuple[str, int], list[Measurement]] = {}
    prompts = {length: prompt_of_length(runtime, length) for length in lengths}
    _measure(runtime, prompts[lengths[0]], 2, False, device)  # warm-up, dropped
    for round_index in range(rounds):
        for index, length in enumerate(lengths):
            modes = [False, True] if (round_index + index) % 2 == 0 else [True, False]
            for route_all in modes:
                m = _measure(runtime, prompts[length], new_tokens, route_all, device)
                print(f"  round {round_index} {length:5d} tokens {m.engine:10s} {m.step_seconds:7.2f} s", flush=True)
                rows.setdefault((m.engine, length), []).append(m)
    points = []
    for (mode, length), measurements in rows.items():
        steps = [normalised_step_seconds(m, new_tokens) for m in measurements]
        steps = [s for s in steps if s is not None]
        blocks = measurements[0].blocks_run
        flops = runtime.counter.step(length, new_tokens - 1, blocks, measurements[0].routers_evaluated)
        points.append(ScalingPoint(mode, length, statistics.median(m.prefill_seconds for m in measurements),
                                   statistics.median(steps) if steps else None, flops / 1e9, blocks))
    return sorted(points, key=lambda p: (p.mode, p.prompt_tokens))


def plot(points: list[ScalingPoint], path: Path, title: str) -> None:
    """Draw step and prefill seconds (left) and GFLOPs (right) against prompt tokens, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, colour in (("all_blocks", "tab:gray"), ("routed", "tab:blue")):
        rows = [p for p in points if p.mode == mode and p.step_seconds is not None]
        tokens = [p.prompt_tokens for p in rows]
        left.plot(tokens, [p.step_seconds for p in rows], "o-", color=colour, label=f"{mode}: whole step")
        left.plot(tokens, [p.prefill_seconds for p in rows], "s--", color=colour, label=f"{mode}: prefill")
        right.plot(tokens, [p.gflops for p in rows], "o-", color=colour, label=mode)
    lengths = sorted({p.prompt_tokens for p in points})
    for axis, label in ((left, "seconds"), (right, "GFLOPs per step")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(lengths, [str(length) for length in lengths])
        axis.set_xlabel("prompt tokens")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    """Measure, plot and write the numbers; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model spec (default: the offline pack)")
    parser.add_argument("--adapter", default="default",
                        help="routing adapter folder, 'default' for the adapter shipped with the package, or 'none' for "
                             "untrained routers (every block runs)")
    parser.add_argument("--lengths", default=",".join(map(str, DEFAULT_LENGTHS)),
                        help="comma-separated prompt lengths in tokens (default 256,...,4096)")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens generated per step (default 16)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per length and mode (default 2)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--dtype", default="bfloat16", help="torch dtype (default bfloat16)")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmark-results"),
                        help="folder for the PNG, JSON and CSV (default benchmark-results)")
    args = parser.parse_args(argv)
    if args.adapter == "none":
        args.adapter = None
    try:
        lengths = sorted({int(x) for x in args.lengths.split(",")})
    except ValueError:
        parser.error(f"--lengths must be comma-separated integers, got {args.lengths!r}")
    if args.new_tokens < 2 or args.rounds < 1:
        parser.error(f"--new-tokens must be >= 2 and --rounds >= 1, got {args.new_tokens} and {args.rounds}")
    runtime = get_runtime(args.model, args.adapter, args.dtype, args.device)
    if runtime.adapter is None:
        print(f"warning: no routing adapter for {args.model!r} (adapter={args.adapter!r}); routed == all blocks")
    points = run_scaling(runtime, lengths, args.new_tokens, args.rounds, args.device)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows = [asdict(p) for p in points]
    (args.out_dir / "context_scaling.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "points": rows}, indent=2))
    with open(args.out_dir / "context_scaling.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(points, args.out_dir / "context_scaling.png",
         f"{args.model}, {args.dtype} on {args.device}, {args.new_tokens} new tokens per step")
    for p in points:
        step = "-" if p.step_seconds is None else f"{p.step_seconds:.2f}"
        print(f"{p.mode:10s} {p.prompt_tokens:5d} tokens: prefill {p.prefill_seconds:.2f} s, step {step} s, "
              f"{p.gflops:.1f} GFLOPs, {p.blocks_run} blocks")
    print(f"wrote {args.out_dir}/context_scaling.png, .json and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
