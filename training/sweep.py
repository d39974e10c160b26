"""A seed sweep: train and evaluate one adapter per seed, then summarise the spread.

Run (each seed trains with the same flags; evaluation skips BFCL to stay short)::

    python -m training.sweep --seeds 0 1 2 --output-root runs/sweep --per-mode 40 -- --steps 40 --batch-size 2

Writes ``seed-N/eval.json`` per seed and ``summary.json`` with every seed's FLOPs saved per mode, the
differential, perplexities, and the minimum, mean and maximum across seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.cli import train_main
from training.evaluate import EvalSizes, evaluate


def _row(seed: int, report: dict[str, Any]) -> dict[str, Any]:
    modes = report["modes"]
    return {
        "seed": seed,
        "tool_call_flops_saved": modes["tool_call"]["flops_saved_share"],
        "planning_flops_saved": modes["planning"]["flops_saved_share"],
        "skip_differential": report["skip_differential"],
        "tool_call_ppl_delta": modes["tool_call"]["ppl_routed"] - modes["tool_call"]["ppl_base"],
        "planning_ppl_delta": modes["planning"]["ppl_routed"] - modes["planning"]["ppl_base"],
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the rows with the min / mean / max of every metric and whether the differential is always positive."""
    metrics = [key for key in rows[0] if key != "seed"]
    spread = {key: {"min": min(r[key] for r in rows), "mean": statistics.fmean(r[key] for r in rows),
                    "max": max(r[key] for r in rows)} for key in metrics}
    return {"seeds": rows, "spread": spread,
            "differential_positive_every_seed": all(r["skip_differential"] > 0 for r in rows)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep; flags after ``--`` go to ``layerroute-train`` unchanged."""
    argv = list(sys.argv[1:] if argv is None else argv)
    train_flags = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m training.sweep", description="Train and evaluate several seeds.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    parser.add_argument("--output-root", type=Path, default=Path("runs/sweep"), help="one folder per seed goes here")
    parser.add_argument("--per-mode", type=int, default=40, help="held-out examples per mode (default: 40)")
    args = parser.parse_args(own)
    rows = []
    for seed in args.seeds:
        folder = args.output_root / f"seed-{seed}"
        train_main([*train_flags, "--seed", str(seed), "--output-dir", str(folder)])
        report = evaluate(str(folder / "adapter"), sizes=EvalSizes(per_mode=args.per_mode, bfcl=0), bfcl=False)
        (folder / "eval.json").write_text(json.dumps(report, indent=2))
        rows.append(_row(seed, report))
    summary = summarise(rows)
    (args.output_root / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
