"""Behaviour of the routed forward: exactness at full depth, real skipping, per-row decisions."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_qwen2

from layerroute_agent.lora import attach_lora, merge_lora
from layerroute_agent.routing import (
    RoutedCausalLM,
    RouteOverride,
    RouterStack,
    RoutingConfig,
    pool_prompt,
    straight_through_gate,
)

NEW_TOKENS = 8


def _greedy(routed: RoutedCausalLM, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            override: RouteOverride | None = None) -> torch.Tensor:
    logits, state = routed.prefill(input_ids, attention_mask, override=override)
    tokens = []
    for _ in range(NEW_TOKENS):
        token = logits.argmax(-1, keepdim=True)
        tokens.append(token)
        logits = routed.decode(token, state)
    return torch.cat(tokens, dim=1)


def _left_padded_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 500, (3, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :4] = 0
    attention_mask[2, :7] = 0
    return input_ids, attention_mask


def _count_block_calls(routed: RoutedCausalLM) -> list[int]:
    counts = [0] * routed.num_blocks
    for index, layer in enumerate(routed.parts.layers):
        layer.register_forward_pre_hook(lambda *_, i=index: counts.__setitem__(i, counts[i] + 1))
    return counts


def _without_blocks(model: torch.nn.Module, removed: set[int]) -> torch.nn.Module:
    """A deep copy of ``model`` whose listed blocks are physically deleted (and the rest renumbered)."""
    pruned = copy.deepcopy(model)
    kept = [layer for i, layer in enumerate(pruned.model.layers) if i not in removed]
    for new_index, layer in enumerate(kept):
        layer.self_attn.layer_idx = new_index
    pruned.model.layers = torch.nn.ModuleList(kept)
    pruned.config.num_hidden_layers = len(kept)
    if getattr(pruned.config, "layer_types", None):
        pruned.config.layer_types = pruned.config.layer_types[: len(kept)]
    return pruned


def test_run_all_reproduces_base_logits(tiny_model: torch.nn.Module) -> None:
    routed = RoutedCausalLM(tiny_model)
    input_ids, attention_mask = _left_padded_batch()
    with torch.no_grad():
        base = tiny_model(input_ids=input_ids, attention_mask=attention_mask).logits
    prefill_logits, _ = routed.prefill(input_ids, attention_mask)
    train = routed.forward_train(input_ids, attention_mask, attention_mask).logits
    real = attention_mask.bool()
    torch.testing.assert_close(prefill_logits, base[:, -1].float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(train[real], base[real], rtol=1e-5, atol=1e-5)


def test_greedy_generation_matches_hf_generate(tiny_model: torch.nn.Module) -> None:
    routed = RoutedCausalLM(tiny_model)
    input_ids, attention_mask = _left_padded_batch()
    expected = tiny_model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=NEW_TOKENS,
                                   do_sample=False, pad_token_id=0)[:, input_ids.shape[1]:]
    assert torch.equal(_greedy(routed, input_ids, attention_mask), expected)


def test_skipped_block_is_never_called() -> None:
    routed = RoutedCausalLM(tiny_qwen2())
    counts = _count_block_calls(routed)
    input_ids, attention_mask = _left_padded_batch()
    _greedy(routed, input_ids, attention_mask, RouteOverride(frozenset({1, 3})))
    # One prefill call plus one decode call per new token, for the blocks that run only.
    assert counts == [NEW_TOKENS + 1, 0, NEW_TOKENS + 1, 0]


def test_skipped_block_writes_no_cache() -> None:
    routed = RoutedCausalLM(tiny_qwen2())
    input_ids, attention_mask = _left_padded_batch()
    _, state = routed.prefill(input_ids, attention_mask, RouteOverride(frozenset({0, 2})))
    routed.decode(torch.ones(3, 1, dtype=torch.long), state)
    assert state.cache.cached_blocks() == [1, 3]
    assert state.cache.seq_length(1) == input_ids.shape[1] + 1


@pytest.mark.parametrize("removed", [{1}, {0, 3}, {1, 2}])
def test_fixed_skips_equal_physically_removed_blocks(tiny_model: torch.nn.Module, removed: set[int]) -> None:
    routed = RoutedCausalLM(tiny_model)
    pruned = _without_blocks(tiny_model, removed)
    input_ids, attention_mask = _left_padded_batch()
    expected = pruned.generate(input_ids, attention_mask=attention_mask, max_new_tokens=NEW_TOKENS,
                               do_sample=False, pad_token_id=0)[:, input_ids.shape[1]:]
    actual = _greedy(routed, input_ids, attention_mask, RouteOverride(frozenset(removed)))
    assert torch.equal(actual, expected)


def _routers_reading_first_feature(routed: RoutedCausalLM, block: int) -> None:
    router = routed.routers[block].proj
    with torch.no_grad():
        router.weight.zero_()
        router.weight[0, 0] = 50.0
        router.bias.zero_()


def test_decisions_are_per_row() -> None:
    routed = RoutedCausalLM(tiny_qwen2())
    _routers_reading_first_feature(routed, block=2)
    input_ids, attention_mask = _left_padded_batch(seed=3)
    batch_tokens = _greedy(routed, input_ids, attention_mask)
    _, state = routed.prefill(input_ids, attention_mask)
    column = state.decisions.run[:, 2]
    assert bool(column.any()), "the test needs a row that runs block 2"
    assert not bool(column.all()), "the test needs a row that skips block 2"
    for row in range(input_ids.shape[0]):
        real = attention_mask[row].bool()
        alone = _greedy(routed, input_ids[row : row + 1, real], torch.ones(1, int(real.sum()), dtype=torch.long))
        assert torch.equal(batch_tokens[row], alone[0])


def test_mean_pooling_ignores_padding() -> None:
    hidden = torch.randn(1, 5, 8)
    padded = torch.cat([torch.full((1, 3, 8), 100.0), hidden], dim=1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    expected = pool_prompt(hidden, torch.ones(1, 5), "mean")
    torch.testing.assert_close(pool_prompt(padded, mask, "mean"), expected)


def test_last_pooling_takes_last_prompt_token() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    prompt_mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    pooled = pool_prompt(hidden, prompt_mask, "last")
    torch.testing.assert_close(pooled, torch.stack([hidden[0, 1], hidden[1, 2]]))


def test_pooling_rejects_rows_without_prompt() -> None:
    with pytest.raises(ValueError, match="at least one prompt token"):
        pool_prompt(torch.zeros(2, 3, 4), torch.tensor([[1, 0, 0], [0, 0, 0]]), "mean")


def test_straight_through_gate_is_hard_with_sigmoid_gradient() -> None:
    logits = torch.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    gate, prob = straight_through_gate(logits)
    assert gate.tolist() == [0.0, 1.0, 1.0]
    gate.sum().backward()
    torch.testing.assert_close(logits.grad, prob.detach() * (1 - prob.detach()))


def test_routers_start_identical() -> None:
    routers = RouterStack(6, 32, RoutingConfig(init_bias=2.5))
    for router in routers.routers:
        assert torch.count_nonzero(router.proj.weight) == 0
        assert router.proj.bias.item() == 2.5


def test_routing_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="pooling must be 'mean' or 'last', got 'max'"):
        RoutingConfig(pooling="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="init_bias must be > 0"):
        RoutingConfig(init_bias=-1.0)


def test_fresh_lora_changes_no_logit() -> None:
    model = tiny_qwen2()
    input_ids, attention_mask = _left_padded_batch()
    with torch.no_grad():
        before = model(input_ids=input_ids, attention_mask=attention_mask).logits
        attach_lora(model)
        after = model(input_ids=input_ids, attention_mask=attention_mask).logits
    assert torch.equal(before, after)


def test_merged_lora_keeps_trained_logits() -> None:
    model = attach_lora(tiny_qwen2())
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    input_ids, attention_mask = _left_padded_batch()
    with torch.no_grad():
        unmerged = model(input_ids=input_ids, attention_mask=attention_mask).logits
        merge_lora(model)
        merged = model(input_ids=input_ids, attention_mask=attention_mask).logits
    assert not any("lora_" in name for name, _ in model.named_parameters())
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-4)


def test_training_step_moves_only_routers_and_lora() -> None:
    model = attach_lora(tiny_qwen2())
    routed = RoutedCausalLM(model)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    trainable = [p for p in routed.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    input_ids, attention_mask = _left_padded_batch()
    prompt_mask = attention_mask.clone()
    prompt_mask[:, -4:] = 0
    out = routed.forward_train(input_ids, attention_mask, prompt_mask)
    loss = out.logits.float().logsumexp(-1).mean() + out.gate_probs.mean()
    loss.backward()
    assert all(router.proj.weight.grad is not None for router in routed.routers.routers)
    optimizer.step()
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert torch.equal(parameter, frozen[name]), name
    assert any(torch.count_nonzero(router.proj.weight) > 0 for router in routed.routers.routers)


def _force_skip(routed: RoutedCausalLM, block: int) -> None:
    with torch.no_grad():
        routed.routers[block].proj.bias.fill_(-5.0)


def test_always_run_block_ignores_its_router() -> None:
    routers = RouterStack(4, 64, RoutingConfig(always_run=(0,)))
    routed = RoutedCausalLM(tiny_qwen2(), routers)
    for block in (0, 2):
        _force_skip(routed, block)
    input_ids, attention_mask = _left_padded_batch()

    _, state = routed.prefill(input_ids, attention_mask)
    out = routed.forward_train(input_ids, attention_mask, attention_mask)

    assert state.decisions.blocks_skipped(0) == [2]
    assert out.gates[:, 0].tolist() == [1.0, 1.0, 1.0]
    assert routed.num_routed_blocks == 3


def test_always_run_outside_the_model_is_named() -> None:
    with pytest.raises(ValueError, match=r"always_run names blocks \[7\], but the model has 4 blocks"):
        RoutedCausalLM(tiny_qwen2(), RouterStack(4, 64, RoutingConfig(always_run=(7,))))


def test_always_run_from_json_list_is_a_tuple() -> None:
    assert RoutingConfig(always_run=[0, 1]).always_run == (0, 1)  # type: ignore[arg-type]


def test_always_run_router_is_frozen() -> None:
    routers = RouterStack(4, 64, RoutingConfig(always_run=(0,)))

    assert [router.proj.weight.requires_grad for router in routers.routers] == [False, True, True, True]
