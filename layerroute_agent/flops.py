"""Analytic FLOPs of a routed decoder step, counted the same way for every engine.

Conventions (a multiply-add is 2 FLOPs):

* an executed block costs, per token, ``2 x`` (weights of q, k, v, o, gate, up, down) plus the attention
  term ``4 x heads x head_dim x context``, where ``context`` is the number of keys the token attends to
  (causal: token ``t`` of a prompt sees ``t + 1`` keys);
* the LM head costs ``2 x hidden x vocab`` for each position whose logits are computed: generation
  computes them for the last prompt token and each decoded token only;
* each evaluated router costs its pooling (``2 x hidden x prompt tokens``) plus ``2 x hidden`` for its
  linear map (its RMS scaling, about ``3 x hidden``, is left out like the other norms);
* unmerged LoRA of rank ``r`` adds ``2 x r x (in + out)`` per adapted projection per token;
* a decode pass that checks drafted tokens costs each of its tokens like a decoded token, the drafts that
  turn out wrong included.

Norms, rotary embeddings, activations, softmax and biases are left out (well under 1% here).
For Qwen2.5-0.5B (hidden 896, MLP 4864, 14 query / 2 KV heads of 64) one block is about 29.8 MFLOPs
per token before attention and the LM head about 272 MFLOPs per position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """The shapes of a decoder that FLOPs depend on."""

    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    num_blocks: int

    @classmethod
    def from_config(cls, config: object) -> ModelShape:
        """Read the shapes from a transformers config (Qwen2, Llama and relatives)."""
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_heads=heads,
            num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            vocab_size=config.vocab_size,
            num_blocks=config.num_hidden_layers,
        )

    @property
    def block_weights(self) -> int:
        """Weights of q, k, v, o, gate, up and down in one block."""
        d, q_out, kv_out = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        attention = d * q_out + 2 * d * kv_out + q_out * d
        return attention + 3 * d * self.intermediate_size

    def lora_weights(self, rank: int) -> int:
        """LoRA weights of rank ``rank`` on q, k, v and o of one block."""
        d, q_out, kv_out = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        return rank * ((d + q_out) + 2 * (d + kv_out) + (q_out + d))


@dataclass(frozen=True)
class FlopsCounter:
    """Counts FLOPs of prefill and decode for one model shape.

    Args:
        shape: the decoder's shapes.
        lora_rank: rank of unmerged LoRA on q/k/v/o, 0 when merged or absent.
    """

    shape: ModelShape
    lora_rank: int = 0

    def block_token(self, context: int) -> int:
        """FLOPs of one executed block for one token that attends to ``context`` keys."""
        s = self.shape
        linear = 2 * s.block_weights + 2 * s.lora_weights(self.lora_rank)
        return linear + 4 * s.num_heads * s.head_dim * context

    @property
    def lm_head(self) -> int:
        """FLOPs of the LM head for one position."""
        return 2 * self.shape.hidden_size * self.shape.vocab_size

    def routers(self, prompt_tokens: int, evaluated: int) -> int:
        """FLOPs of ``evaluated`` routers pooling ``prompt_tokens`` tokens each."""
        return evaluated * (2 * self.shape.hidden_size * prompt_tokens + 2 * self.shape.hidden_size)

    def prefill(self, prompt_tokens: int, blocks_run: int, past: int = 0) -> int:
        """FLOPs of a causal prefill of ``prompt_tokens`` tokens after ``past`` cached ones, logits at the end only."""
        s = self.shape
        linear = 2 * (s.block_weights + s.lora_weights(self.lora_rank)) * prompt_tokens
        # Token t (0-based) attends to past + t + 1 keys; the sum over t is closed-form.
        keys = prompt_tokens * past + prompt_tokens * (prompt_tokens + 1) // 2
        attention = 4 * s.num_heads * s.head_dim * keys
        return blocks_run * (linear + attention) + self.lm_head

    def decode(self, context: int, blocks_run: int) -> int:
        """FLOPs of one decoded token that attends to ``context`` keys (itself included)."""
        return blocks_run * self.block_token(context) + self.lm_head

    def decode_pass(self, cached: int, tokens: int, blocks_run: int) -> int:
        """FLOPs of one decode pass that runs ``tokens`` new tokens after ``cached`` positions, logits for each.

        A pass of one token is :meth:`decode`; more tokens are a drafted run checked in one pass.
        """
        return sum(self.decode(cached + offset + 1, blocks_run) for offset in range(tokens))

    def step(self, prompt_tokens: int, decoded_tokens: int, blocks_run: int, routers_evaluated: int = 0) -> int:
        """FLOPs of a whole generation step: prefill, then ``decoded_tokens`` one-token decode calls.

        The ``i``-th decode call (0-based) feeds token ``prompt_tokens + i`` and attends to
        ``prompt_tokens + i + 1`` keys.
        """
        passes = [(prompt_tokens + i, 1) for i in range(decoded_tokens)]
        return self.step_with_passes(prompt_tokens, passes, blocks_run, routers_evaluated)

    def step_with_passes(self, prompt_tokens: int, passes: Sequence[tuple[int, int]], blocks_run: int,
                         routers_evaluated: int = 0) -> int:
        """FLOPs of a whole generation step: prefill, then ``passes`` as (positions cached before, tokens run).

        Drafted tokens that were rejected count, because they were computed.
        """
        total = self.prefill(prompt_tokens, blocks_run) + self.routers(prompt_tokens, routers_evaluated)
        return total + sum(self.decode_pass(cached, tokens, blocks_run) for cached, tokens in passes)

__all__ = ["FlopsCounter", "ModelShape"]
