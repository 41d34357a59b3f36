"""A name -> class table with aliases and "did you mean" errors (policies, schedules)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes registered under a canonical name plus aliases (names of the anchors)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[type[T]], type[T]]:
        def add(cls: type[T]) -> type[T]:
            for key in (name, *aliases):
                if key in self._aliases:
                    raise ValueError(f"{self.kind} name {key!r} is already registered")
                self._aliases[key] = name
            self._classes[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls
        return add

    def get(self, name: str) -> type[T]:
        key = name.strip().lower().replace("_", "-")
        canonical = self._aliases.get(name) or self._aliases.get(key)
        if canonical is None:
            known = sorted(self._aliases)
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})")
        return self._classes[canonical]

    def names(self) -> list[str]:
        """Canonical names, in registration order."""
        return list(self._classes)

    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)
