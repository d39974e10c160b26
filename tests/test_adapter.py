"""Adapter folders: routers + LoRA saved and loaded, and a clear error on the wrong base model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_llama, tiny_qwen2

from layerroute_agent.adapter import BaseModelIdentity, load_adapter, load_adapter_keeping_base, save_adapter
from layerroute_agent.lora import LoraSettings, attach_lora, has_unmerged_lora
from layerroute_agent.routing import RoutedCausalLM, RouteOverride


def _trained_adapter(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Save an adapter with non-zero routers and LoRA; return its input ids and expected logits."""
    model = attach_lora(tiny_qwen2(seed=4))
    routed = RoutedCausalLM(model)
    with torch.no_grad():
        for name, parameter in routed.named_parameters():
            if "lora_B" in name or "routers" in name:
                parameter.normal_(std=0.05)
    input_ids = torch.randint(5, 500, (1, 9))
    expected, _ = routed.prefill(input_ids, torch.ones_like(input_ids))
    save_adapter(folder, model, routed.routers, BaseModelIdentity.of(model, "tiny-qwen2"), LoraSettings())
    return input_ids, expected


def test_adapter_round_trip(tmp_path: Path) -> None:
    input_ids, expected = _trained_adapter(tmp_path / "adapter")
    base = tiny_qwen2(seed=4)
    routers = load_adapter(tmp_path / "adapter", base)
    assert not has_unmerged_lora(base)
    actual, _ = RoutedCausalLM(base, routers).prefill(input_ids, torch.ones_like(input_ids))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_base_twin_runs_without_lora(tmp_path: Path) -> None:
    input_ids, expected = _trained_adapter(tmp_path / "adapter")
    mask = torch.ones_like(input_ids)
    untouched, _ = RoutedCausalLM(tiny_qwen2(seed=4)).prefill(input_ids, mask, override=RouteOverride.run_all())
    model = tiny_qwen2(seed=4)
    routers, twin = load_adapter_keeping_base(tmp_path / "adapter", model)

    routed, _ = RoutedCausalLM(model, routers).prefill(input_ids, mask)
    merged, _ = RoutedCausalLM(model, routers).prefill(input_ids, mask, override=RouteOverride.run_all())
    base, _ = RoutedCausalLM(twin, routers).prefill(input_ids, mask, override=RouteOverride.run_all())
    torch.testing.assert_close(routed, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(base, untouched, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(base, merged, atol=1e-3)


def test_base_twin_shares_other_weights(tmp_path: Path) -> None:
    _trained_adapter(tmp_path / "adapter")
    model = tiny_qwen2(seed=4)
    _, twin = load_adapter_keeping_base(tmp_path / "adapter", model)
    merged_q = model.model.layers[1].self_attn.q_proj.weight
    assert twin.model.layers[1].self_attn.q_proj.weight.data_ptr() != merged_q.data_ptr()
    assert twin.model.layers[1].mlp is model.model.layers[1].mlp
    assert twin.model.embed_tokens is model.model.embed_tokens
    assert twin.model.layers[1].self_attn.layer_idx == 1
    assert not has_unmerged_lora(twin)


def test_adapter_on_other_base_fails(tmp_path: Path) -> None:
    _trained_adapter(tmp_path / "adapter")
    with pytest.raises(ValueError, match=r"trained for base model 'tiny-qwen2'.*model_type: adapter has 'qwen2', "
                                         r"model has 'llama'.*num_blocks: adapter has 4, model has 5"):
        load_adapter(tmp_path / "adapter", tiny_llama())


def test_missing_adapter_config_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a routing adapter: adapter_config.json is missing"):
        load_adapter(tmp_path, tiny_qwen2())


def test_lora_settings_reject_bad_rank() -> None:
    with pytest.raises(ValueError, match="rank must be a positive integer, got 0"):
        LoraSettings(rank=0)
