"""TinyCode: the procedural, seeded benchmark of short Python functions (see generator.py).

Version v2 (the default) has train, validation and test splits with no text or aliasing
leaks (leaks.py measures them); ``TinyCodeConfig(version="v1")`` rebuilds v1 bit for bit."""

from demask.tasks.tinycode.benchmark import BENCHMARKS, TINYCODE, TINYCODE_V1, cached_build
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
    SUPPORTED_VERSIONS,
    TINYCODE_VERSION,
    Composition,
    TinyCodeConfig,
    TinyCodeSplits,
    build_fresh,
    build_tinycode,
    instruction_lines,
    normalise_text,
    select_compositions,
    split_compositions,
)
from demask.tasks.tinycode.leaks import (
    BehaviouralAliases,
    TextLeaks,
    alias_leaks,
    behavioural_aliases,
    canonical_composition,
    probe_inputs,
    text_leaks,
)
from demask.tasks.tinycode.primitives import ConstKind, Primitive

__all__ = [
    "BENCHMARKS",
    "BENCHMARK_NAME",
    "FAMILIES",
    "PRIMITIVES",
    "SUPPORTED_VERSIONS",
    "TINYCODE",
    "TINYCODE_V1",
    "TINYCODE_VERSION",
    "BehaviouralAliases",
    "Composition",
    "ConstKind",
    "Family",
    "Primitive",
    "TextLeaks",
    "TinyCodeConfig",
    "TinyCodeSplits",
    "alias_leaks",
    "behavioural_aliases",
    "build_fresh",
    "build_tinycode",
    "cached_build",
    "canonical_composition",
    "check_function",
    "humaneval_row",
    "instruction_lines",
    "normalise_text",
    "probe_inputs",
    "select_compositions",
    "split_compositions",
    "text_leaks",
    "tinycode_corpus",
    "write_tasks_jsonl",
    "write_test_jsonl",
]
