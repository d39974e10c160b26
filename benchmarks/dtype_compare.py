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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.agent_steps import AgentStep, agent_steps
from benchmarks.engines import LayerRouteEngine
from benchmarks.latency_summary import StepSummary, run_rounds, summarise
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
    requested = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in requested if name not in by_name]
    if unknown or not requested:
        raise ValueError(f"--steps must name quick steps among {sorted(by_name)}, got {names!r}")
    return [by_name[name] for name in requested]


def summarise_by_dtype(summaries: Sequence[StepSummary], dtypes: Sequence[str]) -> dict[str, Any]:
    """Return ``{step: {dtype: medians, ...}}`` with each dtype's ``step_time_ratio`` to the first dtype.

    ``summaries`` come from :func:`benchmarks.latency_summary.summarise`, whose step seconds are normalised to
    each step's token count, because the dtypes may end their replies at different tokens.
    """
    by_key = {(summary.step, summary.engine): summary for summary in summaries}
    steps: dict[str, Any] = {}
    for step in dict.fromkeys(summary.step for summary in summaries):
        rows = {dtype: {"prefill_seconds": by_key[step, dtype].prefill_seconds,
                        "decode_tokens_per_second": by_key[step, dtype].decode_tokens_per_second,
                        "step_seconds": by_key[step, dtype].step_seconds}
                for dtype in dtypes}
        reference = rows[dtypes[0]]["step_seconds"]
        for row in rows.values():
            known = row["step_seconds"] is not None and reference
            row["step_time_ratio"] = row["step_seconds"] / reference if known else None
        steps[step] = rows
    return steps


def _cell(value: float | None, width: int, decimals: int) -> str:
    return f"{value:{width}.{decimals}f}" if value is not None else "-".rjust(width)


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
    summaries = summarise(measurements, steps, engines[0].llm.runtime.counter)
    summary = summarise_by_dtype(summaries, args.dtypes)
    print(f"\n{'step':<14} {'dtype':<9} {'prefill s':>9} {'decode tok/s':>12} {'step s':>7} {'ratio':>6}")
    for step, rows in summary.items():
        for dtype, row in rows.items():
            print(f"{step:<14} {dtype:<9} {_cell(row['prefill_seconds'], 9, 3)} "
                  f"{_cell(row['decode_tokens_per_second'], 12, 1)} {_cell(row['step_seconds'], 7, 3)} "
                  f"{_cell(row['step_time_ratio'], 6, 2)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "device": args.device, "dtypes": args.dtypes,
                                         "steps": summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
