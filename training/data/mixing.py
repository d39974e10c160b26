"""Train/eval splits, per-mode caps, and the training set built from every source.

Data flow: the loaders' :class:`TraceExample` lists -> :func:`mix_examples` (optional cap per mode,
seeded shuffle) -> :func:`split_examples` (seeded split that keeps each trace on one side).
:func:`offer_unused_tools` adds tools that do not fit to some planning prompts.
:func:`build_training_set` runs the loaders and the mixing in one call.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from .bfcl import TRAIN_BFCL_CATEGORIES, load_bfcl
from .bfcl_multi_turn import AnswerTurn, load_bfcl_multi_turn
from .examples import MODES, Mode, SkipCounter, TraceExample, counter_or_new, report_if_owned
from .planning import load_champ, load_gsm8k, load_turing
from .traces import load_glaive, load_hermes

logger = logging.getLogger(__name__)


def count_examples(examples: Iterable[TraceExample]) -> Counter[tuple[str, Mode]]:
    """Count examples per ``(source, mode)`` pair."""
    return Counter((example.source, example.mode) for example in examples)


def split_examples(examples: Sequence[TraceExample], eval_fraction: float, seed: int = 0
                   ) -> tuple[list[TraceExample], list[TraceExample]]:
    """Split examples into ``(train, eval)`` lists, the same way for the same input and seed.

    Examples that share a source and a non-empty ``trace_id`` (the steps of one conversation) land on
    the same side, so no evaluation prompt is a prefix of a training prompt. ``eval_fraction`` is the
    share of traces, not of examples, sent to ``eval``. Both lists keep the input order.

    Raises:
        ValueError: when ``eval_fraction`` is outside ``[0, 1)``.
    """
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    keys = [(example.source, example.trace_id) if example.trace_id else (example.source, f"#{index}")
            for index, example in enumerate(examples)]
    groups = list(dict.fromkeys(keys))
    random.Random(seed).shuffle(groups)
    eval_groups = set(groups[:round(eval_fraction * len(groups))])
    train = [example for example, key in zip(examples, keys, strict=True) if key not in eval_groups]
    evaluation = [example for example, key in zip(examples, keys, strict=True) if key in eval_groups]
    return train, evaluation


def mix_examples(examples: Iterable[TraceExample], *, max_per_mode: int | None = None, balance_modes: bool = False,
                 seed: int = 0) -> list[TraceExample]:
    """Cap the number of examples per mode and shuffle, the same way for the same input and seed.

    Args:
        examples: examples from any number of sources.
        max_per_mode: keep at most this many examples of each mode (a seeded random sample).
        balance_modes: also cap every mode at the size of the smallest mode present.
        seed: seed of the sampling and of the final shuffle.

    Raises:
        ValueError: when ``max_per_mode`` is negative.
    """
    if max_per_mode is not None and max_per_mode < 0:
        raise ValueError(f"max_per_mode must be None or >= 0, got {max_per_mode}")
    by_mode: dict[Mode, list[TraceExample]] = {mode: [] for mode in MODES}
    for example in examples:
        by_mode[example.mode].append(example)
    sizes = [len(group) for group in by_mode.values() if group]
    cap = max_per_mode
    if balance_modes and sizes:
        cap = min(sizes) if cap is None else min(cap, min(sizes))
    rng = random.Random(seed)
    mixed: list[TraceExample] = []
    for mode, group in by_mode.items():
        if cap is not None and len(group) > cap:
            logger.info("capped %s examples from %d to %d", mode, len(group), cap)
            group = rng.sample(group, cap)
        mixed.extend(group)
    rng.shuffle(mixed)
    return mixed


def offer_unused_tools(examples: Sequence[TraceExample], share: float, seed: int = 0, max_tools: int = 3
                       ) -> list[TraceExample]:
    """Add one to ``max_tools`` short tools of the tool-call examples to a seeded ``share`` of the planning prompts.

    The target stays a text answer, so these examples show the model a step that is offered tools and
    calls none (what BFCL's irrelevance category checks). Their source gets a ``+tools`` suffix; every
    other example is returned unchanged, in the input order.

    Raises:
        ValueError: when ``share`` is outside ``[0, 1]``, or ``share > 0`` and no example has tools.
    """
    if not 0 <= share <= 1:
        raise ValueError(f"Invalid share {share}: it must be in [0, 1]; pass 0 to offer no tools")
    if share == 0:
        return list(examples)
    pool = list({tool["function"]["name"]: tool for e in examples if e.mode == "tool_call" for tool in e.tools or []
                 }.values())
    # The shortest quarter of the tools, so that planning prompts (long already) stay within max_length.
    pool = sorted(pool, key=lambda tool: len(json.dumps(tool)))[:max(1, len(pool) // 4)]
    if not pool:
        raise ValueError("No tool-call example carries tools to offer; add a tool-call source or set share to 0")
    rng = random.Random(seed)
    out = []
    for example in examples:
        if example.mode == "planning" and not example.tools and rng.random() < share:
            tools = rng.sample(pool, rng.randint(1, min(max_tools, len(pool))))
            example = dataclasses.replace(example, tools=tools, source=f"{example.source}+tools")
        out.append(example)
    return out


def build_training_set(*, bfcl_categories: Sequence[str] = TRAIN_BFCL_CATEGORIES, champ: bool = True,
                       hermes: str | Path | None = None, glaive: str | Path | None = None,
                       gsm8k: str | Path | None = None, turing: str | Path | None = None,
                       hermes_config: str | None = None, bfcl_multi_turn: AnswerTurn | None = None,
                       limit_per_source: int | None = None,
                       max_per_mode: int | None = None, balance_modes: bool = False, seed: int = 0,
                       skips: SkipCounter | None = None) -> list[TraceExample]:
    """Load the offline sources (BFCL training categories, CHAMP) and any given local or hub sources, then mix them.

    Args:
        bfcl_categories: BFCL categories to load with ``split="train"``, so evaluation categories raise.
        champ: whether to load CHAMP.
        hermes: a Hermes file or hub id, or ``None`` to leave it out. The same applies to ``glaive``,
            ``gsm8k`` and ``turing``.
        glaive: a Glaive file or hub id.
        gsm8k: a GSM8K file or hub id.
        turing: a Turing-Open-Reasoning file or hub id.
        hermes_config: the Hermes hub configuration (``None`` reads the default one).
        bfcl_multi_turn: the ``answer_turn`` of :func:`load_bfcl_multi_turn` to replay BFCL's multi-turn
            tasks with, or ``None`` to leave them out.
        limit_per_source: read at most this many rows of each file or hub source (not BFCL or CHAMP).
        max_per_mode: passed to :func:`mix_examples`.
        balance_modes: passed to :func:`mix_examples`.
        seed: passed to :func:`mix_examples`.
        skips: counter for every rejected row; a fresh one is created (and its counts logged) when ``None``.

    Raises:
        ValueError: for a BFCL evaluation category or an unsupported one.
    """
    counter = counter_or_new(skips)
    examples = load_bfcl(bfcl_categories, split="train", skips=counter) if bfcl_categories else []
    if champ:
        examples += load_champ(skips=counter)
    if bfcl_multi_turn is not None:
        examples += load_bfcl_multi_turn(bfcl_multi_turn, skips=counter)
    if hermes is not None:
        examples += load_hermes(hermes, config=hermes_config, limit=limit_per_source, skips=counter)
    if glaive is not None:
        examples += load_glaive(glaive, limit=limit_per_source, skips=counter)
    if gsm8k is not None:
        examples += load_gsm8k(gsm8k, limit=limit_per_source, skips=counter)
    if turing is not None:
        examples += load_turing(turing, limit=limit_per_source, skips=counter)
    mixed = mix_examples(examples, max_per_mode=max_per_mode, balance_modes=balance_modes, seed=seed)
    counts = sorted(count_examples(mixed).items())
    logger.info("training set: %d examples (%s)", len(mixed),
                ", ".join(f"{source}/{mode}: {count}" for (source, mode), count in counts))
    report_if_owned(counter, skips, "skipped rows")
    return mixed


__all__ = ["build_training_set", "count_examples", "mix_examples", "offer_unused_tools", "split_examples"]
