"""Routing adapters on disk: routers + LoRA + a config naming the base model, as one folder.

Layout of an adapter folder::

    adapter_config.json    base model identity, routing and LoRA settings
    routers.safetensors    one Linear(D, 1) per block
    lora.safetensors       LoRA A/B weights on q, k, v, o (absent when trained without LoRA)

Loading checks that the base model matches (architecture, blocks, hidden size, vocabulary) and fails
with a clear error otherwise.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from layerroute_agent.lora import LoraSettings, attach_lora, lora_state_dict, merge_lora, merge_lora_keeping_base
from layerroute_agent.routing import RouterStack, RoutingConfig

logger = logging.getLogger(__name__)

CONFIG_NAME, ROUTERS_NAME, LORA_NAME = "adapter_config.json", "routers.safetensors", "lora.safetensors"


@dataclass(frozen=True)
class BaseModelIdentity:
    """The facts about a base model that an adapter depends on."""

    model_type: str
    num_blocks: int
    hidden_size: int
    vocab_size: int
    name: str = ""
    """Human-readable name, e.g. the model spec it was trained on (not compared)."""

    @classmethod
    def of(cls, model: nn.Module, name: str = "") -> BaseModelIdentity:
        """Read the identity from a transformers model's config."""
        config = model.config
        return cls(config.model_type, config.num_hidden_layers, config.hidden_size, config.vocab_size, name)

    def mismatches(self, other: BaseModelIdentity) -> list[str]:
        """Return one line per field (name excepted) on which ``other`` differs."""
        fields = ("model_type", "num_blocks", "hidden_size", "vocab_size")
        return [f"{f}: adapter has {getattr(self, f)!r}, model has {getattr(other, f)!r}"
                for f in fields if getattr(self, f) != getattr(other, f)]


def save_adapter(folder: str | Path, model: nn.Module, routers: RouterStack, base: BaseModelIdentity,
                 lora: LoraSettings | None, extra: dict[str, Any] | None = None) -> Path:
    """Write routers, LoRA weights (when ``lora`` is given) and the config into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in routers.state_dict().items()}, str(folder / ROUTERS_NAME))
    if lora is not None:
        save_file({k: v.contiguous() for k, v in lora_state_dict(model).items()}, str(folder / LORA_NAME))
    config = {"base_model": asdict(base), "routing": asdict(routers.config),
              "lora": asdict(lora) if lora is not None else None, "extra": extra or {}}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return folder


def read_adapter_config(folder: str | Path) -> dict[str, Any]:
    """Return an adapter folder's parsed config, or raise ``FileNotFoundError`` naming the folder."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a routing adapter: {CONFIG_NAME} is missing")
    return json.loads(path.read_text())


def load_adapter(folder: str | Path, model: nn.Module, model_name: str = "") -> RouterStack:
    """Load an adapter onto ``model``: routers returned, LoRA attached, loaded and merged in place.

    Raises:
        FileNotFoundError: ``folder`` is not an adapter folder.
        ValueError: the adapter was trained for a different base model (every mismatch is listed).
    """
    routers, _ = _load(folder, model, model_name, keep_base=False)
    return routers


def load_adapter_keeping_base(folder: str | Path, model: nn.Module, model_name: str = ""
                              ) -> tuple[RouterStack, nn.Module]:
    """Load an adapter like :func:`load_adapter`, and also return a twin of ``model`` without the LoRA update.

    The twin shares all weights with ``model`` but the LoRA targets (see
    :func:`~layerroute_agent.lora.merge_lora_keeping_base`). It is ``model`` itself when the adapter has no
    LoRA. Raises what :func:`load_adapter` raises.
    """
    return _load(folder, model, model_name, keep_base=True)


def _load(folder: str | Path, model: nn.Module, model_name: str, keep_base: bool) -> tuple[RouterStack, nn.Module]:
    config = read_adapter_config(folder)
    expected = BaseModelIdentity(**config["base_model"])
    problems = expected.mismatches(BaseModelIdentity.of(model))
    if problems:
        raise ValueError(
            f"Adapter {folder} was trained for base model {expected.name or expected.model_type!r}, which differs "
            f"from the loaded model: {'; '.join(problems)}. Load it onto its own base model or train a new adapter."
        )
    routers = RouterStack(expected.num_blocks, expected.hidden_size, RoutingConfig(**config["routing"]))
    routers.load_state_dict(load_file(str(Path(folder) / ROUTERS_NAME)))
    base = model
    if config.get("lora"):
        settings = LoraSettings(**{**config["lora"], "targets": tuple(config["lora"]["targets"])})
        attach_lora(model, settings)
        missing = set(lora_state_dict(model))
        weights = load_file(str(Path(folder) / LORA_NAME))
        model.load_state_dict(weights, strict=False)
        if missing != set(weights):
            raise ValueError(f"Adapter {folder} LoRA weights do not match the model's LoRA modules")
        if keep_base:
            base = merge_lora_keeping_base(model)
        else:
            merge_lora(model)
    logger.info("Loaded routing adapter %s (LoRA %s) onto %s", folder, "merged" if config.get("lora") else "none",
                model_name or type(model).__name__)
    return routers, base


__all__ = ["BaseModelIdentity", "load_adapter", "load_adapter_keeping_base", "read_adapter_config", "save_adapter"]
