"""A JSON file of the base model's replies, so that later runs reuse them instead of generating them again.

Data flow: (model, dtype, max_tokens, package version) -> a key stored in the file -> per item id, one
JSON value: for BFCL evaluation items the parsed tool calls and the count of invalid calls, for replayed
multi-turn tasks the reply text. The base model decodes greedily, so its replies depend only on that key
and the item. A file whose key differs is ignored with a warning and overwritten, never mixed with new
replies.
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


def answer_key(model: str, dtype: str, max_tokens: int) -> dict[str, Any]:
    """Return what the base model's replies depend on besides the item.

    The package version is part of it because prompt rendering and call parsing may change between
    versions.
    """
    return {"model": model, "dtype": dtype, "max_tokens": max_tokens, "package_version": _package_version()}


@dataclass
class BaseAnswers:
    """The base model's BFCL replies by item id, read from and written back to ``path``.

    With ``path=None`` nothing is read or written and every lookup misses.
    """

    path: Path | None
    """JSON file of the replies, or ``None`` to keep none."""
    key: dict[str, Any]
    """Generation settings of the replies (see :func:`answer_key`)."""
    replies: dict[str, Any] = field(default_factory=dict)
    """Item id -> the stored JSON value."""

    @classmethod
    def open(cls, path: Path | None, key: dict[str, Any]) -> BaseAnswers:
        """Read the replies stored at ``path`` when they were generated with ``key``, else start empty."""
        if path is None or not path.exists():
            return cls(path, key)
        try:
            stored = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            logger.warning("Failed to read the base-model replies at %s (%s); generating them again", path, err)
            return cls(path, key)
        if not isinstance(stored, dict) or not isinstance(stored.get("replies"), dict):
            logger.warning("Base-model replies at %s are not a {'key', 'replies'} object; generating them again", path)
            return cls(path, key)
        if stored.get("key") != key:
            logger.warning("Base-model replies at %s were generated with %s, not %s; generating them again",
                           path, stored.get("key"), key)
            return cls(path, key)
        logger.info("Reusing %d base-model replies from %s", len(stored["replies"]), path)
        return cls(path, key, dict(stored["replies"]))

    def get(self, item_id: str) -> Any | None:
        """Return the value stored for ``item_id``, or ``None``."""
        return self.replies.get(item_id)

    def put(self, item_id: str, value: Any) -> None:
        """Store one JSON value and write the file (atomically, so a killed run leaves the previous file)."""
        self.replies[item_id] = value
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"key": self.key, "replies": self.replies}, indent=1)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp") as handle:
            handle.write(text)
        os.replace(handle.name, self.path)


__all__ = ["BaseAnswers", "answer_key"]
