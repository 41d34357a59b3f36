"""From committed tokens to the text a client sees: stop strings, streamed text deltas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string (excluded) and whether one was found.

    >>> cut_at_stop("a = 1\\n\\nprint(a)", ["\\n\\n"])
    ('a = 1', True)
    >>> cut_at_stop("abc", [])
    ('abc', False)
    """
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class PrefixText:
    """The text of one completion as it denoises, for token deltas in a stream.

    A diffusion model commits positions in any order; what a client can be sent is the text
    of the committed *prefix* (every position from the first up to the first still-masked
    one, cut at the first end token and at a stop string). :meth:`update` records a step's
    commits and returns the new text to send (possibly ""); text that could still be the
    start of a stop string is held back until it cannot.
    """

    def __init__(self, tokenizer: Any, length: int, ends: Sequence[int], stop: Sequence[str] = ()) -> None:
        self.tokenizer, self.ends, self.stop = tokenizer, set(ends), [s for s in stop if s]
        self.canvas: list[int | None] = [None] * length
        self.sent = ""

    def update(self, positions: Sequence[int], tokens: Sequence[int]) -> str:
        for pos, tok in zip(positions, tokens):
            if 0 <= pos < len(self.canvas):
                self.canvas[pos] = tok
        prefix: list[int] = []
        complete = False  # an end token closes the prefix: nothing more can join it
        for slot in self.canvas:
            if slot is None:
                break
            if slot in self.ends:
                complete = True
                break
            prefix.append(slot)
        if not complete and prefix:  # the last token's text may still merge with the next one's
            prefix = prefix[:-1]
        text, found = cut_at_stop(self.tokenizer.decode(prefix), self.stop)
        text = text.rstrip("\ufffd")  # a character cut in the middle of its bytes
        if not found:  # hold back a tail that may grow into a stop string
            hold = max((len(s) - 1 for s in self.stop), default=0)
            text = text[: len(text) - hold] if hold else text
        return self._advance(text)

    def finish(self, final: str) -> str:
        """The rest of the final text (already cut at stop strings)."""
        return self._advance(final)

    def _advance(self, text: str) -> str:
        if not text.startswith(self.sent) or len(text) <= len(self.sent):
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta
