"""Benchmarks by name: ``load_tasks("humaneval")``, ``load_tasks("mbpp:test")``, or a path.

A benchmark is a name, a version (bumped whenever the prompt format, the tests or the way
a program is assembled change, so that two numbers with the same version are comparable),
the splits it has and a loader. Benchmarks live in :data:`BENCHMARKS`, the project's one
registry (demask.registry); the built-in ones are lazy entries, imported on first use
(importing this module imports none of them). Other code adds its own with
:func:`register_benchmark`, or ``BENCHMARKS.register_lazy(name, "package.module:BENCH")``.

A spec is ``NAME`` or ``NAME:SPLIT`` (names are case-insensitive); anything that looks like a
file (has a path separator, ends in .jsonl/.jsonl.gz/.json, or is an existing file) is read as
a HumanEval-shape JSONL file instead.

Not covered: versioned downloads of several data revisions side by side; a benchmark pins one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demask.registry import Registry
from demask.tasks.base import Task

_FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


@dataclass(frozen=True)
class Benchmark:
    """A named set of tasks.

    loader: ``loader(split, **kw) -> list[Task]``; ``split`` is one of ``splits`` (or None
        when the benchmark has no splits).
    splits: the split names it accepts; empty if it has none.
    default_split: the split ``NAME`` alone means.
    """

    name: str
    version: str
    loader: Callable[..., list[Task]] = field(repr=False)
    splits: tuple[str, ...] = ()
    default_split: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name or os.sep in self.name:
            raise ValueError(
                f"benchmark name {self.name!r} must be non-empty and contain no ':' or "
                f"{os.sep!r}; pick a plain name such as 'mbpp'"
            )
        if self.default_split is not None and self.default_split not in self.splits:
            raise ValueError(
                f"benchmark {self.name!r}: default_split {self.default_split!r} is not "
                f"one of its splits {self.splits}; add it to splits or change it"
            )

    def load(self, split: str | None = None, **kw: Any) -> list[Task]:
        split = split if split is not None else self.default_split
        if self.splits and split not in self.splits:
            raise ValueError(
                f"benchmark {self.name!r} has no split {split!r}; "
                f"choose one of {', '.join(self.splits)} (e.g. '{self.name}:{self.splits[0]}')"
            )
        if not self.splits and split is not None:
            raise ValueError(f"benchmark {self.name!r} has no splits; use '{self.name}' without ':{split}'")
        return self.loader(split, **kw)


BUILTINS = {
    "humaneval": "demask.tasks.humaneval:HUMANEVAL",
    "humaneval-asserts": "demask.tasks.humaneval:HUMANEVAL_ASSERTS",
    "mbpp": "demask.tasks.mbpp:MBPP",
    "mbpp-sanitized": "demask.tasks.mbpp:MBPP_SANITIZED",
    "tinycode": "demask.tasks.tinycode.benchmark:TINYCODE",
    "tinycode-v1": "demask.tasks.tinycode.benchmark:TINYCODE_V1",
}


def new_registry() -> Registry[Benchmark]:
    """A benchmark registry holding the built-in benchmarks (as lazy entries)."""
    registry: Registry[Benchmark] = Registry("benchmark", base=Benchmark, references=False)
    for name, target in BUILTINS.items():
        registry.register_lazy(name, target)
    return registry


BENCHMARKS = new_registry()


def register_benchmark(benchmark: Benchmark, *, replace: bool = False) -> Benchmark:
    """Add a benchmark; a second one with the same name is an error unless ``replace``."""
    return BENCHMARKS.add(benchmark.name, benchmark, replace=replace)


def benchmark_names() -> list[str]:
    return sorted(BENCHMARKS.names())


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (any case); an unknown name gets the closest known name."""
    try:
        return BENCHMARKS.get(name)
    except ValueError as exc:
        raise ValueError(f"{exc}; or give the path of a HumanEval-shape .jsonl file") from None


def looks_like_path(spec: str | os.PathLike) -> bool:
    if isinstance(spec, os.PathLike):
        return True
    return os.sep in spec or "/" in spec or spec.lower().endswith(_FILE_SUFFIXES) or Path(spec).is_file()


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"mbpp:test"`` -> ``("mbpp", "test")``; ``"humaneval"`` -> ``("humaneval", None)``."""
    name, sep, split = spec.partition(":")
    if sep and not split:
        raise ValueError(f"benchmark spec {spec!r} ends with ':'; write NAME or NAME:SPLIT")
    return name, (split if sep else None)


def load_tasks(name_or_path: str | os.PathLike, **kw: Any) -> list[Task]:
    """Tasks of a registered benchmark (``NAME[:SPLIT]``) or of a HumanEval-shape JSONL file.

    Keyword arguments go to the benchmark's loader (e.g. ``path=`` for MBPP's data file) or,
    for a file, to :func:`demask.tasks.jsonl.read_tasks_jsonl`.
    """
    if looks_like_path(name_or_path):
        from demask.tasks.jsonl import read_tasks_jsonl

        return read_tasks_jsonl(name_or_path, **kw)
    name, split = parse_spec(str(name_or_path))
    return get_benchmark(name).load(split, **kw)
