"""TinyCode in the benchmark registry: ``load_tasks("tinycode:test")``.

The registry (demask.tasks.registry) collects ``BENCHMARKS`` from this package. Keyword
arguments of ``load_tasks`` are TinyCodeConfig fields (``load_tasks("tinycode:train",
n_train=2000, seed=1)``); a build is cached per config, so loading both splits of one config
generates once. Not covered: evicting the cache (at most a few configs are built per run).
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
    build_tinycode,
)


@functools.lru_cache(maxsize=4)
def cached_build(config: TinyCodeConfig) -> TinyCodeSplits:
    """build_tinycode, memoised on the (frozen, hashable) config."""
    return build_tinycode(config)


def _load(split: str | None, **options: Any) -> list[Task]:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    splits = cached_build(TinyCodeConfig(**fields))
    return list(splits.train if split == "train" else splits.test)


BENCHMARKS = (
    Benchmark("tinycode", TINYCODE_VERSION, _load, splits=("train", "test"), default_split="test",
              description="TinyCode: seeded compositional Python function tasks; the test "
                          "split holds compositions never seen in training"),
)
