"""``layerroute-eval``: a routing adapter against the untouched base model on held-out data.

Data flow: the adapter's training config -> the same held-out split it never trained on -> per mode:
routed decisions, FLOPs saved as a share of the whole step (LM head included), blocks skipped, and
target-only perplexity of the routed + LoRA model against the base model -> BFCL ``live_simple``
accuracy and ``irrelevance`` no-call rate, both answered through ``LayerRouteChat`` itself -> JSON.

Run::

    layerroute-eval --adapter runs/adapter/adapter --quick --json eval.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from layerroute_agent.adapter import read_adapter_config
from layerroute_agent.chat_model import LayerRouteChat
from layerroute_agent.loading import DEFAULT_MODEL
from layerroute_agent.runtime import RoutedRuntime
from training.base_answers import BaseAnswers, answer_key
from training.bfcl_check import call_matches
from training.config import TrainConfig
from training.data import BfclEvalItem, RenderedExample, load_bfcl_eval
from training.loop import collate, target_cross_entropy
from training.prepare import prepare_data

logger = logging.getLogger(__name__)

MODES = ("tool_call", "planning")


@dataclass(frozen=True)
class EvalSizes:
    """How many items each part of the evaluation reads."""

    per_mode: int = 200
    """Held-out examples per mode."""
    bfcl: int = 258
    """BFCL live_simple items (258 is all of them) and irrelevance items."""

    @classmethod
    def quick(cls) -> EvalSizes:
        """Sizes that finish in about 10 minutes on 2 CPU cores."""
        return cls(per_mode=30, bfcl=20)


@dataclass(frozen=True)
class ExampleScore:
    """Measurements of one held-out example."""

    saved: float
    """Share of the step's FLOPs not executed."""
    skipped: float
    """Share of the blocks skipped."""
    pattern: torch.Tensor
    """1.0 for each skipped block, 0.0 for each block run."""
    nll_base: float
    """Summed negative log-likelihood of the target tokens under the base model."""
    nll_routed: float
    """The same under the routed model with LoRA."""
    tokens: int


@dataclass
class ModeTotals:
    """Running sums for one mode, or for one source within a mode."""

    saved: list[float] = field(default_factory=list)
    skipped: list[float] = field(default_factory=list)
    pattern: list[torch.Tensor] = field(default_factory=list)
    nll_base: float = 0.0
    nll_routed: float = 0.0
    tokens: int = 0

    def add(self, score: ExampleScore) -> None:
        """Add one example's score."""
        self.saved.append(score.saved)
        self.skipped.append(score.skipped)
        self.pattern.append(score.pattern)
        self.nll_base += score.nll_base
        self.nll_routed += score.nll_routed
        self.tokens += score.tokens

    def summary(self) -> dict[str, Any]:
        """Return the JSON block of these examples."""
        n = len(self.saved)
        return {
            "flops_saved_share": sum(self.saved) / n if n else None,
            "blocks_skipped_share": sum(self.skipped) / n if n else None,
            "ppl_base": math.exp(self.nll_base / self.tokens) if self.tokens else None,
            "ppl_routed": math.exp(self.nll_routed / self.tokens) if self.tokens else None,
            "n": n,
        }


def _sample(items: Sequence[Any], count: int, seed: int) -> list[Any]:
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [items[i] for i in sorted(order[:count])]


@torch.inference_mode()
def _score_example(example: RenderedExample, base: RoutedRuntime, routed: RoutedRuntime) -> ExampleScore:
    batch = collate([example], {m: 0.0 for m in MODES}, pad_id=0, device=torch.device("cpu"))
    target_tokens = int(batch.target_mask[:, 1:].sum())
    base_logits = base.routed.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    out = routed.routed.forward_train(batch.input_ids, batch.attention_mask, batch.prompt_mask)
    run = out.gates[0] > 0.5  # (L,)
    blocks_run, blocks = int(run.sum()), run.numel()
    prompt, decoded = example.prompt_length, len(example.input_ids) - example.prompt_length - 1
    executed = routed.counter.step(prompt, decoded, blocks_run, routers_evaluated=routed.routed.num_routed_blocks)
    full = routed.full_counter.step(prompt, decoded, blocks, 0)
    return ExampleScore(
        saved=1.0 - executed / full,
        skipped=1.0 - blocks_run / blocks,
        pattern=(~run).float(),
        nll_base=float(target_cross_entropy(base_logits, batch)) * target_tokens,
        nll_routed=float(target_cross_entropy(out.logits, batch)) * target_tokens,
        tokens=target_tokens,
    )


