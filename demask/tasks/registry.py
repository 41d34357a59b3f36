"""Benchmarks by name: ``load_tasks("humaneval")``, ``load_tasks("mbpp:test")``, or a path.

A benchmark is a name, a version (bumped whenever the prompt format, the tests or the way
a program is assembled change, so that two numbers with the same version are comparable),
the splits it has and a loader. Built-in benchmarks live in modules that expose a tuple
``BENCHMARKS``; they are collected on first use (importing this module registers nothing).
Other code adds its own with :func:`register_benchmark`.

A spec is ``NAME`` or ``NAME:SPLIT`` (names are case-insensitive); anything that looks like a
file (has a path separator, ends in .jsonl/.jsonl.gz/.json, or is an existing file) is read as
a HumanEval-shape JSONL file instead.

Not covered: versioned downloads of several data revisions side by side; a benchmark pins one.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demask.tasks.base import Task

# Modules that may define ``BENCHMARKS``; a module that has not landed yet is skipped.
BUILTIN_MODULES = ("demask.tasks.humaneval", "demask.tasks.mbpp", "demask.tasks.tinycode")

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
            raise ValueError(f"benchmark name {self.name!r} must be non-empty and contain no ':' or "
                             f"{os.sep!r}; pick a plain name such as 'mbpp'")
        if self.default_split is not None and self.default_split not in self.splits:
            raise ValueError(f"benchmark {self.name!r}: default_split {self.default_split!r} is not "
                             f"one of its splits {self.splits}; add it to splits or change it")

    def load(self, split: str | None = None, **kw: Any) -> list[Task]:
        split = split if split is not None else self.default_split
        if self.splits and split not in self.splits:
            raise ValueError(f"benchmark {self.name!r} has no split {split!r}; "
                             f"choose one of {', '.join(self.splits)} (e.g. '{self.name}:{self.splits[0]}')")
        if not self.splits and split is not None:
            raise ValueError(f"benchmark {self.name!r} has no splits; use '{self.name}' without ':{split}'")
        return self.loader(split, **kw)


_REGISTRY: dict[str, Benchmark] = {}
_builtins_loaded = False


def register_benchmark(benchmark: Benchmark, *, replace: bool = False) -> Benchmark:
    """Add a benchmark; a second one with the same name is an error unless ``replace``."""
    old = _REGISTRY.get(benchmark.name.lower())
    if old is not None and old is not benchmark and not replace:
        raise ValueError(f"a benchmark named {benchmark.name!r} is already registered "
                         f"(version {old.version}); pass replace=True to override it")
    _REGISTRY[benchmark.name.lower()] = benchmark
    return benchmark


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module_name in BUILTIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # not landed yet, or an optional dependency missing
            if exc.name != module_name:
                raise
            continue
        for bench in getattr(module, "BENCHMARKS", ()):
            _REGISTRY.setdefault(bench.name.lower(), bench)


def benchmark_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (any case); an unknown name gets the closest known names."""
    _load_builtins()
    if name.lower() in _REGISTRY:
        return _REGISTRY[name.lower()]
    known = sorted(_REGISTRY)
    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise ValueError(f"unknown benchmark {name!r}; {hint}known benchmarks: {', '.join(known) or 'none'}; "
                     f"or give the path of a HumanEval-shape .jsonl file")


def looks_like_path(spec: str | os.PathLike) -> bool:
    if isinstance(spec, os.PathLike):
        return True
    return (os.sep in spec or "/" in spec or spec.lower().endswith(_FILE_SUFFIXES)
            or Path(spec).is_file())


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
