"""End to end on a tiny model: layerroute-train writes an adapter, layerroute-eval reports on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.cli import train_main
from training.evaluate import EvalSizes, evaluate, target_checks


def test_train_cli_writes_adapter_and_config(tiny_adapter: Path) -> None:
    config = json.loads((tiny_adapter / "adapter_config.json").read_text())
    assert config["base_model"]["num_blocks"] == 4
    assert config["lora"]["rank"] == 4
    assert config["extra"]["train_config"]["steps"] == 3
    assert (tiny_adapter.parent / "checkpoints" / "step-000003").is_dir()


def test_eval_reports_every_key(tiny_adapter: Path, tiny_model_dir: Path) -> None:
    report = evaluate(str(tiny_adapter), model=str(tiny_model_dir), sizes=EvalSizes(per_mode=3, bfcl=2),
                      dtype="float32")
    assert set(report) >= {"model", "adapter", "seed", "modes", "skip_differential", "skip_pattern",
                           "bfcl_live_simple", "bfcl_irrelevance"}
    for mode in ("tool_call", "planning"):
        block = report["modes"][mode]
        assert set(block) == {"flops_saved_share", "blocks_skipped_share", "ppl_base", "ppl_routed", "n", "by_source",
                              "by_position"}
        assert block["n"] == 3
        for split in ("by_source", "by_position"):
            assert sum(part["n"] for part in block[split].values()) == 3
            assert all(set(part) == set(block) - {"by_source", "by_position"} for part in block[split].values())
        assert set(block["by_position"]) <= {"after_user", "after_tool_result"}
        assert block["ppl_base"] > 1
        assert block["ppl_routed"] > 1
        assert len(report["skip_pattern"][mode]) == 4
    assert report["bfcl_live_simple"]["n"] == 2
    assert 0 <= report["bfcl_irrelevance"]["no_call_rate_base"] <= 1


def test_train_cli_rejects_unknown_source(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown data source 'wiki'"):
        train_main(["--model", str(tiny_model_dir), "--output-dir", str(tmp_path), "--sources", "wiki"])


def _train_command(model_dir: Path, output: Path, steps: int) -> list[str]:
    return ["-m", "training", "--model", str(model_dir), "--output-dir", str(output), "--steps", str(steps),
            "--batch-size", "2", "--max-length", "1000", "--dtype", "float32", "--lora-rank", "4",
            "--checkpoint-every", "2", "--keep-checkpoints", "50"]


def test_killed_run_resumes_to_the_same_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run([sys.executable, *_train_command(tiny_model_dir, straight, 8)], check=True, capture_output=True)
    process = subprocess.Popen([sys.executable, *_train_command(tiny_model_dir, killed, 8)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoints" / "step-000004").is_dir() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "adapter").exists(), "the run finished before it was killed; the test needs a slower run"
    subprocess.run([sys.executable, *_train_command(tiny_model_dir, killed, 8)], check=True, capture_output=True)
    expected = load_file(straight / "checkpoints" / "step-000008" / "trainable.safetensors")
    actual = load_file(killed / "checkpoints" / "step-000008" / "trainable.safetensors")
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name


def test_accelerate_runs_two_processes_with_gloo(tiny_model_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               *_train_command(tiny_model_dir, tmp_path, 2)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Training on 2 process(es) (rank 0), device cpu" in result.stderr
    assert "Training on 2 process(es) (rank 1), device cpu" in result.stderr
    assert "backend gloo" in result.stderr
    assert (tmp_path / "adapter" / "routers.safetensors").is_file()


def test_sweep_summary_reports_spread() -> None:
    from training.sweep import summarise

    rows = [{"seed": s, "skip_differential": d, "tool_call_flops_saved": t} for s, d, t in
            [(0, 0.10, 0.2), (1, -0.01, 0.1), (2, 0.05, 0.3)]]
    summary = summarise(rows)
    assert summary["differential_positive_every_seed"] is False
    assert summary["spread"]["skip_differential"]["min"] == -0.01
    assert summary["spread"]["tool_call_flops_saved"]["max"] == 0.3


def _report(tool_saved: float, planning_saved: float, accuracy_routed: float) -> dict:
    modes = {"tool_call": {"flops_saved_share": tool_saved, "ppl_base": 4.0, "ppl_routed": 3.0},
             "planning": {"flops_saved_share": planning_saved, "ppl_base": 4.0, "ppl_routed": 4.5}}
    return {"modes": modes, "bfcl_live_simple": {"accuracy_base": 0.5, "accuracy_routed": accuracy_routed}}


def test_target_checks_mark_each_target() -> None:
    checks = target_checks(_report(tool_saved=0.16, planning_saved=0.04, accuracy_routed=0.49))

    assert {name: check["met"] for name, check in checks.items()} == {
        "tool_call_flops_saved": True, "planning_flops_saved": False, "tool_call_ppl_delta": True,
        "planning_ppl_delta": False, "bfcl_live_simple_accuracy_gap": True}


def test_target_checks_leave_out_missing_values() -> None:
    report = _report(tool_saved=0.2, planning_saved=0.0, accuracy_routed=0.4)
    report["modes"]["planning"]["flops_saved_share"] = None
    del report["bfcl_live_simple"]

    checks = target_checks(report)

    assert set(checks) == {"tool_call_flops_saved", "tool_call_ppl_delta", "planning_ppl_delta"}
    assert checks["tool_call_flops_saved"]["target"] == ">= 0.1525"


def test_export_checkpoint_matches_final_adapter(tiny_adapter: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from training.export import main as export_main

    checkpoint = tiny_adapter.parent / "checkpoints" / "step-000003"
    assert export_main([str(checkpoint), str(tmp_path / "exported")]) == 0
    names = sorted(path.name for path in tiny_adapter.glob("*.safetensors"))
    assert names
    for name in names:
        final, exported = load_file(str(tiny_adapter / name)), load_file(str(tmp_path / "exported" / name))
        assert final.keys() == exported.keys()
        for key in final:
            assert torch.equal(final[key], exported[key]), key
    stored = json.loads((tmp_path / "exported" / "adapter_config.json").read_text())
    assert stored["extra"]["train_config"]["steps"] == 3
    assert stored["extra"]["checkpoint_step"] == 3


def test_export_rejects_incomplete_checkpoint(tmp_path: Path) -> None:
    from training.export import export_checkpoint

    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        export_checkpoint(tmp_path, tmp_path / "out")
