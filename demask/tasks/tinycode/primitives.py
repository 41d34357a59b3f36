"""A TinyCode primitive: one step of a task, as one docstring sentence and one line of code.

A primitive knows three renderings of the same step, which must agree:
- ``phrases``: docstring sentences (wording variants) with ``{slot}`` placeholders;
- ``code``: the one line of the function body (``{slot}`` placeholders, already indented
  by the generator);
- ``fn``: the reference implementation, a pure Python function ``fn(value, *consts)``.

A *transform* maps the function's argument to a new value of the same type (``xs = ...``);
a *terminal* is the last step and returns (``return ...``). Constants are drawn per slot
from a ``ConstKind`` (a factor, a threshold, a char ...), so a composition of primitive names
abstracts the constants away. Not covered: primitives with more than one line of code, or
that change the argument's type before the terminal step.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ConstKind(str, enum.Enum):
    """How a constant slot is drawn (ranges come from the TinyCodeConfig)."""

    FACTOR = "factor"  # multiplier / divisor / modulus: never 0 or 1 (config.factor_range)
    ADDEND = "addend"  # a positive amount to add or subtract (config.addend_range)
    THRESHOLD = "threshold"  # a comparison bound (config.threshold_range)
    COUNT = "count"  # how many items to keep or drop (config.count_range)
    CHAR = "char"  # one character (config.const_chars)


@dataclass(frozen=True)
class ConstRanges:
    """The ranges constants are drawn from, inclusive (filled in from TinyCodeConfig)."""

    factor: tuple[int, int]
    addend: tuple[int, int]
    threshold: tuple[int, int]
    count: tuple[int, int]
    chars: str

    def draw(self, kind: ConstKind, rng: random.Random) -> int | str:
        if kind is ConstKind.CHAR:
            return rng.choice(self.chars)
        lo, hi = getattr(self, kind.value)
        return rng.randint(lo, hi)

    def neighbours(self, kind: ConstKind, value: int | str) -> list[int | str]:
        """Values a typo would give (for mutation testing): +-1 for numbers, other chars.

        A factor's neighbours stay >= 1 and a count's >= 0, so a mutant never divides by 0.
        """
        if kind is ConstKind.CHAR:
            assert isinstance(value, str)  # draw() gives CHAR slots a str, the rest an int
            i = self.chars.index(value)
            near = (self.chars[(i + 1) % len(self.chars)], self.chars[(i - 1) % len(self.chars)])
            return [c for c in dict.fromkeys(near) if c != value]
        assert isinstance(value, int)
        floor = {ConstKind.FACTOR: 1, ConstKind.COUNT: 0}.get(kind)
        return [v for v in (value - 1, value + 1) if floor is None or v >= floor]


@dataclass(frozen=True)
class Primitive:
    """One step. ``name`` is qualified by family ("list.keep_gt"); ``slug`` is used in names.

    slots: (placeholder, kind) pairs in the order ``fn`` takes them.
    must_differ: pairs of slot indices whose values must differ (e.g. replace 'a' with 'b').
    ordered: pairs (i, j) with const[i] < const[j] (e.g. a clamp's bounds).
    aliases: (slot, value, primitive) triples: with this constant the step *is* that other
        primitive (which takes no constants) under another name: ``keep_div`` with k=2 is
        ``keep_even``, code and all. TinyCode v1 draws such constants; v2 never does
        (``draw_consts(..., avoid_aliases=True)``), so a composition's name tuple says
        what it computes and a held-out composition cannot be a trained one in disguise.
    """

    name: str
    slug: str
    terminal: bool
    code: str
    phrases: tuple[str, ...]
    fn: Callable[..., Any]
    slots: tuple[tuple[str, ConstKind], ...] = ()
    must_differ: tuple[tuple[int, int], ...] = ()
    ordered: tuple[tuple[int, int], ...] = ()
    aliases: tuple[tuple[int, int | str, str], ...] = ()

    def __post_init__(self) -> None:
        for text in (self.code, *self.phrases):
            for key, _ in self.slots:
                if "{" + key + "}" not in text:
                    raise ValueError(
                        f"primitive {self.name}: {text!r} lacks slot {{{key}}}; "
                        "every constant must appear in the code and every phrase"
                    )
        if self.terminal != self.code.startswith("return "):
            raise ValueError(
                f"primitive {self.name}: terminal={self.terminal} but code "
                f"{self.code!r}; terminals (and only they) start with 'return '"
            )

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    def draw_consts(self, ranges: ConstRanges, rng: random.Random, avoid_aliases: bool = False) -> tuple:
        """Constants for one instance, honouring ``must_differ`` and ``ordered`` (and, with
        ``avoid_aliases``, never a constant that makes the step another primitive)."""
        for _ in range(100):
            consts = tuple(ranges.draw(kind, rng) for _, kind in self.slots)
            if self.valid(consts) and not (avoid_aliases and self.alias_of(consts)):
                return consts
        raise ValueError(
            f"primitive {self.name}: no valid constants in 100 draws from {ranges}; widen the config ranges"
        )

    def alias_of(self, consts: tuple) -> str | None:
        """The primitive this step is with these constants (``keep_div`` with k=2:
        ``list.keep_even``), or None."""
        for slot, value, other in self.aliases:
            if consts[slot] == value:
                return other
        return None

    def valid(self, consts: tuple) -> bool:
        return all(consts[i] != consts[j] for i, j in self.must_differ) and all(
            consts[i] < consts[j] for i, j in self.ordered
        )

    def _fill(self, template: str, consts: tuple) -> str:
        return template.format(**{key: value for (key, _), value in zip(self.slots, consts)})

    def render_code(self, consts: tuple) -> str:
        return self._fill(self.code, consts)

    def render_phrase(self, consts: tuple, variant: int) -> str:
        return self._fill(self.phrases[variant % len(self.phrases)], consts)

    def apply(self, value: Any, consts: tuple) -> Any:
        return self.fn(value, *consts)
