"""Which opening does the base model give a tool call? A probe behind ``TrainConfig.call_format``.

For questions of a BFCL training category (``simple_python`` by default; the held-out
``live_*`` categories are left alone) rendered with their tools, it prints the base model's probability of
each candidate first token of the reply (``<tool_call>``, ``{``, a JSON fence) and the top tokens::

    python -m training.call_format --items 20

A call format whose first token the model gives almost no probability makes a poor training target.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence

import torch

from layerroute_agent.loading import DEFAULT_MODEL, load_model
from layerroute_agent.routing import RoutedCausalLM
from training.data import load_bfcl_eval, render_prompt
from training.data.examples import TraceExample

OPENINGS = ("<tool_call>", "{\"", "{\n", "```")
"""First tokens of a reply that opens a call: the template's tag, bare JSON (two spellings), a fence."""


def opening_probabilities(model_spec: str, items: int, category: str = "simple_python",
                          dtype: str = "bfloat16") -> dict[str, list[float]]:
    """Return, per opening in :data:`OPENINGS`, its first-token probability on each of ``items`` questions."""
    loaded = load_model(model_spec, dtype=dtype, device="cpu")
    tokenizer, routed = loaded.tokenizer, RoutedCausalLM(loaded.model, None).eval()
    ids = {opening: tokenizer(opening, add_special_tokens=False)["input_ids"] for opening in OPENINGS}
    single = {opening: token[0] for opening, token in ids.items() if len(token) == 1}
    found: dict[str, list[float]] = {opening: [] for opening in single}
    for item in load_bfcl_eval(category)[:items]:
        example = TraceExample(messages=item.messages, target="", tools=item.tools, mode="tool_call", source="bfcl")
        prompt = tokenizer(render_prompt(example, tokenizer), add_special_tokens=False, return_tensors="pt")
        logits, _ = routed.prefill(prompt["input_ids"], prompt["attention_mask"])
        probabilities = torch.softmax(logits[0], dim=-1)
        for opening, token_id in single.items():
            found[opening].append(float(probabilities[token_id]))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.call_format", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="base model spec (default: the offline model)")
    parser.add_argument("--items", type=int, default=20, help="questions to probe (default 20)")
    parser.add_argument("--category", default="simple_python", help="BFCL category (default simple_python)")
    args = parser.parse_args(argv)
    found = opening_probabilities(args.model, args.items, args.category)
    print(f"first-token probability over {args.items} BFCL {args.category} prompts ({args.model}):")
    for opening, values in found.items():
        print(f"  {opening!r:16} mean {statistics.mean(values):.2e}  max {max(values):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
