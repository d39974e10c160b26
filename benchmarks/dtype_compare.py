"""Time the same agent steps through ``LayerRouteChat`` in several dtypes, side by side in one run.

Run from the repository root::

    python -m benchmarks.dtype_compare --dtypes bfloat16,float32 --json dtype_compare.json

Every block runs (``routing=False``), so only the dtype differs between the engines. They alternate
within each round as in the step-latency benchmark, so a slow phase of a shared machine falls on all of
them alike. Prints, per step and dtype, the median prefill seconds, decode tokens/s and step seconds, and
each dtype's step time divided by the first dtype's. A reply that ends early is extended to the step's
token count at its own decode rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.agent_steps import AgentStep, agent_steps
from benchmarks.engines import LayerRouteEngine, Measurement, normalised_step_seconds
from benchmarks.latency_summary import run_rounds
from layerroute_agent import LayerRouteChat
from layerroute_agent.loading import DEFAULT_MODEL


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dtype_compare", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model spec (default: the offline pack)")
    parser.add_argument("--dtypes", default="bfloat16,float32",
                        help="comma-separated torch dtypes; the first is the reference (default: bfloat16,float32)")
    parser.add_argument("--rounds", type=int, default=3, help="kept rounds per step and dtype (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and dropped (default 1)")
    parser.add_argument("--steps", help="comma-separated step names (default: the four quick steps of the "
                                        "step-latency benchmark)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--json", type=Path, help="write the medians and ratios to this JSON file")
    args = parser.parse_args(argv)
    args.dtypes = [name.strip() for name in args.dtypes.split(",") if name.strip()]
    if len(set(args.dtypes)) < 2 or len(set(args.dtypes)) != len(args.dtypes):
        parser.error(f"--dtypes needs at least two different dtypes, each once, got {args.dtypes}")
    unknown = [name for name in args.dtypes if not isinstance(getattr(torch, name, None), torch.dtype)]
    if unknown:
        parser.error(f"--dtypes has names that are not torch dtypes: {unknown}; use e.g. bfloat16,float32")
    try:
        args.steps = _chosen_steps(args.steps)
    except ValueError as error:
        parser.error(str(error))
    return args


def _chosen_steps(names: str | None) -> list[AgentStep]:
    steps = agent_steps(quick=True)
    if names is None:
        return steps
    by_name = {step.name: step for step in steps}
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in by_name]
    if unknown or not wanted:
        raise ValueError(f"--steps must name quick steps among {sorted(by_name)}, got {names!r}")
    return [by_name[name] for name in wanted]


def _median_row(measurements: list[Measurement], new_tokens: int) -> dict[str, float]:
    decode_rates = [m.decode_calls / m.decode_seconds for m in measurements if m.decode_seconds > 0]
    # The dtypes may end their replies at different tokens, so every step is brought to new_tokens tokens.
    step_seconds = [normalised_step_seconds(m, new_tokens) for m in measurements]
    known = [seconds for seconds in step_seconds if seconds is not None]
    return {
        "prefill_seconds": statistics.median(m.prefill_seconds for m in measurements),
        "decode_tokens_per_second": statistics.median(decode_rates) if decode_rates else float("nan"),
        "step_seconds": statistics.median(known) if known else float("nan"),
    }


def summarise_by_dtype(measurements: Sequence[Measurement], dtypes: Sequence[str],
                       new_tokens: dict[str, int]) -> dict[str, Any]:
    """Return ``{step: {dtype: medians, ...}}`` with each dtype's ``step_time_ratio`` to the first dtype.

    ``new_tokens`` maps each step name to the tokens its step time is normalised to.
    """
    steps: dict[str, Any] = {}
    for step in dict.fromkeys(m.step for m in measurements):
        rows = {dtype: _median_row([m for m in measurements if m.step == step and m.engine == dtype],
                                   new_tokens[step])
                for dtype in dtypes}
        reference = rows[dtypes[0]]["step_seconds"]
        for row in rows.values():
            row["step_time_ratio"] = row["step_seconds"] / reference
        steps[step] = rows
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model once per dtype, alternate the engines over the quick steps, print and write the medians."""
    args = _parse_args(argv)
    steps = args.steps
    engines = [LayerRouteEngine(LayerRouteChat(model=args.model, adapter=None, routing=False, dtype=dtype,
                                               device=args.device), name=dtype, label=dtype)
               for dtype in args.dtypes]
    measurements = run_rounds(engines, steps, args.rounds, args.warmup,
                              on_measurement=lambda m: print(f"  round {m.round_index} {m.step:<14} {m.engine:<9}"
                                                             f" {m.step_seconds:6.2f} s", flush=True))
    summary = summarise_by_dtype(measurements, args.dtypes, {step.name: step.new_tokens for step in steps})
    print(f"\n{'step':<14} {'dtype':<9} {'prefill s':>9} {'decode tok/s':>12} {'step s':>7} {'ratio':>6}")
    for step, rows in summary.items():
        for dtype, row in rows.items():
            print(f"{step:<14} {dtype:<9} {row['prefill_seconds']:9.3f} {row['decode_tokens_per_second']:12.1f}"
                  f" {row['step_seconds']:7.3f} {row['step_time_ratio']:6.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "device": args.device, "dtypes": args.dtypes,
                                         "steps": summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
