"""The loaded, routed model shared by every chat model instance with the same settings.

A :class:`RoutedRuntime` contains the routed model, its tokenizer and its FLOPs counter. One runtime
exists per (model spec, adapter, dtype, device); it keeps no per-call state, so several threads can
generate with it at once. :meth:`RoutedRuntime.run_step` turns a prompt into a reply and its
:class:`~layerroute_agent.compute_report.StepRecord`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from layerroute_agent.adapter import load_adapter_keeping_base
from layerroute_agent.compute_report import Mode, StepRecord
from layerroute_agent.flops import FlopsCounter, ModelShape
from layerroute_agent.generation import GenerationConfig, GenerationResult, stream_tokens
from layerroute_agent.loading import DEFAULT_MODEL, load_model
from layerroute_agent.lora import has_unmerged_lora
from layerroute_agent.routing import RoutedCausalLM, RouteOverride

logger = logging.getLogger(__name__)

DEFAULT_ADAPTER = "default"
"""Adapter value that selects the adapter shipped for the default model, if the package has one."""


OVERRIDE = "override"
"""``routing`` of a step whose caller turned routing off (``LayerRouteChat(routing=False)``)."""
AFTER_TOOL_RESULT = "after_tool_result"
"""``routing`` of a step that ran the base model (every block, no LoRA) because its prompt ends with a tool result."""
FORCED_REPLY = "forced_reply"
"""``routing`` of a step that ran the base model because its reply was forced: a ``tool_choice`` other than
``auto`` or ``none``, or structured output through ``response_format``."""
NO_TOOLS = "no_tools"
"""``routing`` of a step that ran the base model because it was offered no tools (plain chat)."""
FULL_DEPTH_REASONS = (OVERRIDE, AFTER_TOOL_RESULT, FORCED_REPLY, NO_TOOLS)
"""``routing`` values of steps that evaluated no router and ran every block."""
BASE_MODEL_REASONS = (AFTER_TOOL_RESULT, FORCED_REPLY, NO_TOOLS)
"""The full-depth reasons whose steps also leave out the adapter's LoRA: they run the untouched base model."""


def shipped_adapter_path() -> Path | None:
    """Return the folder of the adapter shipped for the default model, or ``None`` when none is shipped."""
    folder = Path(str(resources.files("layerroute_agent") / "adapters" / "qwen2.5-coder-0.5b-instruct"))
    return folder if (folder / "adapter_config.json").is_file() else None


def resolve_adapter(model_spec: str, adapter: str | None) -> str | None:
    """Map the ``adapter`` setting to a folder path, or ``None`` for untrained routers."""
    if adapter is None:
        return None
    if adapter == DEFAULT_ADAPTER:
        shipped = shipped_adapter_path() if model_spec == DEFAULT_MODEL else None
        return str(shipped) if shipped else None
    if not Path(adapter).is_dir():
        raise FileNotFoundError(f"adapter {adapter!r} is not a folder; pass an adapter folder, 'default' or None")
    return adapter


