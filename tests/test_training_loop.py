"""The training loop on a tiny model: loss, frozen base, checkpoints and exact resume."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import tiny_qwen2
from safetensors.torch import load_file

from layerroute_agent.adapter import load_adapter
from layerroute_agent.lora import LoraSettings, attach_lora
from layerroute_agent.routing import RoutedCausalLM
from training.checkpoint import latest_checkpoint, list_checkpoints
from training.config import TrainConfig
from training.loop import (
    batch_indices,
    collate,
    distillation_kl,
    gate_budget,
    routed_loss,
    teacher_target_logits,
    train,
)
from layerroute_agent.routing import TrainOutput


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    prompt_length: int
    mode: str


def _examples(count: int = 12) -> list[Example]:
    rng = random.Random(0)
    out = []
    for i in range(count):
        prompt = [rng.randrange(5, 500) for _ in range(rng.randrange(4, 10))]
        target = [7, 8, 9] if i % 2 == 0 else [rng.randrange(5, 500) for _ in range(6)]
        out.append(Example(prompt + target, len(prompt), "tool_call" if i % 2 == 0 else "planning"))
    return out


def _tiny_routed() -> RoutedCausalLM:
    model = attach_lora(tiny_qwen2(seed=2, attn="eager"), LoraSettings(rank=4, alpha=8.0))
    return RoutedCausalLM(model)


def _config(tmp_path: Path, steps: int, **overrides: object) -> TrainConfig:
    settings = dict(model="tiny", output_dir=str(tmp_path), steps=steps, batch_size=3, checkpoint_every=2,
                    keep_checkpoints=10, dtype="float32", lora_rank=4, gate_penalty=0.5, learning_rate=1e-2)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_collate_masks_prompt_and_target() -> None:
    batch = collate([Example([1, 2, 3, 4], 2, "tool_call"), Example([5, 6, 7], 1, "planning")],
                    {"tool_call": 0.1, "planning": 0.2}, pad_id=0, device=torch.device("cpu"))
    assert batch.prompt_mask.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0]]
    assert batch.target_mask.tolist() == [[0, 0, 1, 1], [0, 1, 1, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch.penalty.tolist() == pytest.approx([0.1, 0.2])


def test_loss_counts_only_target_tokens() -> None:
    routed = _tiny_routed()
    batch = collate(_examples(4), {"tool_call": 0.0, "planning": 0.0}, 0, torch.device("cpu"))
    out = routed.forward_train(batch.input_ids, batch.attention_mask, batch.prompt_mask)
    ce = routed_loss(out, batch).ce
    padded = batch.input_ids.clone()
    padded[batch.attention_mask == 0] = 3  # pad ids must not matter
    out_padded = routed.forward_train(padded, batch.attention_mask, batch.prompt_mask)
    batch.input_ids = padded
    ce_padded = routed_loss(out_padded, batch).ce
    torch.testing.assert_close(ce, ce_padded)


def _gate_output(gates: list[list[float]], probs: list[list[float]]) -> TrainOutput:
    return TrainOutput(logits=torch.zeros(len(gates), 2, 3), gates=torch.tensor(gates, dtype=torch.float32, requires_grad=True),
                       gate_probs=torch.tensor(probs, requires_grad=True))


def test_gate_budget_skip_target_met() -> None:
    batch = collate([Example([1, 2, 3], 2, "tool_call"), Example([1, 2, 3], 2, "tool_call"),
                     Example([1, 2, 3], 2, "planning")],
                    {"tool_call": 2.0, "planning": 0.5}, pad_id=0, device=torch.device("cpu"),
                    skip_targets={"tool_call": 0.25})
    # Row 0 runs all 4 blocks (over the 0.75 ceiling by 0.25); row 1 skips one (meets it); row 2 has no target.
    out = _gate_output([[1, 1, 1, 1], [1, 0, 1, 1], [1, 1, 1, 1]],
                       [[0.9, 0.9, 0.9, 0.9], [0.9, 0.2, 0.9, 0.9], [0.8, 0.8, 0.8, 0.8]])

    budget = gate_budget(out, batch)

    assert batch.skip_target.tolist() == pytest.approx([0.25, 0.25, 0.0])
    assert budget.item() == pytest.approx((2.0 * 0.25 + 0.0 + 0.5 * 0.8) / 3)
    budget.backward()
    assert out.gates.grad[1].abs().sum() == 0  # the row that meets its target pays nothing
    assert out.gates.grad[0].abs().sum() > 0
    assert out.gate_probs.grad[2].abs().sum() > 0
    assert out.gate_probs.grad[0].abs().sum() == 0  # rows with a target are charged on the hard gates


def test_distillation_kl_base_and_changed() -> None:
    routed = _tiny_routed()  # fresh LoRA (B = 0) and routers that run every block: the base model itself
    batch = collate(_examples(4), {"tool_call": 0.0, "planning": 0.0}, 0, torch.device("cpu"))
    teacher = teacher_target_logits(routed, batch)
    out = routed.forward_train(batch.input_ids, batch.attention_mask, batch.prompt_mask)

    assert teacher.shape == (int(batch.target_mask[:, 1:].sum()), out.logits.shape[-1])
    assert float(distillation_kl(out.logits, teacher, batch)) == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        for name, parameter in routed.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    changed = routed.forward_train(batch.input_ids, batch.attention_mask, batch.prompt_mask)
    kl = distillation_kl(changed.logits, teacher, batch)
    assert float(kl) > 1e-3
    # The teacher runs with LoRA off, so it is unchanged by the new LoRA weights.
    torch.testing.assert_close(teacher_target_logits(routed, batch), teacher)
    parts = routed_loss(changed, batch, teacher, distill_weight=2.0)
    torch.testing.assert_close(parts.total, parts.ce + 2.0 * kl + gate_budget(changed, batch))
    kl_only = routed_loss(changed, batch, teacher, distill_weight=2.0, ce_weight=0.0)
    torch.testing.assert_close(kl_only.total, 2.0 * kl + gate_budget(changed, batch))
    torch.testing.assert_close(kl_only.ce, parts.ce)


def test_training_distillation_skip_target(tmp_path: Path) -> None:
    routed = _tiny_routed()
    folder = train(_config(tmp_path, steps=2, distill_weight=1.0, skip_target=0.5), _examples(), pad_id=0,
                   routed=routed)
    assert (folder / "adapter_config.json").is_file()
    assert all(p.requires_grad for n, p in routed.model.named_parameters() if "lora_" in n)


def test_batch_indices_cover_each_epoch() -> None:
    seen = [i for step in range(4) for i in batch_indices(step, 3, 1, 0, 12, seed=5)]
    assert sorted(seen) == list(range(12))
    ranks = [batch_indices(0, 3, 2, rank, 12, seed=5) for rank in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])


def test_config_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match=r"steps must be an integer >= 1, got 0; .*pooling must be 'mean' or 'last'"):
        TrainConfig(steps=0, pooling="max")


def test_training_moves_routers_and_keeps_base(tmp_path: Path) -> None:
    routed = _tiny_routed()
    frozen = {n: p.detach().clone() for n, p in routed.model.named_parameters() if not p.requires_grad}
    folder = train(_config(tmp_path, steps=6), _examples(), pad_id=0, routed=routed)
    for name, parameter in routed.model.named_parameters():
        if name in frozen:
            assert torch.equal(parameter, frozen[name]), name
    assert any(float(r.proj.weight.detach().abs().sum()) > 0 for r in routed.routers.routers)
    assert (folder / "adapter_config.json").is_file()
    routers = load_adapter(folder, tiny_qwen2(seed=2, attn="eager"))
    torch.testing.assert_close(routers.state_dict(), routed.routers.state_dict())


def test_checkpoints_are_complete_and_pruned(tmp_path: Path) -> None:
    train(_config(tmp_path, steps=6, keep_checkpoints=2), _examples(), pad_id=0, routed=_tiny_routed())
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["step-000004", "step-000006"]
    (tmp_path / "checkpoints" / "step-000008.partial").mkdir()
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-000006"


def test_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    train(_config(straight, steps=6), _examples(), pad_id=0, routed=_tiny_routed())
    resumed = tmp_path / "resumed"
    train(_config(resumed, steps=4), _examples(), pad_id=0, routed=_tiny_routed())
    # A fresh model resumes from step 4's checkpoint and runs the last two steps.
    train(_config(resumed, steps=6), _examples(), pad_id=0, routed=_tiny_routed())
    expected = load_file(straight / "checkpoints" / "step-000006" / "trainable.safetensors")
    actual = load_file(resumed / "checkpoints" / "step-000006" / "trainable.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0)


def test_config_rejects_bad_budget_fields() -> None:
    with pytest.raises(ValueError, match=r"skip_target must be None or in \(0, 1\), got 1.5; "
                                         r"distill_weight must be >= 0, got -1; planning_tools_share must be in"):
        TrainConfig(skip_target=1.5, distill_weight=-1, planning_tools_share=2)
    config = TrainConfig(skip_target=0.2)
    assert (config.skip_target_for("tool_call"), config.skip_target_for("planning")) == (0.2, 0.0)


def test_config_rejects_unknown_call_format() -> None:
    with pytest.raises(ValueError, match="call_format must be one of"):
        TrainConfig(call_format="xml")


def test_config_needs_some_lora_loss() -> None:
    with pytest.raises(ValueError, match="ce_weight and distill_weight are both 0"):
        TrainConfig(ce_weight=0.0)
    with pytest.raises(ValueError, match="ce_weight must be >= 0, got -0.5"):
        TrainConfig(ce_weight=-0.5)
