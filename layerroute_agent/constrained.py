"""Decoding constraints for replies that must be one JSON object: forced tool calls and JSON output.

A forced reply starts with a prefix placed at the end of the prompt (``{`` for JSON output,
``{"name": "get_weather", "arguments": {`` for a named tool). :class:`JsonReplyConstraint` then masks
end-of-turn until the object closes and ends the reply as soon as it does. It can also restrict the text
right after the prefix to a fixed set of strings (the allowed tool names), by masking every token that
would leave all of them.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase


def json_value_end(text: str) -> int | None:
    """Return the index just past the JSON object or array that ``text`` opens, or ``None`` while it is open.

    Brackets inside strings (escapes included) are not counted. Leading whitespace is skipped; text that does
    not open with ``{`` or ``[`` never completes, so this returns ``None`` for it.
    """
    depth, in_string, escaped = 0, False, False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char in "{[":
            depth += 1
        elif depth == 0:
            if not char.isspace():
                return None
        elif char == '"':
            in_string = True
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


class TokenIndex:
    """The decoded text of every non-special token of a tokenizer, indexed by that text."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        special = set(tokenizer.all_special_ids)
        ids = [i for i in range(len(tokenizer)) if i not in special]
        texts = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False)
        self._ids_by_text: dict[str, list[int]] = {}
        for token_id, text in zip(ids, texts, strict=True):
            if text and "\ufffd" not in text:  # tokens that hold part of a UTF-8 character never match alone
                self._ids_by_text.setdefault(text, []).append(token_id)

    def ids_covering_start_of(self, text: str) -> set[int]:
        """Return the ids of tokens whose text is a non-empty prefix of ``text``."""
        found: set[int] = set()
        for size in range(1, len(text) + 1):
            found.update(self._ids_by_text.get(text[:size], ()))
        return found


_indexes: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, TokenIndex] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def token_index(tokenizer: PreTrainedTokenizerBase) -> TokenIndex:
    """Return the :class:`TokenIndex` of ``tokenizer``, built on first use."""
    with _indexes_lock:
        if tokenizer not in _indexes:
            _indexes[tokenizer] = TokenIndex(tokenizer)
        return _indexes[tokenizer]


class JsonReplyConstraint:
    """A reply that continues ``prefix`` into one JSON object, optionally through one of ``choices`` first.

    Args:
        prefix: the forced text at the end of the prompt; it must open the JSON object.
        choices: strings one of which must directly follow the prefix, e.g. each allowed tool name followed by
            ``", "arguments": {``. Empty: no restriction.
        index: the tokenizer's :class:`TokenIndex`; required when ``choices`` is not empty.

    Implements :class:`~layerroute_agent.generation.DecodingConstraint`.
    """

    def __init__(self, prefix: str, choices: Sequence[str] = (), index: TokenIndex | None = None) -> None:
        if not prefix.lstrip().startswith(("{", "[")):
            raise ValueError(f"prefix {prefix!r} must open a JSON object or array")
        if choices and index is None:
            raise ValueError("choices need the tokenizer's TokenIndex; pass index=token_index(tokenizer)")
        self.prefix = prefix
        self.choices = tuple(choices)
        self._index = index

    def allowed_token_ids(self, text: str) -> Sequence[int] | None:
        open_choices = [c for c in self.choices if c.startswith(text) and len(c) > len(text)]
        if not open_choices:
            return None  # no restriction, or a choice is already complete
        allowed: set[int] = set()
        for choice in open_choices:
            allowed |= self._index.ids_covering_start_of(choice[len(text):])  # type: ignore[union-attr]
        # NOTE: a choice that no sequence of whole-character tokens can spell (possible for non-ASCII names)
        # leaves this empty. Decoding is then unrestricted, and the parser flags a name that is not bound.
        return sorted(allowed) or None

    def complete_length(self, text: str) -> int | None:
        end = json_value_end(self.prefix + text)
        return None if end is None else max(end - len(self.prefix), 0)


__all__ = ["JsonReplyConstraint", "TokenIndex", "json_value_end", "token_index"]
