"""The only module that calls transformers decoder internals directly.

Everything else in the package drives decoder blocks through :func:`call_block`, reads the
embedding, final norm, rotary embedding and LM head through :class:`DecoderParts`, and uses
:class:`BlockKVCache` as the KV cache. Supported: transformers 5.x decoders whose blocks live in
``model.model.layers`` (Qwen2, Llama and their relatives).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn


@dataclass(frozen=True)
class DecoderParts:
    """The pieces of a decoder-only causal LM that the routed forward drives by hand."""

    embed_tokens: nn.Module
    layers: nn.ModuleList
    norm: nn.Module
    rotary_emb: nn.Module
    lm_head: nn.Module

    @classmethod
    def of(cls, model: nn.Module) -> DecoderParts:
        """Find the parts on a Hugging Face causal LM, or raise ``TypeError`` naming what is missing."""
        inner = getattr(model, "model", None)
        missing = [name for name in ("embed_tokens", "layers", "norm", "rotary_emb") if not hasattr(inner, name)]
        if inner is None or missing or not hasattr(model, "lm_head"):
            raise TypeError(
                f"{type(model).__name__} is not a supported decoder: expected model.model.layers, "
                f"model.model.embed_tokens/norm/rotary_emb and model.lm_head (missing: {missing or ['lm_head']}). "
                "Qwen2 and Llama style models are supported."
            )
        return cls(inner.embed_tokens, inner.layers, inner.norm, inner.rotary_emb, model.lm_head)


class BlockKVCache:
    """A KV cache keyed by block index, in which a block that never runs allocates nothing.

    Attention modules call ``update`` with their ``layer_idx``; keys and values are appended along the
    sequence axis. Rows may differ between blocks (a block run by a subset of the batch stores only
    those rows), because every block keeps its own row set for the whole generation step.

    Each block's keys and values live in a buffer with spare positions, so appending a decoded token copies
    one position instead of the whole cache (``torch.cat`` per token copies all of it). A full buffer is
    replaced by one of twice the size, so the copies add up to O(positions) over a generation.
    """

    def __init__(self, headroom: int = 256) -> None:
        if headroom < 1:
            raise ValueError(f"headroom must be >= 1 position, got {headroom}")
        self.headroom = headroom
        """Spare positions allocated beyond the prompt at a block's first update."""
        self._keys: dict[int, torch.Tensor] = {}
        self._values: dict[int, torch.Tensor] = {}
        self._lengths: dict[int, int] = {}

    def _reserve(self, layer_idx: int, like: torch.Tensor, needed: int) -> None:
        """Make the buffers of block ``layer_idx`` hold at least ``needed`` positions, keeping their contents."""
        keys = self._keys.get(layer_idx)
        if keys is not None and keys.shape[-2] >= needed:
            return
        capacity = needed + self.headroom if keys is None else max(needed, 2 * keys.shape[-2])
        batch, heads, _, head_dim = like.shape
        new_keys = like.new_empty(batch, heads, capacity, head_dim)  # (B, H_kv, capacity, d)
        new_values = like.new_empty(batch, heads, capacity, head_dim)
        if keys is not None:
            length = self._lengths[layer_idx]
            new_keys[:, :, :length].copy_(keys[:, :, :length])
            new_values[:, :, :length].copy_(self._values[layer_idx][:, :, :length])
        self._keys[layer_idx], self._values[layer_idx] = new_keys, new_values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``(B, H_kv, T, d)`` keys and values for one block and return views of the whole cached pair."""
        start = self._lengths.get(layer_idx, 0)
        end = start + key_states.shape[-2]
        self._reserve(layer_idx, key_states, end)
        keys, values = self._keys[layer_idx], self._values[layer_idx]
        keys[:, :, start:end].copy_(key_states)
        values[:, :, start:end].copy_(value_states)
        self._lengths[layer_idx] = end
        return keys[:, :, :end], values[:, :, :end]  # (B, H_kv, K, d) each

    def drop_last(self, positions: int) -> None:
        """Forget the last ``positions`` positions of every block, e.g. drafted tokens that were rejected."""
        if positions < 0:
            raise ValueError(f"positions must be >= 0, got {positions}")
        short = {layer_idx: length for layer_idx, length in self._lengths.items() if length < positions}
        if short:
            raise ValueError(f"cannot drop {positions} positions: blocks {sorted(short)} cache only {short}")
        for layer_idx in self._lengths:
            self._lengths[layer_idx] -= positions

    def cached_blocks(self) -> list[int]:
        """Return the indices of blocks that hold cache entries."""
        return sorted(self._keys)

    def seq_length(self, layer_idx: int) -> int:
        """Return how many positions block ``layer_idx`` has cached (0 when it never ran)."""
        return self._lengths.get(layer_idx, 0)


@cache
def _cache_argument_name(layer_type: type) -> str:
    # transformers 5.x renamed the decoder layer's `past_key_values` argument to `cache`.
    parameters = inspect.signature(layer_type.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def call_block(layer: nn.Module, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
               attention_mask: torch.Tensor | None, position_ids: torch.Tensor,
               cache: BlockKVCache | None) -> torch.Tensor:
    """Run one decoder block and return its ``(B, T, D)`` output hidden states."""
    kwargs = {_cache_argument_name(type(layer)): cache}
    output = layer(
        hidden_states,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=cache is not None,
        position_embeddings=position_embeddings,
        **kwargs,
    )
    return output[0] if isinstance(output, tuple) else output


__all__ = ["BlockKVCache", "DecoderParts", "call_block"]
