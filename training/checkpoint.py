"""Atomic, resumable training checkpoints in safetensors + JSON (no pickles).

A checkpoint is a folder ``step-NNNNNN`` holding the trainable weights, the AdamW state and
``state.json``. It is written under a ``.partial`` name and renamed when complete, so a run killed
mid-write leaves only complete checkpoints behind, and :func:`latest_checkpoint` never returns a
partial one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_PREFIX = "step-"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors = {}
    for param_id, param_state in state["state"].items():
        for key, value in param_state.items():
            tensors[f"{param_id}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return tensors, {"param_groups": state["param_groups"]}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(root: Path, step: int, trainable: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                    extra: dict[str, Any], keep: int) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically and keep only the newest ``keep`` ones."""
    final = root / f"{_PREFIX}{step:06d}"
    partial = root / f"{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in trainable.items()}, str(partial / "trainable.safetensors"))
    tensors, meta = _optimizer_tensors(optimizer)
    save_file(tensors, str(partial / "optimizer.safetensors"))
    (partial / "state.json").write_text(json.dumps({"step": step, "optimizer": meta, **extra}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Return complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and not p.name.endswith(".partial")]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX):]))


def latest_checkpoint(root: Path) -> Path | None:
    """Return the newest complete checkpoint under ``root``, or ``None``."""
    checkpoints = list_checkpoints(root)
    return checkpoints[-1] if checkpoints else None


def load_checkpoint(folder: Path, optimizer: torch.optim.Optimizer) -> tuple[int, dict[str, torch.Tensor], dict]:
    """Load the optimizer state in place; return ``(step, trainable weights, state.json contents)``."""
    state = json.loads((folder / "state.json").read_text())
    optimizer_tensors = load_file(str(folder / "optimizer.safetensors"))
    optimizer.load_state_dict(_optimizer_state(optimizer_tensors, state["optimizer"]))
    return state["step"], load_file(str(folder / "trainable.safetensors")), state


__all__ = ["latest_checkpoint", "list_checkpoints", "load_checkpoint", "save_checkpoint"]
