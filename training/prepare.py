"""Training and held-out sets from the configured sources, split the same way for every training seed."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from layerroute_agent.offline_pack import cache_dir
from layerroute_agent.runtime import get_runtime
from training.base_answers import BaseAnswers, answer_key
from training.config import TrainConfig
from training.data import (
    AnswerTurn,
    RenderedExample,
    SkipCounter,
    build_training_set,
    log_skip_counts,
    offer_unused_tools,
    render_examples,
    split_examples,
)
from training.data.result_answers import template_answer
from training.self_answers import base_model_answerer

logger = logging.getLogger(__name__)

SPLIT_SEED = 1234
"""Seed of the train/held-out split, fixed so that every seed of a sweep is evaluated on the same examples."""
_FILE_SOURCES = ("hermes", "glaive", "gsm8k", "turing")
_OFFLINE_SOURCES = ("bfcl", "champ", "bfcl_multi_turn")
ANSWER_MAX_TOKENS = 96
"""Most tokens of a base-model reply after replayed tool results; a longer reply is cut off and not used."""


def _source_arguments(sources: tuple[str, ...]) -> dict[str, object]:
    arguments: dict[str, object] = {"champ": "champ" in sources, "bfcl_categories": None}
    if "bfcl" not in sources:
        arguments["bfcl_categories"] = ()
    for source in sources:
        name, separator, location = source.partition("=")
        if name == "bfcl" and separator:
            # bfcl=simple_python,multiple picks categories; load_bfcl rejects the held-out ones.
            categories = tuple(part.strip() for part in location.split(",") if part.strip())
            if not categories:
                raise ValueError(f"Data source {source!r} names no BFCL category; write bfcl=simple_python,multiple")
            arguments["bfcl_categories"] = categories
            continue
        if name in _OFFLINE_SOURCES and not location:
            continue
        if name in _OFFLINE_SOURCES:
            raise ValueError(f"Data source {source!r} takes no location; write {name!r} alone "
                             "(only bfcl takes a value: bfcl=CATEGORY,CATEGORY)")
        if name not in _FILE_SOURCES or not location:
            raise ValueError(f"Unknown data source {source!r}; use {', '.join(_OFFLINE_SOURCES)}, or "
                             f"NAME=PATH_OR_HUB_ID with NAME in {list(_FILE_SOURCES)}")
        arguments[name] = location
    return {k: v for k, v in arguments.items() if v is not None}


def base_answers_path(config: TrainConfig) -> Path:
    """Return the file that keeps the base model's replies to replayed multi-turn steps."""
    if config.base_answers is not None:
        return Path(config.base_answers)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", config.model).strip("-")
    return cache_dir() / f"base-answers-{slug}-{config.dtype}.json"


def _multi_turn_answerer(config: TrainConfig) -> AnswerTurn:
    if config.multi_turn_answers == "template":
        return template_answer
    # A runtime without an adapter is the base model. The training model cannot serve: its LoRA changes.
    runtime = get_runtime(config.model, None, config.dtype, config.device)
    key = answer_key(config.model, config.dtype, ANSWER_MAX_TOKENS, config.device)
    answers = BaseAnswers.open(base_answers_path(config), key)
    return base_model_answerer(runtime, answers, ANSWER_MAX_TOKENS)


def prepare_data(config: TrainConfig, tokenizer: PreTrainedTokenizerBase
                 ) -> tuple[list[RenderedExample], list[RenderedExample]]:
    """Return ``(train, held_out)`` rendered examples; skipped rows are counted and logged by reason.

    With the ``bfcl_multi_turn`` source and ``multi_turn_answers="base"`` this loads the base model a second
    time and generates the replies that :func:`base_answers_path` does not hold yet (several seconds each on
    a CPU).
    """
    skips = SkipCounter()
    multi_turn = _multi_turn_answerer(config) if "bfcl_multi_turn" in config.sources else None
    examples = build_training_set(max_per_mode=config.per_mode_cap, seed=SPLIT_SEED, skips=skips,
                                  bfcl_multi_turn=multi_turn, **_source_arguments(config.sources))
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


__all__ = ["ANSWER_MAX_TOKENS", "SPLIT_SEED", "base_answers_path", "prepare_data"]
