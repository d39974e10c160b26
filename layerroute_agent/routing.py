"""Per-block routers and the routed forward passes (training, prefill, decode).

Shape legend: B batch rows, T tokens in this call, K cached + new key positions, D hidden size,
L decoder blocks.

Data flow: token ids -> embeddings -> for each block ``l``: router ``l`` pools the block's input
hidden states over the prompt tokens only (pad and target tokens never enter), decides per row
whether the block runs, and the block runs (or not) -> final norm -> LM head.

* Training (:meth:`RoutedCausalLM.forward_train`): every block is computed and mixed as
  ``h + g * (block(h) - h)`` with a straight-through gate ``g`` (hard 0/1 forward, sigmoid gradient).
* Generation (:meth:`RoutedCausalLM.prefill`, :meth:`RoutedCausalLM.decode`): the decisions are made
  once during prefill and kept for every decoded token of the step. A skipped block is never called,
  writes no KV cache, and positions come from the attention mask, never from a block's cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from layerroute_agent._decoder import BlockKVCache, DecoderParts, call_block

logger = logging.getLogger(__name__)

Pooling = Literal["mean", "last"]
GATE_THRESHOLD = 0.5
ALWAYS_RUN_LOGIT = 100.0


@dataclass(frozen=True)
class RoutingConfig:
    """Configuration of the per-block routers."""

    pooling: Pooling = "mean"
    """Router input: the masked ``"mean"`` of the prompt hidden states, or the ``"last"`` prompt token's."""
    init_bias: float = 3.0
    """Bias every router starts with (weights start at zero); positive means "run the block"."""
    always_run: tuple[int, ...] = ()
    """Blocks taken out of routing: they run for every input and their routers are never consulted."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "always_run", tuple(self.always_run))  # JSON gives a list
        if self.pooling not in ("mean", "last"):
            raise ValueError(f"RoutingConfig.pooling must be 'mean' or 'last', got {self.pooling!r}")
        if not all(isinstance(block, int) and block >= 0 for block in self.always_run):
            raise ValueError(f"RoutingConfig.always_run must hold block indices >= 0, got {self.always_run!r}")
        if not self.init_bias > 0:
            raise ValueError(
                f"RoutingConfig.init_bias must be > 0 so that untrained routers run every block, got {self.init_bias}"
            )


class BlockRouter(nn.Module):
    """``Linear(D, 1)`` reading a block's pooled input; positive logit means "run the block"."""

    def __init__(self, hidden_size: int, init_bias: float) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, 1)
        # Every router starts identical (zero weight, one shared bias), so any skip pattern is learnt.
        nn.init.zeros_(self.proj.weight)
        nn.init.constant_(self.proj.bias, init_bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Map ``(B, D)`` pooled states to ``(B,)`` logits, computed in float32.

        The pooled state is scaled to unit RMS first, because residual-stream norms grow by orders of
        magnitude from the first block to the last. Unscaled, one learning rate would be too large for late
        routers and too small for early ones. The scaling has no parameters.
        """
        pooled = pooled.float()
        pooled = pooled * torch.rsqrt(pooled.pow(2).mean(dim=-1, keepdim=True) + 1e-6)
        return nn.functional.linear(pooled, self.proj.weight.float(), self.proj.bias.float()).squeeze(-1)


class RouterStack(nn.Module):
    """One :class:`BlockRouter` per decoder block."""

    def __init__(self, num_blocks: int, hidden_size: int, config: RoutingConfig | None = None) -> None:
        super().__init__()
        self.config = config or RoutingConfig()
        self.routers = nn.ModuleList(BlockRouter(hidden_size, self.config.init_bias) for _ in range(num_blocks))
        for block in self.config.always_run:
            if block < num_blocks:
                # Never consulted, so never trained (DistributedDataParallel rejects parameters without gradients).
                self.routers[block].requires_grad_(False)

    def __len__(self) -> int:
        return len(self.routers)

    def __getitem__(self, index: int) -> BlockRouter:
        return self.routers[index]


def pool_prompt(hidden_states: torch.Tensor, prompt_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool ``(B, T, D)`` hidden states over prompt tokens only, ``(B, T)`` mask -> ``(B, D)`` float32.

    ``prompt_mask`` is 1 on prompt tokens and 0 on pad and target tokens, so neither sequence length
    nor padding leaks into the pooled vector.
    """
    mask = prompt_mask.to(torch.float32)
    counts = mask.sum(dim=1)
    if bool((counts == 0).any()):
        raise ValueError("Every row needs at least one prompt token; prompt_mask has an all-zero row")
    if pooling == "mean":
        summed = torch.einsum("btd,bt->bd", hidden_states.float(), mask)  # (B, T, D) -> (B, D)
        return summed / counts.unsqueeze(-1)
    # Index of the last prompt token per row: the largest position whose mask is 1.
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask > 0, positions, -1).max(dim=1).values  # (B,)
    return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), last].float()


