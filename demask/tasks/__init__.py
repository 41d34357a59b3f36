"""Tasks (prompt + tests + program assembly) and the benchmarks that provide them."""

from demask.tasks.base import Task
from demask.tasks.check import TaskProblem, check_tasks
from demask.tasks.jsonl import read_tasks_jsonl, write_tasks_jsonl
from demask.tasks.registry import (
    Benchmark,
    benchmark_names,
    get_benchmark,
    load_tasks,
    register_benchmark,
)

__all__ = [
    "Benchmark",
    "Task",
    "TaskProblem",
    "benchmark_names",
    "check_tasks",
    "get_benchmark",
    "load_tasks",
    "read_tasks_jsonl",
    "register_benchmark",
    "write_tasks_jsonl",
]
