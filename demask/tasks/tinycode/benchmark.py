"""TinyCode in the benchmark registry: ``load_tasks("tinycode:test")``.

The registry (demask.tasks.registry) loads ``TINYCODE`` from here on first use. Keyword
arguments of ``load_tasks`` are TinyCodeConfig fields (``load_tasks("tinycode:train",
n_train=2000, seed=1)``); a build is cached per config.

Splits: ``train``; ``validation`` (v2: compositions of its own, for every choice of settings);
``test`` (held-out compositions, for final reports only); ``fresh`` (option ``n_fresh``,
default 2000: compositions in none of the three, for post-training). The held-out splits do
not depend on ``n_train``, so they are loaded from a build without training tasks (a few
seconds instead of ~10 s).

Version: ``tinycode`` generates v2 unless told ``version="v1"``
(``load_tasks("tinycode:test", version="v1")``); ``TINYCODE_V1`` (registered as
``tinycode-v1``) is v1 under its own name, for old results and the models trained on it. v1
has no validation split. Not covered: evicting the cache (at most a few configs are built per
run).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from demask.tasks.base import Task
from demask.tasks.registry import Benchmark
from demask.tasks.tinycode.generator import (
    TINYCODE_VERSION,
    TinyCodeConfig,
    TinyCodeSplits,
    build_fresh,
    build_tinycode,
)


@functools.lru_cache(maxsize=4)
def cached_build(config: TinyCodeConfig) -> TinyCodeSplits:
    """build_tinycode, memoised on the (frozen, hashable) config."""
    return build_tinycode(config)


@functools.lru_cache(maxsize=4)
def cached_fresh(config: TinyCodeConfig, n_tasks: int) -> tuple[Task, ...]:
    """build_fresh, memoised on the config and the number of tasks."""
    return tuple(build_fresh(config, n_tasks))


def _config(options: dict[str, Any]) -> TinyCodeConfig:
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return TinyCodeConfig(**fields)


def _load(split: str | None, **options: Any) -> list[Task]:
    n_fresh = options.pop("n_fresh", 2000)
    config = _config(options)
    if split == "fresh":
        return list(cached_fresh(config, int(n_fresh)))
    name = split or "test"
    if name != "train":  # the held-out splits do not depend on n_train
        config = dataclasses.replace(config, n_train=0)
    return list(cached_build(config).split(name))


def _load_v1(split: str | None, **options: Any) -> list[Task]:
    version = options.pop("version", "v1")
    if version != "v1":
        raise ValueError(f"tinycode-v1 is TinyCode v1; version={version!r} is not (load it as 'tinycode')")
    return _load(split, version="v1", **options)


TINYCODE = Benchmark(
    "tinycode",
    TINYCODE_VERSION,
    _load,
    splits=("train", "validation", "test", "fresh"),
    default_split="test",
    description="TinyCode: seeded compositional Python function tasks; validation and test "
    "hold compositions never seen in training (choose settings on validation, report test); "
    "fresh: compositions in none of them, for post-training; option version='v1' for v1",
)
TINYCODE_V1 = Benchmark(
    "tinycode-v1",
    "v1",
    _load_v1,
    splits=("train", "test", "fresh"),
    default_split="test",
    description="TinyCode v1 as first released (held-out split with aliasing leaks, no "
    "validation split): for old results and the models trained on it",
)
BENCHMARKS = (TINYCODE, TINYCODE_V1)
