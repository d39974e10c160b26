"""The analytic FLOPs counter against torch's FlopCounterMode and against hand-worked Qwen2.5-0.5B shapes."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_qwen2
from torch.utils.flop_counter import FlopCounterMode
from transformers import Qwen2Config

from layerroute_agent.flops import FlopsCounter, ModelShape
from layerroute_agent.routing import RoutedCausalLM, RouteOverride

# Shapes of Qwen/Qwen2.5-0.5B-Instruct's config.json (also those of the offline Qwen2.5-Coder-0.5B pack).
QWEN25_05B = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936)


def _measured_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_qwen25_block_and_head_by_hand() -> None:
    shape = ModelShape.from_config(QWEN25_05B)
    d, mlp, head_dim = 896, 4864, 64
    # q and o are d x d, k and v are d x (2 KV heads x 64), gate/up/down are d x 4864.
    weights = 2 * d * d + 2 * d * (2 * head_dim) + 3 * d * mlp
    counter = FlopsCounter(shape)
    assert shape.block_weights == weights == 14_909_440
    assert counter.block_token(context=0) == 2 * weights
    assert counter.block_token(0) == pytest.approx(29.8e6, rel=2e-3)
    assert counter.lm_head == 2 * d * 151936 == pytest.approx(272e6, rel=2e-3)
    # Attention over 100 keys adds 4 x 14 heads x 64 x 100.
    assert counter.block_token(100) - counter.block_token(0) == 4 * 14 * 64 * 100


def test_qwen25_block_share_of_token() -> None:
    counter = FlopsCounter(ModelShape.from_config(QWEN25_05B))
    blocks = 24 * counter.block_token(0)
    assert blocks / (blocks + counter.lm_head) == pytest.approx(0.72, abs=0.01)


def test_lora_weights_at_rank_8() -> None:
    shape = ModelShape.from_config(QWEN25_05B)
    # 8 x ((896 + 896) + 2 x (896 + 128) + (896 + 896)) per block, about 1.08M over 24 blocks.
    assert shape.lora_weights(8) == 8 * (1792 + 2 * 1024 + 1792)
    assert 24 * shape.lora_weights(8) == pytest.approx(1.08e6, rel=0.01)


def test_decode_step_matches_flop_counter() -> None:
    routed = RoutedCausalLM(tiny_qwen2(attn="eager"))
    counter = FlopsCounter(ModelShape.from_config(routed.model.config))
    input_ids = torch.randint(5, 500, (1, 9))
    _, state = routed.prefill(input_ids, torch.ones_like(input_ids), RouteOverride(frozenset({2})))
    measured = _measured_flops(lambda: routed.decode(torch.tensor([[7]]), state))
    assert measured == counter.decode(context=10, blocks_run=3)


@pytest.mark.parametrize("skipped", [frozenset(), frozenset({0, 3})])
def test_prefill_matches_flop_counter(skipped: frozenset[int]) -> None:
    routed = RoutedCausalLM(tiny_qwen2(attn="eager"))
    shape = ModelShape.from_config(routed.model.config)
    tokens, blocks_run = 11, 4 - len(skipped)
    input_ids = torch.randint(5, 500, (1, tokens))
    measured = _measured_flops(lambda: routed.prefill(input_ids, torch.ones_like(input_ids), RouteOverride(skipped)))
    # Eager attention multiplies the full T x T score matrix and masks it afterwards. The counter counts only
    # the causal T (T + 1) / 2 keys that tokens attend to, so the difference is exactly the masked part.
    masked_keys = tokens * tokens - tokens * (tokens + 1) // 2
    masked = blocks_run * 4 * shape.num_heads * shape.head_dim * masked_keys
    assert measured == FlopsCounter(shape).prefill(tokens, blocks_run) + masked


def test_routers_match_flop_counter() -> None:
    routed = RoutedCausalLM(tiny_qwen2(attn="eager"))
    shape = ModelShape.from_config(routed.model.config)
    tokens = 6
    input_ids = torch.randint(5, 500, (1, tokens))
    with_routers = _measured_flops(lambda: routed.prefill(input_ids, torch.ones_like(input_ids)))
    without = _measured_flops(lambda: routed.prefill(input_ids, torch.ones_like(input_ids), RouteOverride.run_all()))
    assert with_routers - without == FlopsCounter(shape).routers(tokens, evaluated=4)


def test_unmerged_lora_matches_flop_counter() -> None:
    from layerroute_agent.lora import attach_lora

    model = attach_lora(tiny_qwen2(attn="eager"), )
    routed = RoutedCausalLM(model)
    shape = ModelShape.from_config(model.config)
    input_ids = torch.randint(5, 500, (1, 1))
    _, state = routed.prefill(input_ids, torch.ones_like(input_ids), RouteOverride.run_all())
    measured = _measured_flops(lambda: routed.decode(torch.tensor([[3]]), state))
    assert measured == FlopsCounter(shape, lora_rank=8).decode(context=2, blocks_run=4)


def test_step_sums_prefill_and_decode() -> None:
    counter = FlopsCounter(ModelShape.from_config(QWEN25_05B))
    expected = counter.prefill(50, 20) + sum(counter.decode(50 + i + 1, 20) for i in range(5))
    assert counter.step(50, 5, 20) == expected
    assert counter.step(50, 5, 20, routers_evaluated=24) == expected + counter.routers(50, 24)


def test_verify_pass_matches_flop_counter() -> None:
    # Measured on a pass of three tokens after 9 cached ones: attention over 10, 11 and 12 keys, three LM heads.
    model = tiny_qwen2(attn="eager")
    routed = RoutedCausalLM(model)
    counter = FlopsCounter(ModelShape.from_config(model.config))
    input_ids = torch.randint(5, 500, (1, 9))
    _, state = routed.prefill(input_ids, torch.ones_like(input_ids), RouteOverride(frozenset({2})))
    measured = _measured_flops(lambda: routed.verify(torch.tensor([[7, 8, 9]]), state))
    # As in prefill, eager attention scores all 12 keys for each token and masks the 1 + 2 later ones after.
    masked = 3 * 4 * routed.model.config.num_attention_heads * 16 * 3
    assert measured == counter.decode_pass(cached=9, tokens=3, blocks_run=3) + masked


def test_step_counts_decode_passes_as_run() -> None:
    counter = FlopsCounter(ModelShape.from_config(QWEN25_05B))
    one_token = [(50 + i, 1) for i in range(5)]
    assert counter.step_with_passes(50, one_token, 20) == counter.step(50, 5, 20)
    # Two passes of 3 tokens, the second after one draft was rejected: the rejected draft still counts.
    drafted = [(50, 3), (52, 3)]
    expected = counter.prefill(50, 20) + sum(counter.decode(context, 20) for context in (51, 52, 53, 53, 54, 55))
    assert counter.step_with_passes(50, drafted, 20) == expected