def straight_through_gate(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(gate, prob)``: the hard 0/1 gate with the sigmoid's gradient, and ``sigmoid(logits)``."""
    prob = torch.sigmoid(logits)
    hard = (prob > GATE_THRESHOLD).to(prob.dtype)
    return hard + prob - prob.detach(), prob


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Return ``(B, T)`` position ids that count only real tokens (left padding gets position 0)."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


def additive_attention_mask(attention_mask: torch.Tensor, query_length: int, dtype: torch.dtype) -> torch.Tensor:
    """Build a ``(B, 1, T, K)`` additive causal mask from a ``(B, K)`` key padding mask.

    The last ``query_length`` keys are the new tokens; each new token attends to every earlier real key.
    """
    key_length = attention_mask.shape[1]
    device = attention_mask.device
    query_positions = torch.arange(key_length - query_length, key_length, device=device)
    causal = torch.arange(key_length, device=device)[None, :] <= query_positions[:, None]  # (T, K)
    allowed = causal[None, :, :] & attention_mask.bool()[:, None, :]  # (B, T, K)
    # A left-pad query row has no key to attend to, so it attends to itself to keep softmax finite (its output
    # is unused).
    allowed = allowed | torch.eye(key_length, device=device, dtype=torch.bool)[-query_length:][None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


@dataclass
class RouteOverride:
    """Replace the learnt decisions: run every block, or skip a fixed set of blocks in every row."""

    skip_blocks: frozenset[int] = frozenset()

    @classmethod
    def run_all(cls) -> RouteOverride:
        """Return an override that runs every block."""
        return cls(frozenset())


@dataclass
class StepDecisions:
    """Routing decisions of one generation step, fixed at prefill and kept through decode."""

    run: torch.Tensor
    """``(B, L)`` bool: block ``l`` runs for row ``b``."""
    probs: torch.Tensor | None
    """``(B, L)`` router probabilities, or ``None`` when an override decided."""

    def blocks_run(self, row: int) -> list[int]:
        """Return the indices of the blocks that ran for ``row``."""
        return torch.nonzero(self.run[row]).flatten().tolist()

    def blocks_skipped(self, row: int) -> list[int]:
        """Return the indices of the blocks skipped for ``row``."""
        return torch.nonzero(~self.run[row]).flatten().tolist()


@dataclass
class GenerationState:
    """State a generation step carries from prefill to each decode call."""

    decisions: StepDecisions
    cache: BlockKVCache
    attention_mask: torch.Tensor
    """``(B, K)`` key padding mask over every position seen so far."""
    next_positions: torch.Tensor
    """``(B, 1)`` position id of the next token per row."""
    padded: bool
    """Whether any row contains left padding (then explicit masks are needed)."""
    block_rows: list[tuple[bool, torch.Tensor | None]]
    """Per block: whether it runs, and the rows that run it (``None`` for every row), fixed at prefill so the
    decode loop does no per-block work to find them."""


@dataclass
class TrainOutput:
    """Result of :meth:`RoutedCausalLM.forward_train`."""

    logits: torch.Tensor
    """``(B, T, V)``."""
    gate_probs: torch.Tensor
    """``(B, L)`` router probabilities."""
    gates: torch.Tensor
    """``(B, L)`` hard 0/1 gates (with the straight-through gradient)."""


class RoutedCausalLM(nn.Module):
    """A Hugging Face decoder with a router in front of every block.

    Args:
        model: a causal LM whose blocks are ``model.model.layers``.
        routers: the routers; defaults to fresh ones, which run every block.
    """

    def __init__(self, model: nn.Module, routers: RouterStack | None = None) -> None:
        super().__init__()
        self.model = model
        self.parts = DecoderParts.of(model)
        hidden_size = model.config.hidden_size
        self.routers = routers if routers is not None else RouterStack(len(self.parts.layers), hidden_size)
        if len(self.routers) != len(self.parts.layers):
            raise ValueError(
                f"RouterStack has {len(self.routers)} routers but the model has {len(self.parts.layers)} blocks"
            )
        outside = [block for block in self.routers.config.always_run if block >= len(self.parts.layers)]
        if outside:
            raise ValueError(f"RoutingConfig.always_run names blocks {outside}, but the model has "
                             f"{len(self.parts.layers)} blocks (0 to {len(self.parts.layers) - 1})")
        self.routers.to(next(model.parameters()).device)

    @property
    def num_blocks(self) -> int:
        """Number of decoder blocks ``L``."""
        return len(self.parts.layers)

    @property
    def num_routed_blocks(self) -> int:
        """Number of blocks whose router is consulted (every block but ``RoutingConfig.always_run``)."""
        return sum(index not in self.routers.config.always_run for index in range(self.num_blocks))

    def _route(self, index: int, hidden_states: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        if index in self.routers.config.always_run:
            # A logit this large gives probability 1 in float32: the block runs, and no gradient flows.
            return torch.full(hidden_states.shape[:1], ALWAYS_RUN_LOGIT, device=hidden_states.device)
        pooled = pool_prompt(hidden_states, prompt_mask, self.routers.config.pooling)  # (B, T, D) -> (B, D)
        return self.routers[index](pooled)  # (B,)

    def forward_train(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      prompt_mask: torch.Tensor) -> TrainOutput:
        """Differentiable routed forward over prompt + target tokens.

        Args:
            input_ids: ``(B, T)`` prompt followed by target tokens, left- or right-padded.
            attention_mask: ``(B, T)`` 1 on real tokens.
            prompt_mask: ``(B, T)`` 1 on prompt tokens only; the routers pool over these.
        """
        hidden_states = self.parts.embed_tokens(input_ids)
        position_ids = positions_from_mask(attention_mask)
        position_embeddings = self.parts.rotary_emb(hidden_states, position_ids)
        mask = additive_attention_mask(attention_mask, input_ids.shape[1], hidden_states.dtype)
        gates, probs = [], []
        for index, layer in enumerate(self.parts.layers):
            gate, prob = straight_through_gate(self._route(index, hidden_states, prompt_mask))
            block_out = call_block(layer, hidden_states, position_embeddings, mask, position_ids, None)
            mix = gate.to(hidden_states.dtype)[:, None, None]
            hidden_states = hidden_states + mix * (block_out - hidden_states)
            gates.append(gate)
            probs.append(prob)
        logits = self.parts.lm_head(self.parts.norm(hidden_states))
        return TrainOutput(logits=logits, gate_probs=torch.stack(probs, dim=1), gates=torch.stack(gates, dim=1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_mask: torch.Tensor) -> TrainOutput:
        """Same as :meth:`forward_train`, so that wrappers such as DistributedDataParallel can call the model."""
        return self.forward_train(input_ids, attention_mask, prompt_mask)

    def _run_block(self, index: int, rows: torch.Tensor | None, hidden_states: torch.Tensor,
                   position_embeddings: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None,
                   position_ids: torch.Tensor, cache: BlockKVCache) -> torch.Tensor:
        layer = self.parts.layers[index]
        if rows is None:
            return call_block(layer, hidden_states, position_embeddings, mask, position_ids, cache)
        # Only some rows run this block: run it on those rows and leave the others untouched.
        cos, sin = position_embeddings
        sub_mask = None if mask is None else mask[rows]
        out = call_block(layer, hidden_states[rows], (cos[rows], sin[rows]), sub_mask, position_ids[rows], cache)
        hidden_states = hidden_states.clone()
        hidden_states[rows] = out
        return hidden_states

    def _block_rows(self, run: torch.Tensor, index: int) -> tuple[bool, torch.Tensor | None]:
        column = run[:, index]
        if bool(column.all()):
            return True, None
        if not bool(column.any()):
            return False, None
        return True, torch.nonzero(column).flatten()

    def _logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # Logits only for the last position: that is all generation needs, and the LM head is costly.
        return self.parts.lm_head(self.parts.norm(hidden_states[:, -1:, :]))[:, -1, :].float()

    @torch.inference_mode()
    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                override: RouteOverride | None = None) -> tuple[torch.Tensor, GenerationState]:
        """Run the prompt, decide which blocks run for each row, and fill the KV cache.

        Args:
            input_ids: ``(B, T)`` left-padded prompt ids.
            attention_mask: ``(B, T)`` 1 on real tokens.
            override: replace the routers' decisions (every block, or a fixed skip set).

        Returns:
            ``(B, V)`` float32 logits of the last prompt token, and the state :meth:`decode` continues from.
        """
        batch, length = input_ids.shape
        padded = not bool(attention_mask.all())
        hidden_states = self.parts.embed_tokens(input_ids)
        position_ids = positions_from_mask(attention_mask)
        position_embeddings = self.parts.rotary_emb(hidden_states, position_ids)
        # SDPA applies the causal mask itself when given none, which is also what transformers does unpadded.
        needs_mask = padded or (length > 1 and self.model.config._attn_implementation != "sdpa")
        mask = additive_attention_mask(attention_mask, length, hidden_states.dtype) if needs_mask else None
        cache = BlockKVCache()
        block_rows = []
        run = torch.ones(batch, self.num_blocks, dtype=torch.bool, device=input_ids.device)
        probs = torch.ones(batch, self.num_blocks, device=input_ids.device) if override is None else None
        for index in range(self.num_blocks):
            if override is None:
                prob = torch.sigmoid(self._route(index, hidden_states, attention_mask))
                probs[:, index] = prob
                run[:, index] = prob > GATE_THRESHOLD
            else:
                run[:, index] = index not in override.skip_blocks
            runs, rows = self._block_rows(run, index)
            block_rows.append((runs, rows))
            if runs:
                hidden_states = self._run_block(index, rows, hidden_states, position_embeddings, mask,
                                                position_ids, cache)
        decisions = StepDecisions(run=run, probs=probs)
        logger.debug("Routing decisions: skipped blocks per row %s", [decisions.blocks_skipped(b) for b in range(batch)])
        next_positions = position_ids[:, -1:] + 1
        state = GenerationState(decisions, cache, attention_mask, next_positions, padded, block_rows)
        return self._logits(hidden_states), state

    def _advance(self, token_ids: torch.Tensor, state: GenerationState) -> torch.Tensor:
        """Run ``(B, T)`` new tokens through the blocks chosen at prefill; returns ``(B, T, D)`` hidden states."""
        length = token_ids.shape[1]
        state.attention_mask = torch.cat([state.attention_mask, state.attention_mask.new_ones(token_ids.shape)], dim=1)
        hidden_states = self.parts.embed_tokens(token_ids)
        position_ids = state.next_positions  # (B, T)
        if length > 1:
            position_ids = position_ids + torch.arange(length, device=token_ids.device)
        position_embeddings = self.parts.rotary_emb(hidden_states, position_ids)
        # Several new tokens need a causal mask among themselves; SDPA's own causal mask assumes no cache.
        needs_mask = state.padded or length > 1
        mask = additive_attention_mask(state.attention_mask, length, hidden_states.dtype) if needs_mask else None
        for index, (runs, rows) in enumerate(state.block_rows):
            if runs:
                hidden_states = self._run_block(index, rows, hidden_states, position_embeddings, mask,
                                                position_ids, state.cache)
        state.next_positions = position_ids[:, -1:] + 1
        return hidden_states

    @torch.inference_mode()
    def decode(self, token_ids: torch.Tensor, state: GenerationState) -> torch.Tensor:
        """Run one new token per row through the blocks chosen at prefill; ``(B, 1)`` ids -> ``(B, V)`` logits."""
        return self._logits(self._advance(token_ids, state))

    @torch.inference_mode()
    def verify(self, token_ids: torch.Tensor, state: GenerationState) -> torch.Tensor:
        """Run ``T`` new tokens per row in one pass; ``(B, T)`` ids -> ``(B, T, V)`` float32 logits.

        Position ``t`` of the result predicts the token after ``token_ids[:, t]``, so one pass checks a
        run of drafted tokens. :meth:`rewind` then drops the positions of the drafts that were rejected.
        """
        return self.parts.lm_head(self.parts.norm(self._advance(token_ids, state))).float()

    @staticmethod
    def rewind(state: GenerationState, positions: int) -> None:
        """Drop the last ``positions`` positions of every row from ``state``, as if they had never been run."""
        if not 0 <= positions < state.attention_mask.shape[1]:
            raise ValueError(f"positions must be in [0, {state.attention_mask.shape[1]}) for a state of "
                             f"{state.attention_mask.shape[1]} positions, got {positions}")
        if positions == 0:
            return
        state.cache.drop_last(positions)
        state.attention_mask = state.attention_mask[:, :-positions]
        state.next_positions = state.next_positions - positions

__all__ = [
    "BlockRouter",
    "GenerationState",
    "RouteOverride",
    "RoutedCausalLM",
    "RouterStack",
    "RoutingConfig",
    "StepDecisions",
    "TrainOutput",
    "additive_attention_mask",
    "pool_prompt",
    "positions_from_mask",
    "straight_through_gate",
]
