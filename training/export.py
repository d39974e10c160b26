"""Write an adapter folder from a training checkpoint, to evaluate or try a run before it ends.

    python -m training.export runs/adapter/checkpoints/step-000060 runs/adapter/adapter-step-60

The checkpoint's ``state.json`` stores the run's config, so the base model and LoRA settings come from
there. The adapter is written on the CPU whatever device the run used.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from safetensors.torch import load_file

from training.config import TrainConfig
from training.loop import build_routed_model, load_trainable, save_final


def export_checkpoint(checkpoint: Path, output: Path) -> Path:
    """Load the base model with ``checkpoint``'s routers and LoRA and save them as an adapter in ``output``.

    Raises:
        FileNotFoundError: when ``checkpoint`` is not a complete checkpoint folder.
    """
    state_file, weights_file = checkpoint / "state.json", checkpoint / "trainable.safetensors"
    if not state_file.is_file() or not weights_file.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint (state.json or trainable.safetensors "
                                "missing); pass a step-NNNNNN folder from OUTPUT_DIR/checkpoints")
    state = json.loads(state_file.read_text())
    config = TrainConfig(**state["config"])
    routed, _ = build_routed_model(config, "cpu")
    load_trainable(routed, load_file(str(weights_file)), checkpoint)
    save_final(config, routed, output, checkpoint_step=state["step"])
    return output


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m training.export CHECKPOINT OUTPUT``."""
    parser = argparse.ArgumentParser(prog="python -m training.export", description="Write an adapter folder from a training checkpoint.")
    parser.add_argument("checkpoint", type=Path, help="a checkpoint folder, such as runs/adapter/checkpoints/step-000060")
    parser.add_argument("output", type=Path, help="the adapter folder to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"adapter written to {export_checkpoint(args.checkpoint, args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["export_checkpoint", "main"]