@dataclass
class RoutedRuntime:
    """A routed model ready to generate, with what the compute records need."""

    routed: RoutedCausalLM
    tokenizer: PreTrainedTokenizerBase
    model_name: str
    adapter: str | None
    counter: FlopsCounter
    full_counter: FlopsCounter
    base: RoutedCausalLM | None = None
    """The base model without the adapter's LoRA, which shares every other weight with ``routed``. It is
    ``None`` when the adapter has no LoRA, because ``routed`` running every block is then the base model.

    NOTE: ``.to()`` on one of the two models moves the shared weights but not the other's own q/k/v/o.
    Move neither after loading. Load the runtime on the device and dtype it should use instead."""

    @property
    def routing_label(self) -> str:
        """``learnt`` with a trained adapter, else ``untrained`` (every block runs: the base model)."""
        return "learnt" if self.adapter else "untrained"

    def run_step(self, prompt_ids: list[int], config: GenerationConfig, route_all: bool = False,
                 base_weights: bool = False) -> Iterator[str | GenerationResult]:
        """Generate one reply; yields text pieces, then the :class:`GenerationResult`.

        ``route_all`` runs every block without evaluating a router. ``base_weights`` implies it and also
        leaves out the adapter's LoRA, so the step runs the untouched base model.
        """
        model = self.base if base_weights and self.base is not None else self.routed
        override = RouteOverride.run_all() if route_all or base_weights else None
        return stream_tokens(model, self.tokenizer, prompt_ids, config, override)

    def step_record(self, result: GenerationResult, mode: Mode, tool_calls: list[str],
                    full_depth_reason: str | None = None) -> StepRecord:
        """Build the compute record of one finished step (batch row 0).

        ``full_depth_reason`` is one of :data:`FULL_DEPTH_REASONS` when the step ran every block without
        routers, and becomes the record's ``routing`` value. ``None`` means the routers decided.
        """
        blocks_run = result.decisions.blocks_run(0)
        routers = 0 if full_depth_reason else self.routed.num_routed_blocks
        prompt = result.prompt_tokens
        return StepRecord(
            mode=mode,
            model_name=self.model_name,
            routing=full_depth_reason or self.routing_label,
            blocks_run=blocks_run,
            blocks_skipped=result.decisions.blocks_skipped(0),
            flops_executed=self.counter.step_with_passes(prompt, result.decode_passes, len(blocks_run), routers),
            # The reference is the base model decoding one token per pass, so drafting never flatters the saving.
            flops_full=self.full_counter.step(prompt, result.one_token_decode_calls, self.routed.num_blocks, 0),
            tokens_in=prompt,
            tokens_out=len(result.token_ids),
            prefill_seconds=result.prefill_seconds,
            decode_seconds=result.decode_seconds,
            tool_calls=tool_calls,
            decode_passes=result.decode_calls,
            tokens_drafted=result.tokens_drafted,
            tokens_accepted=result.tokens_accepted,
        )


_runtimes: dict[tuple[str, str | None, str, str], RoutedRuntime] = {}
_runtimes_lock = threading.Lock()


def _build_runtime(spec: str, adapter_path: str | None, dtype: str, device: str) -> RoutedRuntime:
    loaded = load_model(spec, dtype=dtype, device=device)
    routers, base = None, None
    if adapter_path is None:
        logger.info("No trained routing adapter for %r: routers run every block, so this is the base model",
                    spec)
    else:
        routers, base_model = load_adapter_keeping_base(adapter_path, loaded.model, spec)
        if base_model is not loaded.model:
            base = RoutedCausalLM(base_model, routers).eval()
    if has_unmerged_lora(loaded.model):
        raise RuntimeError("LoRA must be merged before inference; load adapters through load_adapter_keeping_base")
    routed = RoutedCausalLM(loaded.model, routers).eval()
    counter = FlopsCounter(ModelShape.from_config(loaded.model.config))
    # LoRA is merged, so the routed model and the base model have the same per-block cost.
    return RoutedRuntime(routed, loaded.tokenizer, spec, adapter_path, counter, counter, base)


def get_runtime(spec: str, adapter: str | None, dtype: str, device: str) -> RoutedRuntime:
    """Return the shared runtime for these settings, loading it on first use."""
    adapter_path = resolve_adapter(spec, adapter)
    if Path(spec).expanduser().exists():
        spec = str(Path(spec).expanduser().resolve())  # one shared model whatever the spelling of the path
    key = (spec, adapter_path, dtype, str(torch.device(device)))
    with _runtimes_lock:
        if key not in _runtimes:
            _runtimes[key] = _build_runtime(spec, adapter_path, dtype, device)
        return _runtimes[key]


__all__ = ["AFTER_TOOL_RESULT", "BASE_MODEL_REASONS", "DEFAULT_ADAPTER", "FORCED_REPLY", "FULL_DEPTH_REASONS", "NO_TOOLS", "OVERRIDE", "RoutedRuntime", "get_runtime", "resolve_adapter", "shipped_adapter_path"]
