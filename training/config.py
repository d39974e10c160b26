"""The one configuration of a training run, checked field by field on construction."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from layerroute_agent.loading import DEFAULT_MODEL
from training.data.render import CALL_FORMATS

MULTI_TURN_ANSWERS = ("template", "base")
"""Values of :attr:`TrainConfig.multi_turn_answers`."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one routers + LoRA training run."""

    model: str = DEFAULT_MODEL
    """Base model spec (offline pack name, folder, .gguf file or hub id)."""
    output_dir: str = "runs/adapter"
    """Folder for checkpoints and the final adapter."""
    steps: int = 300
    """Optimiser steps."""
    batch_size: int = 4
    """Examples per step (per process under accelerate)."""
    max_length: int = 512
    """Maximum prompt + target length in tokens; longer examples are skipped and counted, never truncated."""
    learning_rate: float = 2e-4
    """AdamW learning rate of the LoRA weights."""
    router_learning_rate: float = 5e-4
    """AdamW learning rate of the routers."""
    gate_penalty: float = 0.05
    """λ: weight of the mean gate probability in the loss (the compute budget)."""
    gate_penalty_planning: float | None = None
    """λ for planning examples when it should differ from ``gate_penalty`` (a mode-aware budget)."""
    skip_target: float | None = None
    """Share of all blocks a tool-call step should skip. With it, a tool-call row pays the gate penalty only
    while it runs more than ``1 - skip_target`` of the blocks. The blocks are counted on the hard gates, with
    the straight-through gradient. So the skip rate settles at the target instead of growing with every step.
    Planning rows keep the plain penalty on the mean gate probability."""
    distill_weight: float = 0.0
    """Weight of KL(base || routed) on target tokens, added to the loss. The teacher is the same model with
    every block and no LoRA, so the routed model learns to keep the base model's whole next-token
    distribution, not only the target token. 0 keeps the plain cross-entropy loss."""
    ce_weight: float = 1.0
    """Weight of the cross-entropy on target tokens. 0 with ``distill_weight > 0`` trains on the base model's
    distribution alone: the targets then only mark which positions count, so the data's own habits (such as
    several calls in one reply) are not learnt."""
    planning_tools_share: float = 0.0
    """Share of planning examples that get one to three tools of the tool-call examples added to their prompt.
    They teach the model to reply in text when the offered tools do not fit. They also stop the routers from
    telling the modes apart by the mere presence of tools, which every step of a real agent has."""
    pooling: str = "mean"
    """Router input: masked ``mean`` of the prompt, or its ``last`` token."""
    init_bias: float = 1.0
    """Bias every router starts with (positive: run the block, with probability sigmoid(1) = 0.73 at 1.0)."""
    always_run: tuple[int, ...] = (0,)
    """Blocks that always run and are not routed. Block 0 by default: the straight-through gradient
    misjudges it, and a run that learnt to skip it lost the model (target cross-entropy 0.05 -> 14)."""
    lora_rank: int = 8
    """LoRA rank on q, k, v, o; 0 trains routers only."""
    seed: int = 0
    """Seed of initialisation, data order and the held-out split."""
    dtype: str = "bfloat16"
    """Parameter dtype of the frozen base model; trainable weights are kept in float32."""
    device: str = "cpu"
    """Torch device when not launched through accelerate."""
    checkpoint_every: int = 25
    """Steps between checkpoints."""
    keep_checkpoints: int = 2
    """Complete checkpoints kept on disk (the newest ones)."""
    eval_fraction: float = 0.1
    """Share of the in-domain examples held out (never trained on)."""
    per_mode_cap: int = 2000
    """Most examples taken per mode, so that neither mode swamps the other."""
    call_format: str = "json"
    """Format of tool-call targets: ``json`` (bare JSON objects, one per line, the form the offline
    Qwen2.5-Coder-0.5B writes on its own) or ``tagged`` (``<tool_call>`` blocks, the chat template's form).
    ``python -m training.call_format`` measures which opening the base model prefers."""
    sources: tuple[str, ...] = ("bfcl", "champ")
    """Data sources. ``bfcl``, ``champ`` and ``bfcl_multi_turn`` work offline. ``bfcl=simple_python,multiple``
    loads only the named BFCL training categories (the parallel ones put several calls in one reply). Local files are given as
    ``hermes=PATH``, ``glaive=PATH``, ``gsm8k=PATH`` or ``turing=PATH``, with a hub id in place of PATH when the
    hub is reachable. ``bfcl_multi_turn`` replays BFCL's multi-turn tasks against their simulated APIs (see
    ``multi_turn_answers``)."""
    multi_turn_answers: str = "template"
    """Source of the text reply after a replayed turn's tool results. ``template`` writes one synthetic
    sentence per call from its real result (:mod:`training.data.result_answers`). ``base`` takes the base
    model's own greedy reply and keeps it in ``base_answers``, but the offline 0.5B model writes a usable
    one for few turns."""
    base_answers: str | None = None
    """JSON file that keeps the base model's replies to replayed multi-turn steps (``multi_turn_answers="base"``), so that later runs and
    ``layerroute-eval`` reuse them. ``None`` (default): ``base-answers-<model>-<dtype>.json`` in the
    package's cache folder (``$LAYERROUTE_CACHE`` or ``~/.cache/layerroute_agent``)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes stored with the adapter."""

    def __post_init__(self) -> None:
        for name in ("sources", "always_run"):  # JSON and argparse give lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        problems = [problem for problem in self._problems() if problem]
        if problems:
            raise ValueError("Invalid TrainConfig: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        return [
            _positive("steps", self.steps),
            _positive("batch_size", self.batch_size),
            _positive("max_length", self.max_length, minimum=8),
            _positive("checkpoint_every", self.checkpoint_every),
            _positive("keep_checkpoints", self.keep_checkpoints),
            _positive("per_mode_cap", self.per_mode_cap),
            "" if self.learning_rate > 0 else f"learning_rate must be > 0, got {self.learning_rate}",
            "" if self.router_learning_rate > 0 else f"router_learning_rate must be > 0, got {self.router_learning_rate}",
            "" if self.gate_penalty >= 0 else f"gate_penalty must be >= 0, got {self.gate_penalty}",
            "" if (self.gate_penalty_planning or 0) >= 0 else
            f"gate_penalty_planning must be >= 0, got {self.gate_penalty_planning}",
            "" if self.skip_target is None or 0 < self.skip_target < 1 else
            f"skip_target must be None or in (0, 1), got {self.skip_target}",
            "" if self.distill_weight >= 0 else f"distill_weight must be >= 0, got {self.distill_weight}",
            "" if self.ce_weight >= 0 else f"ce_weight must be >= 0, got {self.ce_weight}",
            "" if self.ce_weight > 0 or self.distill_weight > 0 else
            "ce_weight and distill_weight are both 0, so no loss trains LoRA; set either above 0",
            "" if 0 <= self.planning_tools_share <= 1 else
            f"planning_tools_share must be in [0, 1], got {self.planning_tools_share}",
            "" if self.multi_turn_answers in MULTI_TURN_ANSWERS else
            f"multi_turn_answers must be one of {list(MULTI_TURN_ANSWERS)}, got {self.multi_turn_answers!r}",
            "" if self.pooling in ("mean", "last") else f"pooling must be 'mean' or 'last', got {self.pooling!r}",
            "" if self.call_format in CALL_FORMATS else
            f"call_format must be one of {list(CALL_FORMATS)}, got {self.call_format!r}",
            "" if all(isinstance(b, int) and b >= 0 for b in self.always_run) else
            f"always_run must hold block indices >= 0, got {self.always_run!r}",
            "" if self.lora_rank >= 0 else f"lora_rank must be >= 0, got {self.lora_rank}",
            "" if 0 <= self.eval_fraction < 1 else f"eval_fraction must be in [0, 1), got {self.eval_fraction}",
            "" if self.dtype in ("bfloat16", "float32", "float16") else
            f"dtype must be bfloat16, float32 or float16, got {self.dtype!r}",
        ]

    def penalty_for(self, mode: str) -> float:
        """Return λ for an example of ``mode``."""
        if mode == "planning" and self.gate_penalty_planning is not None:
            return self.gate_penalty_planning
        return self.gate_penalty

    def skip_target_for(self, mode: str) -> float:
        """Return the skip target of an example of ``mode``; 0 means the plain penalty."""
        if mode == "tool_call" and self.skip_target is not None:
            return self.skip_target
        return 0.0

    def to_json(self) -> str:
        """Return the config as JSON."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json_file(cls, path: str | Path) -> TrainConfig:
        """Read a config written by :meth:`to_json`; unknown keys raise ``ValueError``."""
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown TrainConfig keys {unknown} in {path}; known keys are {sorted(known)}")
        return cls(**data)


def _positive(name: str, value: int, minimum: int = 1) -> str:
    return "" if isinstance(value, int) and value >= minimum else f"{name} must be an integer >= {minimum}, got {value!r}"


__all__ = ["MULTI_TURN_ANSWERS", "TrainConfig"]