def _held_out_metrics(held_out: list[RenderedExample], base: RoutedRuntime, routed: RoutedRuntime, per_mode: int,
                      seed: int) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Score a sample of each mode's held-out examples.

    Each mode's block also has ``by_source`` and ``by_position``. The second splits steps that start a
    turn (``after_user``) from steps whose prompt ends with a tool result (``after_tool_result``), which
    ``LayerRouteChat`` runs at full depth by default. The scores here are the adapter's own routing.
    """
    modes, pattern = {}, {}
    for mode in MODES:
        examples = _sample([e for e in held_out if e.mode == mode], per_mode, seed)
        totals, by_source, by_position = ModeTotals(), defaultdict(ModeTotals), defaultdict(ModeTotals)
        for example in tqdm(examples, desc=f"held-out {mode}"):
            score = _score_example(example, base, routed)
            totals.add(score)
            by_source[example.source].add(score)
            by_position["after_tool_result" if example.after_tool_result else "after_user"].add(score)
        modes[mode] = {**totals.summary(),
                       "by_source": {source: by_source[source].summary() for source in sorted(by_source)},
                       "by_position": {name: by_position[name].summary() for name in sorted(by_position)}}
        pattern[mode] = torch.stack(totals.pattern).mean(0).tolist() if totals.pattern else []
    return modes, pattern


def _reply_calls(llm: LayerRouteChat, item: BfclEvalItem) -> tuple[list[dict], int]:
    reply = llm.bind_tools(item.tools).invoke([(m["role"], m["content"]) for m in item.messages])
    return reply.tool_calls, len(reply.invalid_tool_calls)


def _base_reply_calls(llm: LayerRouteChat, item: BfclEvalItem, answers: BaseAnswers) -> tuple[list[dict], int]:
    stored = answers.get(item.id)
    if stored is not None:
        return stored["calls"], stored["invalid"]
    calls, invalid = _reply_calls(llm, item)
    answers.put(item.id, {"calls": calls, "invalid": invalid})
    return calls, invalid


def _both_replies(base: LayerRouteChat, routed: LayerRouteChat, item: BfclEvalItem,
                  answers: BaseAnswers) -> dict[str, tuple[list[dict], int]]:
    return {"base": _base_reply_calls(base, item, answers), "routed": _reply_calls(routed, item)}


def _bfcl_metrics(base: LayerRouteChat, routed: LayerRouteChat, count: int, seed: int,
                  answers: BaseAnswers) -> dict[str, dict[str, Any]]:
    simple = _sample(load_bfcl_eval("live_simple"), count, seed)
    correct = {"base": 0, "routed": 0}
    for item in tqdm(simple, desc="bfcl live_simple"):
        for name, (calls, _) in _both_replies(base, routed, item, answers).items():
            correct[name] += len(calls) == 1 and call_matches(calls[0]["name"], calls[0]["args"], item.ground_truth)
    irrelevant = _sample(load_bfcl_eval("irrelevance"), count, seed)
    no_call = {"base": 0, "routed": 0}
    for item in tqdm(irrelevant, desc="bfcl irrelevance"):
        for name, (calls, invalid) in _both_replies(base, routed, item, answers).items():
            no_call[name] += not calls and not invalid
    n_simple, n_irrelevant = len(simple), len(irrelevant)
    return {
        "bfcl_live_simple": {"accuracy_base": correct["base"] / n_simple, "accuracy_routed": correct["routed"] / n_simple,
                             "n": n_simple},
        "bfcl_irrelevance": {"no_call_rate_base": no_call["base"] / n_irrelevant,
                             "no_call_rate_routed": no_call["routed"] / n_irrelevant, "n": n_irrelevant},
    }


def _train_config(adapter: str) -> TrainConfig:
    stored = read_adapter_config(adapter).get("extra", {}).get("train_config")
    if not stored:
        logger.warning("Adapter %s stores no training config; using the default split settings", adapter)
        return TrainConfig()
    return TrainConfig(**stored)


BFCL_MAX_TOKENS = 128


def evaluate(adapter: str, model: str | None = None, sizes: EvalSizes = EvalSizes(), seed: int = 0,
             dtype: str = "bfloat16", bfcl: bool = True, base_answers: Path | None = None) -> dict[str, Any]:
    """Evaluate ``adapter`` on ``model`` (default: the model it was trained on); returns the JSON report.

    ``base_answers``: a JSON file that keeps the base model's BFCL replies between evaluations
    (see :class:`training.base_answers.BaseAnswers`); ``None`` generates them every time.
    """
    config = _train_config(adapter)
    model = model or config.model
    base_llm = LayerRouteChat(model=model, adapter=None, dtype=dtype, max_tokens=BFCL_MAX_TOKENS)
    routed_llm = LayerRouteChat(model=model, adapter=adapter, dtype=dtype, max_tokens=BFCL_MAX_TOKENS)
    _, held_out = prepare_data(config, routed_llm.runtime.tokenizer)
    modes, pattern = _held_out_metrics(held_out, base_llm.runtime, routed_llm.runtime, sizes.per_mode, seed)
    report: dict[str, Any] = {"model": model, "adapter": adapter, "seed": seed, "modes": modes,
                              "skip_differential": _differential(modes), "skip_pattern": pattern}
    if bfcl:
        answers = BaseAnswers.open(base_answers, answer_key(model, dtype, BFCL_MAX_TOKENS))
        report.update(_bfcl_metrics(base_llm, routed_llm, sizes.bfcl, seed, answers))
    report["targets"] = target_checks(report)
    return report


TOOL_CALL_SAVING_TARGET = 0.1525
"""Tool-call steps save at least this share of step FLOPs (the paper's 15.25%, which counted blocks only)."""
PLANNING_SAVING_LIMIT = 0.03
BFCL_ACCURACY_TOLERANCE = 0.02


def target_checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Compare a report with the project's targets; each entry has ``value``, ``target`` and ``met``.

    A target whose value the report lacks (BFCL skipped, a mode without examples) is left out.
    """
    modes = report["modes"]
    values: dict[str, tuple[float | None, str, Callable[[float], bool]]] = {
        "tool_call_flops_saved": (modes["tool_call"]["flops_saved_share"], f">= {TOOL_CALL_SAVING_TARGET}",
                                  lambda v: v >= TOOL_CALL_SAVING_TARGET),
        "planning_flops_saved": (modes["planning"]["flops_saved_share"], f"<= {PLANNING_SAVING_LIMIT}",
                                 lambda v: v <= PLANNING_SAVING_LIMIT),
    }
    for mode, numbers in modes.items():
        known = numbers["ppl_base"] is not None and numbers["ppl_routed"] is not None
        delta = numbers["ppl_routed"] - numbers["ppl_base"] if known else None
        values[f"{mode}_ppl_delta"] = (delta, "<= 0", lambda v: v <= 0)
    if "bfcl_live_simple" in report:
        simple = report["bfcl_live_simple"]
        values["bfcl_live_simple_accuracy_gap"] = (simple["accuracy_routed"] - simple["accuracy_base"],
                                                   f">= -{BFCL_ACCURACY_TOLERANCE}",
                                                   lambda v: v >= -BFCL_ACCURACY_TOLERANCE)
    return {name: {"value": value, "target": target, "met": met(value)}
            for name, (value, target, met) in values.items() if value is not None}


def _differential(modes: dict[str, Any]) -> float | None:
    tool, planning = modes["tool_call"]["flops_saved_share"], modes["planning"]["flops_saved_share"]
    return None if tool is None or planning is None else tool - planning


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, evaluate, print the report and write ``--json``."""
    parser = argparse.ArgumentParser(prog="layerroute-eval", description="Evaluate a routing adapter on held-out data.")
    parser.add_argument("--adapter", required=True, help="adapter folder written by layerroute-train")
    parser.add_argument("--model", help=f"base model spec (default: the adapter's training model, else {DEFAULT_MODEL})")
    parser.add_argument("--quick", action="store_true", help="30 held-out examples per mode and 20 BFCL items")
    parser.add_argument("--per-mode", type=int, help="held-out examples per mode (default: 200)")
    parser.add_argument("--bfcl-items", type=int, help="BFCL items per category (default: all 258 / 240)")
    parser.add_argument("--no-bfcl", action="store_true", help="skip the BFCL part")
    parser.add_argument("--seed", type=int, default=0, help="seed of the item sampling (default: 0)")
    parser.add_argument("--dtype", default="bfloat16", help="model dtype (default: bfloat16)")
    parser.add_argument("--json", type=Path, help="write the report to this JSON file")
    parser.add_argument("--base-answers", type=Path,
                        help="JSON file that keeps the base model's BFCL replies between evaluations: read when it "
                             "matches the model, dtype and package version, written otherwise (default: none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sizes = EvalSizes.quick() if args.quick else EvalSizes()
    sizes = EvalSizes(per_mode=args.per_mode or sizes.per_mode, bfcl=args.bfcl_items or sizes.bfcl)
    report = evaluate(args.adapter, args.model, sizes, args.seed, args.dtype, bfcl=not args.no_bfcl,
                      base_answers=args.base_answers)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    return 0


__all__ = ["EvalSizes", "evaluate", "main", "target_checks"]
