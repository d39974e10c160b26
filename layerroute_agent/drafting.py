"""Draft tokens copied from earlier in the sequence, for checking several tokens in one decode pass.

Agent replies repeat their prompt: a tool call copies the tool's name and argument keys from the tool
schemas and argument values from the user's request. :class:`PromptLookup` finds the last few tokens of
the sequence (prompt and reply so far) at an earlier place and proposes the tokens that followed them
there. The model checks the proposal in one pass (:meth:`~layerroute_agent.routing.RoutedCausalLM.verify`)
and keeps the drafted tokens that equal its own greedy choice in that pass, so the reply takes fewer
passes. A decode pass of a small model on a CPU is bound by reading the weights, and it reads them once
whatever the number of tokens in it. So a pass of a few tokens costs little more than a pass of one
(``python -m benchmarks.decode_profile`` times both).
"""

from __future__ import annotations

from collections.abc import Sequence


class PromptLookup:
    """An index of every n-gram of a token sequence, kept up to date as tokens are appended.

    Args:
        tokens: the sequence so far (the prompt).
        ngram_sizes: match lengths to try, longest first; a longer match predicts the next tokens better.
    """

    def __init__(self, tokens: Sequence[int], ngram_sizes: tuple[int, ...] = (3, 2)) -> None:
        if not ngram_sizes or min(ngram_sizes) < 1:
            raise ValueError(f"ngram_sizes must contain sizes >= 1, got {ngram_sizes!r}")
        self.ngram_sizes = tuple(sorted(ngram_sizes, reverse=True))
        self.tokens: list[int] = []
        # For each size, n-gram -> index of its last token, for n-grams that some token already follows.
        self._ends: dict[int, dict[tuple[int, ...], int]] = {size: {} for size in self.ngram_sizes}
        self.extend(tokens)

    def extend(self, tokens: Sequence[int]) -> None:
        """Append ``tokens`` to the sequence and index the n-grams they complete."""
        start = len(self.tokens)
        self.tokens.extend(tokens)
        # An n-gram enters the index once a token follows it: the last token's n-grams wait for the next one.
        for end in range(max(start - 1, 0), len(self.tokens) - 1):
            for size, ends in self._ends.items():
                if end + 1 >= size:
                    ends[tuple(self.tokens[end + 1 - size:end + 1])] = end

    def propose(self, count: int) -> list[int]:
        """Return up to ``count`` tokens that followed the latest earlier occurrence of the sequence's tail."""
        if count <= 0:
            return []
        for size in self.ngram_sizes:
            if len(self.tokens) < size:
                continue
            end = self._ends[size].get(tuple(self.tokens[-size:]))
            if end is not None:
                return self.tokens[end + 1:end + 1 + count]
        return []


__all__ = ["PromptLookup"]
