"""Name -> object tables with "did you mean" errors (objectives, data sources, strategies).

The training package keeps its own small registry so that it imports nothing from the
decoding engine; :func:`did_you_mean` is also used for unknown recipe keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class Registry(Generic[T]):
    """Objects registered under a canonical name plus aliases.

    Lookup ignores case and treats ``_`` like ``-`` (``masked_diffusion`` finds
    ``masked-diffusion``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            for key in (name, *aliases):
                key = _normalise(key)
                if key in self._aliases:
                    raise ValueError(f"{self.kind} name {key!r} is already registered")
                self._aliases[key] = name
            self._items[name] = obj
            try:
                obj.name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj
        return add

    def get(self, name: str) -> T:
        canonical = self._aliases.get(_normalise(name))
        if canonical is None:
            raise ValueError(f"unknown {self.kind} {name!r}{did_you_mean(_normalise(name), self._aliases)} "
                             f"(known: {', '.join(self.names())})")
        return self._items[canonical]

    def names(self) -> list[str]:
        """Canonical names, in registration order."""
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return _normalise(name) in self._aliases


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")
