"""Rank-8 LoRA on the attention projections (q, k, v, o), through peft, and its merge for inference.

LoRA's B matrix starts at zero, so a freshly attached adapter leaves every logit unchanged. At
inference the adapter is merged into the base weights and the peft wrappers are removed, so a merged
model runs at base speed and its FLOPs carry no LoRA term.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyperparameters."""

    rank: int = 8
    """Rank ``r`` of the update ``B @ A``."""
    alpha: float = 16.0
    """Scale numerator: the update is multiplied by ``alpha / rank``."""
    dropout: float = 0.0
    """Dropout on the LoRA input while training."""
    targets: tuple[str, ...] = ATTENTION_PROJECTIONS
    """Module names that get an adapter."""

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"LoraSettings.rank must be a positive integer, got {self.rank!r}")
        if self.alpha <= 0:
            raise ValueError(f"LoraSettings.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"LoraSettings.dropout must be in [0, 1), got {self.dropout}")


def attach_lora(model: nn.Module, settings: LoraSettings | None = None) -> nn.Module:
    """Add LoRA modules to ``model`` in place, freeze every base weight, and return ``model``."""
    settings = settings or LoraSettings()
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.targets), bias="none")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    inject_adapter_in_model(config, model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return the LoRA weights of ``model`` keyed by parameter name."""
    return {name: p.detach().cpu() for name, p in model.named_parameters() if "lora_" in name}


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base weight and put the plain base module back; returns ``model``."""
    wrapped = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    for name, module in wrapped:
        module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    return model


def merge_lora_keeping_base(model: nn.Module) -> nn.Module:
    """Merge every LoRA update into ``model`` as :func:`merge_lora` does, and return a twin that runs the base weights.

    The twin shares every module, parameter and buffer with ``model`` except the LoRA targets, for which it
    keeps copies of the unmerged base layers. For q/k/v/o on Qwen2.5-0.5B those copies are 44M parameters
    (88 MB in bfloat16), whatever the LoRA rank. The rest of the model is not copied.
    """
    originals = {name: copy.deepcopy(module.get_base_layer()) for name, module in model.named_modules()
                 if isinstance(module, LoraLayer)}
    merge_lora(model)
    return share_modules_except(model, originals)


def share_modules_except(module: nn.Module, replacements: dict[str, nn.Module]) -> nn.Module:
    """Return a copy of ``module`` whose submodules at the dotted paths in ``replacements`` are swapped.

    Only the modules on a path to a replacement are copied, shallowly and with their own child table. Every
    other submodule, parameter and buffer is the same object in ``module`` and in the copy. The copied
    modules also share their hook tables with the originals, so a hook registered later on one fires on both.
    """
    twin = copy.copy(module)
    twin.__dict__["_modules"] = dict(module._modules)
    nested: dict[str, dict[str, nn.Module]] = {}
    for path, replacement in replacements.items():
        head, _, rest = path.partition(".")
        if head not in module._modules:
            raise KeyError(f"{type(module).__name__} has no submodule {head!r} (from path {path!r})")
        if rest:
            nested.setdefault(head, {})[rest] = replacement
        else:
            twin._modules[head] = replacement
    for head, below in nested.items():
        twin._modules[head] = share_modules_except(module._modules[head], below)
    return twin


@contextmanager
def lora_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` as its untouched base inside the ``with`` block: every LoRA update is switched off, then back on."""
    layers = [module for module in model.modules() if isinstance(module, LoraLayer)]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield model
    finally:
        for layer in layers:
            layer.enable_adapters(True)


def has_unmerged_lora(model: nn.Module) -> bool:
    """Return whether ``model`` still carries LoRA modules that run beside the base weights."""
    return any(isinstance(module, LoraLayer) for module in model.modules())


__all__ = ["ATTENTION_PROJECTIONS", "LoraSettings", "attach_lora", "has_unmerged_lora", "lora_disabled", "lora_state_dict", "merge_lora",
           "merge_lora_keeping_base", "share_modules_except"]
