"""TinyCode in the benchmark registry: ``load_tasks("tinycode:test")``.

The registry (demask.tasks.registry) loads ``TINYCODE`` from here on first use. Keyword
arguments of ``load_tasks`` are TinyCodeConfig fields (``load_tasks("tinycode:train",
n_train=2000, seed=1)``); a build is cached per config, so loading both splits of one config
generates once. ``tinycode:fresh`` (option ``n_fresh``, default 2000) holds tasks of
compositions that are in neither split, for post-training. Not covered: evicting the cache
(at most a few configs are built per run).
"""

from __future__ import annotations

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


def _load(split: str | None, **options: Any) -> list[Task]:
    n_fresh = options.pop("n_fresh", 2000)
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    config = TinyCodeConfig(**fields)
    if split == "fresh":
        return list(cached_fresh(config, int(n_fresh)))
    splits = cached_build(config)
    return list(splits.train if split == "train" else splits.test)


TINYCODE = Benchmark(
    "tinycode",
    TINYCODE_VERSION,
    _load,
    splits=("train", "test", "fresh"),
    default_split="test",
    description="TinyCode: seeded compositional Python function tasks; the test "
    "split holds compositions never seen in training; fresh: compositions in "
    "neither, for post-training",
)
BENCHMARKS = (TINYCODE,)
