"""Command lines: ``layerroute-train`` (also ``python -m training``) and ``layerroute-eval``.

Train an adapter for the offline default model (resumes from the newest checkpoint in ``--output-dir``)::

    layerroute-train --output-dir runs/adapter --steps 300

Under accelerate, several processes on one machine (gloo on CPU)::

    accelerate launch --multi_gpu --num_processes 2 -m training --output-dir runs/ddp --steps 20

On a machine without GPUs, accelerate runs those processes on the CPU with the gloo backend.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.config import TrainConfig


def _field_docs() -> dict[str, str]:
    """Return each TrainConfig field's docstring, read from the source (dataclass fields have no __doc__)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(TrainConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr):
            docs[node.target.id] = " ".join(str(following.value.value).split())  # type: ignore[union-attr]
    return docs


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="layerroute-train", description="Train routers + LoRA on agent traces.")
    parser.add_argument("--config", type=Path, help="JSON file of TrainConfig fields; flags given here override it")
    docs = _field_docs()
    for field in dataclasses.fields(TrainConfig):
        if field.name == "extra":
            continue
        flag = "--" + field.name.replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else None
        help_text = f"{docs.get(field.name, '')} (default: {default})"
        if field.name == "sources":
            parser.add_argument(flag, nargs="+", default=None, help=help_text)
        elif field.name == "always_run":
            parser.add_argument(flag, type=int, nargs="*", default=None, help=help_text)
        elif field.name in ("gate_penalty_planning", "skip_target"):
            parser.add_argument(flag, type=float, default=None, help=help_text)
        elif field.name == "base_answers":
            parser.add_argument(flag, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=None, help=help_text)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Merge ``--config`` (if any) with the flags given on the command line."""
    values: dict[str, Any] = json.loads(args.config.read_text()) if args.config else {}
    for field in dataclasses.fields(TrainConfig):
        flag_value = getattr(args, field.name, None)
        if flag_value is not None:
            values[field.name] = flag_value
    return TrainConfig(**values)


def train_main(argv: Sequence[str] | None = None) -> int:
    """Run ``layerroute-train``."""
    from training.loop import build_routed_model, train
    from training.prepare import prepare_data

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = config_from_args(_train_parser().parse_args(argv))
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "train_config.json").write_text(config.to_json())
    routed, tokenizer = build_routed_model(config, "cpu" if config.device == "cpu" else config.device)
    train_set, held_out = prepare_data(config, tokenizer)
    folder = train(config, train_set, pad_id=tokenizer.pad_token_id or 0, routed=routed)
    print(f"adapter written to {folder}")
    return 0


def eval_main(argv: Sequence[str] | None = None) -> int:
    """Run ``layerroute-eval``."""
    from training.evaluate import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(train_main())
