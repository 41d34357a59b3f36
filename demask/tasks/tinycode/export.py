"""TinyCode as text: a corpus for tokenizer training, and HumanEval-shaped JSONL files.

The JSONL rows have HumanEval's keys (task_id, prompt, canonical_solution, test, entry_point)
and its convention: the program is ``prompt + completion + "\\n" + test + "\\n" +
f"check({entry_point})"``, where ``test`` defines ``check(candidate)`` holding the task's
asserts with the function name replaced by ``candidate``. Not covered: reading the files back
(the generic JSONL loader in demask.tasks does that).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from demask.tasks.base import Task
from demask.tasks.tinycode.generator import TinyCodeConfig, TinyCodeSplits, build_tinycode


def tinycode_corpus(splits: TinyCodeSplits, include_test: bool = False) -> list[str]:
    """Texts (prompt + canonical solution) to train a tokenizer on.

    Only the training split by default, so that nothing of the held-out tasks leaks into
    the model's inputs; the held-out tasks use the same primitives and words, so a byte-level
    BPE trained on this covers them as well.
    """
    tasks = splits.train + (splits.test if include_test else [])
    return [t.prompt + t.canonical_solution for t in tasks]


def check_function(task: Task) -> str:
    """HumanEval's ``def check(candidate):`` made of the task's asserts."""
    call = re.compile(rf"^assert {re.escape(task.entry_point)}\(")
    lines = []
    for test in task.tests:
        if not call.match(test):
            raise ValueError(
                f"{task.task_id}: test {test!r} does not start with "
                f"'assert {task.entry_point}(' and cannot be rewritten for check()"
            )
        lines.append("    " + call.sub("assert candidate(", test, count=1))
    return "def check(candidate):\n" + "\n".join(lines) + "\n"


def humaneval_row(task: Task) -> dict[str, str]:
    return {
        "task_id": task.task_id,
        "prompt": task.prompt,
        "canonical_solution": task.canonical_solution,
        "test": check_function(task),
        "entry_point": task.entry_point,
    }


def write_tasks_jsonl(path: str | Path, tasks: Iterable[Task]) -> int:
    """Write ``tasks`` as HumanEval-shaped JSONL; returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for task in tasks:
            fh.write(json.dumps(humaneval_row(task)) + "\n")
            n += 1
    return n


def write_test_jsonl(
    path: str | Path, config: TinyCodeConfig | None = None, splits: TinyCodeSplits | None = None
) -> int:
    """Write the held-out split (built from ``config``, or given) as HumanEval JSONL."""
    splits = splits or build_tinycode(config)
    return write_tasks_jsonl(path, splits.test)
