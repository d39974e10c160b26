"""Training and held-out sets from the configured sources, split the same way for every training seed."""

from __future__ import annotations

import logging

from transformers import PreTrainedTokenizerBase

from training.config import TrainConfig
from training.data import (
    RenderedExample,
    SkipCounter,
    build_training_set,
    log_skip_counts,
    offer_unused_tools,
    render_examples,
    split_examples,
)

logger = logging.getLogger(__name__)

SPLIT_SEED = 1234
"""Seed of the train/held-out split, fixed so that every seed of a sweep is evaluated on the same examples."""
_FILE_SOURCES = ("hermes", "glaive", "gsm8k", "turing")


def _source_arguments(sources: tuple[str, ...]) -> dict[str, object]:
    arguments: dict[str, object] = {"champ": "champ" in sources, "bfcl_categories": None}
    if "bfcl" not in sources:
        arguments["bfcl_categories"] = ()
    for source in sources:
        name, _, location = source.partition("=")
        if name in ("bfcl", "champ"):
            continue
        if name not in _FILE_SOURCES or not location:
            raise ValueError(f"Unknown data source {source!r}; use bfcl, champ, or NAME=PATH_OR_HUB_ID with NAME in "
                             f"{list(_FILE_SOURCES)}")
        arguments[name] = location
    return {k: v for k, v in arguments.items() if v is not None}


def prepare_data(config: TrainConfig, tokenizer: PreTrainedTokenizerBase
                 ) -> tuple[list[RenderedExample], list[RenderedExample]]:
    """Return ``(train, held_out)`` rendered examples; skipped rows are counted and logged by reason."""
    skips = SkipCounter()
    examples = build_training_set(max_per_mode=config.per_mode_cap, seed=SPLIT_SEED, skips=skips,
                                  **_source_arguments(config.sources))
    # Before the split, so held-out planning steps are offered tools as often as training ones.
    examples = offer_unused_tools(examples, config.planning_tools_share, seed=SPLIT_SEED)
    train, held_out = split_examples(examples, config.eval_fraction, seed=SPLIT_SEED)
    train_rendered = render_examples(train, tokenizer, config.max_length, skips, config.call_format)
    held_out_rendered = render_examples(held_out, tokenizer, config.max_length, skips, config.call_format)
    log_skip_counts(skips, title="rows and examples left out", level=logging.WARNING if skips else logging.INFO)
    for name, subset in (("train", train_rendered), ("held-out", held_out_rendered)):
        modes = {m: sum(e.mode == m for e in subset) for m in ("tool_call", "planning")}
        logger.info("%s examples: %d (%s)", name, len(subset), modes)
    return train_rendered, held_out_rendered


__all__ = ["SPLIT_SEED", "prepare_data"]
