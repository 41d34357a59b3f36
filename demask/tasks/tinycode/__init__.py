"""TinyCode: the procedural, seeded benchmark of short Python functions (see generator.py)."""

from demask.tasks.tinycode.benchmark import BENCHMARKS, cached_build
from demask.tasks.tinycode.export import (
    check_function,
    humaneval_row,
    tinycode_corpus,
    write_tasks_jsonl,
    write_test_jsonl,
)
from demask.tasks.tinycode.families import FAMILIES, PRIMITIVES, Family
from demask.tasks.tinycode.generator import (
    BENCHMARK_NAME,
    TINYCODE_VERSION,
    Composition,
    TinyCodeConfig,
    TinyCodeSplits,
    build_fresh,
    build_tinycode,
    select_compositions,
    split_compositions,
)
from demask.tasks.tinycode.primitives import ConstKind, Primitive

__all__ = [
    "BENCHMARKS",
    "BENCHMARK_NAME",
    "FAMILIES",
    "PRIMITIVES",
    "TINYCODE_VERSION",
    "Composition",
    "ConstKind",
    "Family",
    "Primitive",
    "TinyCodeConfig",
    "TinyCodeSplits",
    "build_fresh",
    "build_tinycode",
    "cached_build",
    "check_function",
    "humaneval_row",
    "select_compositions",
    "split_compositions",
    "tinycode_corpus",
    "write_tasks_jsonl",
    "write_test_jsonl",
]
