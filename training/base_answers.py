"""A JSON file of the base model's replies, so that later runs reuse them instead of generating them again.

Data flow: (model, dtype, device, max_tokens, package version) -> a key -> the file's section for that
key -> per item id, one JSON value: for BFCL evaluation items the parsed tool calls and the count of
invalid calls, for replayed multi-turn steps the reply text and why it ended. The base model decodes
greedily, so a reply depends on that key and the item. One file contains a section per key, so training
and ``layerroute-eval`` can share it without overwriting each other's replies.

NOTE: the package version stays the same across commits of an editable install, so delete the file
after changing prompt rendering or reply parsing.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _package_version() -> str:
    try:
        return version("layerroute-agent")
    except PackageNotFoundError:
        return "unknown"


def answer_key(model: str, dtype: str, max_tokens: int, device: str = "cpu") -> dict[str, Any]:
    """Return what the base model's replies depend on besides the item.

    The package version is part of it because prompt rendering and call parsing may change between
    versions. The device is part of it because greedy bf16 decoding can differ between CPU and CUDA.
    """
    return {"model": model, "dtype": dtype, "device": device, "max_tokens": max_tokens,
            "package_version": _package_version()}


def _section_name(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True)


def _read_sections(path: Path) -> dict[str, Any]:
    """Return the file's sections; an unreadable file or one of another layout gives none (with a warning)."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        logger.warning("Failed to read the base-model replies at %s (%s); generating them again", path, err)
        return {}
    sections = stored.get("sections") if isinstance(stored, dict) else None
    if not isinstance(sections, dict) or not all(isinstance(replies, dict) for replies in sections.values()):
        logger.warning("Base-model replies at %s are not a {'sections': {key: replies}} object; generating them "
                       "again", path)
        return {}
    return sections


@dataclass
class BaseAnswers:
    """The base model's replies by item id for one key, read from and written back to ``path``.

    With ``path=None`` nothing is read or written and every lookup misses.
    """

    path: Path | None
    """JSON file of the replies, or ``None`` to keep none."""
    key: dict[str, Any]
    """Generation settings of the replies (see :func:`answer_key`)."""
    replies: dict[str, Any] = field(default_factory=dict)
    """Item id -> the stored JSON value."""
    other_sections: dict[str, Any] = field(default_factory=dict)
    """The file's sections for other keys, written back unchanged."""

    @classmethod
    def open(cls, path: Path | None, key: dict[str, Any]) -> BaseAnswers:
        """Read the replies stored at ``path`` under ``key``, or start empty."""
        if path is None or not path.exists():
            return cls(path, key)
        sections = _read_sections(path)
        replies = sections.pop(_section_name(key), {})
        logger.info("Reusing %d base-model replies from %s", len(replies), path)
        return cls(path, key, dict(replies), sections)

    def get(self, item_id: str) -> Any | None:
        """Return the value stored for ``item_id``, or ``None``."""
        return self.replies.get(item_id)

    def put(self, item_id: str, value: Any) -> None:
        """Store one JSON value and write the file (atomically, so a killed run leaves the previous file).

        Raises:
            TypeError: when ``value`` cannot be written as JSON; nothing is stored then.
        """
        json.dumps(value)
        self.replies[item_id] = value
        if self.path is None:
            return
        sections = {**self.other_sections, _section_name(self.key): self.replies}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp")
        try:
            with handle:
                json.dump({"sections": sections}, handle, indent=1)
            os.chmod(handle.name, 0o644)
            os.replace(handle.name, self.path)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise


__all__ = ["BaseAnswers", "answer_key"]
