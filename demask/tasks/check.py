"""Find broken tasks before any sampling: ``check_tasks(tasks, sandbox)``.

A task whose test does not compile, whose entry point nothing defines, or whose canonical
solution fails its own tests is scored as the model's failure on every sample; this finds
such tasks without a model. Per task:

1. ``no-tests``: the task has at least one test (a task without tests passes any program
   that runs).
2. ``test-syntax``: every test compiles on its own, as the sandbox compiles it.
3. ``program-syntax``: with a canonical solution, the program :meth:`Task.program` assembles
   from it (setup, prompt if ``prefix_prompt``, solution) compiles; without one, the setup.
4. ``entry-point``: the entry point is defined. With a canonical solution: a top-level
   ``def``, ``class``, assignment or import of that name in the program (also inside a
   top-level ``if``/``try``/``with``). Without one, a prefix prompt (HumanEval: it ends
   inside the function) must hold ``def NAME(`` or ``class NAME``, and a whole-program
   prompt (MBPP: the model writes the function) must at least name it.
5. ``reference-fails``: with a canonical solution and a sandbox, the canonical program
   passes every test. Only tasks without a problem from 1-4 are run, in one batch; those
   that time out get a second run with a generous limit (see :func:`check_tasks`).

Not covered: tests that pass whatever the completion is (an assert that checks nothing).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from demask.tasks.base import Task

PROBLEM_KINDS = ("no-tests", "test-syntax", "program-syntax", "entry-point", "reference-fails")
"""The kinds of :class:`TaskProblem`, in the order they are checked (module docstring)."""

_ERROR_CHARS = 300


@dataclass(frozen=True)
class TaskProblem:
    """One thing wrong with a task: what it is and how to fix it.

    kind: one of :data:`PROBLEM_KINDS`.
    what: what is wrong, naming the part of the task (test number, entry point ...).
    fix: what to change in the task (file) so that the problem goes away.
    """

    task_id: str
    kind: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.task_id}: {self.what}; fix: {self.fix}"


def _compile_error(source: str, filename: str) -> str | None:
    """None if ``source`` compiles as a module, else a one-line description of why not."""
    try:
        compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" if exc.lineno else "somewhere"
        text = (exc.text or "").strip()
        shown = f": {text[:80]!r}" if text else ""
        return f"{type(exc).__name__}: {exc.msg} ({where}{shown})"
    except (ValueError, OverflowError, RecursionError, MemoryError) as exc:  # e.g. a NUL byte
        return f"{type(exc).__name__}: {exc}"
    return None


def _targets(node: ast.expr) -> Iterator[str]:
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, (ast.Tuple, ast.List)):
        for element in node.elts:
            yield from _targets(element)
    elif isinstance(node, ast.Starred):
        yield from _targets(node.value)


def top_level_names(body: Sequence[ast.stmt]) -> Iterator[str]:
    """Names bound at module level by ``body``: def, class, assignment, import, also
    inside top-level if/try/with/for/while blocks (never inside a def or class)."""
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield stmt.name
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                yield from _targets(target)
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
            yield from _targets(stmt.target)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                yield alias.asname or alias.name.split(".")[0]
        elif isinstance(stmt, (ast.If, ast.For, ast.AsyncFor, ast.While)):
            yield from top_level_names(stmt.body)
            yield from top_level_names(stmt.orelse)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            yield from top_level_names(stmt.body)
        elif isinstance(stmt, ast.Try):
            yield from top_level_names(stmt.body)
            for handler in stmt.handlers:
                yield from top_level_names(handler.body)
            yield from top_level_names(stmt.orelse)
            yield from top_level_names(stmt.finalbody)


def _entry_point_problem(task: Task, code: str | None) -> str | None:
    """What is wrong with the entry point (None: nothing); ``code`` is the compiled
    canonical program, or None when the task has no canonical solution."""
    name = task.entry_point
    if not name.strip():
        return "entry_point is empty"
    if not name.isidentifier():
        return f"entry_point {name!r} is not a Python name"
    if code is not None:
        defined = sorted(set(top_level_names(ast.parse(code).body)))
        if name in defined:
            return None
        from demask.registry import did_you_mean

        listed = ", ".join(defined[:8]) + (", ..." if len(defined) > 8 else "") if defined else "nothing"
        hint = did_you_mean(name, defined)
        return (
            f"entry_point {name!r} is not defined at top level by the "
            f"{'prompt + ' if task.prefix_prompt else ''}canonical solution (it defines {listed}{hint})"
        )
    if task.prefix_prompt:
        if re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", task.prompt, re.MULTILINE):
            return None
        if re.search(rf"^[ \t]*class[ \t]+{re.escape(name)}\b", task.prompt, re.MULTILINE):
            return None
        return f"the prompt never defines entry_point {name!r} (no 'def {name}(' in it)"
    if re.search(rf"\b{re.escape(name)}\b", task.prompt):
        return None
    return f"the prompt never names entry_point {name!r}, so a model cannot know what to call its function"


def _static_problems(task: Task) -> list[TaskProblem]:
    problems: list[TaskProblem] = []

    def add(kind: str, what: str, fix: str) -> None:
        problems.append(TaskProblem(task.task_id, kind, what, fix))

    if not task.tests:
        add("no-tests", "the task has no tests (any program that runs would pass)", "give the task its tests")
    for i, test in enumerate(task.tests):
        error = _compile_error(test, f"<test {i + 1}>")
        if error is not None:
            which = f"test {i + 1} of {len(task.tests)}" if len(task.tests) > 1 else "the test"
            add("test-syntax", f"{which} does not compile: {error}", "correct the test code in the tasks file")
    code: str | None = None
    if task.canonical_solution.strip():
        code = task.reference_program().code
        error = _compile_error(code, "<program>")
        if error is not None:
            parts = ("setup + " if task.setup else "") + ("prompt + " if task.prefix_prompt else "")
            add(
                "program-syntax",
                f"the {parts}canonical solution does not compile: {error}",
                "correct the canonical solution (or the prompt / setup it is joined to)",
            )
            return problems  # the entry point cannot be looked up in code that does not parse
    elif task.setup:
        error = _compile_error(task.setup, "<setup>")
        if error is not None:
            add("program-syntax", f"the setup does not compile: {error}", "correct the task's setup code")
    what = _entry_point_problem(task, code)
    if what is not None:
        add("entry-point", what, "set entry_point to the name of the function the tests call")
    return problems


def _describe_failure(result: Any) -> str:
    verdict = str(result.verdict)
    error = result.error or ""
    if len(error) > _ERROR_CHARS:
        error = error[:_ERROR_CHARS] + "..."
    passed = f"{result.tests_passed} of {result.tests_total} tests passed"
    return f"the canonical solution does not pass its tests ({verdict}, {passed}{': ' + error if error else ''})"


def _run_references(sandbox: Any, tasks: Sequence[Task], timeout_s: float | None) -> list[Any]:
    """The sandbox's results for the tasks' canonical programs, in order (one batch)."""
    results: dict[int, Any] = dict(sandbox.run_many([t.reference_program(timeout_s) for t in tasks]))
    missing = [t.task_id for i, t in enumerate(tasks) if i not in results]
    if missing:
        raise RuntimeError(f"the sandbox returned no result for the canonical solution of {missing[0]}")
    return [results[i] for i in range(len(tasks))]


def check_tasks(
    tasks: Sequence[Task], sandbox: Any = None, timeout_s: float | None = None, slow_timeout_s: float = 60.0
) -> list[TaskProblem]:
    """The problems of ``tasks``, in task order (see the module docstring); [] if none.

    sandbox: anything with ``run_many(programs) -> iterator of (index, ExecutionResult)``
        (a :class:`demask.execution.Sandbox`); None skips running the canonical solutions.
    timeout_s: wall-clock limit per canonical program (None: the sandbox's default).
    slow_timeout_s: a canonical program that times out is run again, alone in a second
        batch, with this limit, and is a problem only if it fails then too: a busy machine
        slows a heavy reference past a tight limit (MBPP's Mbpp/123 needs about 2 s of an
        idle core), which says nothing against the task.
    """
    static = [_static_problems(t) for t in tasks]
    ran: dict[int, TaskProblem] = {}
    if sandbox is not None:
        runnable = [i for i, t in enumerate(tasks) if t.canonical_solution.strip() and not static[i]]
        results = dict(zip(runnable, _run_references(sandbox, [tasks[i] for i in runnable], timeout_s)))
        slow = [i for i in runnable if str(results[i].verdict) == "timeout"]
        if slow and (timeout_s is None or slow_timeout_s > timeout_s):
            results.update(zip(slow, _run_references(sandbox, [tasks[i] for i in slow], slow_timeout_s)))
        for i in runnable:
            result = results[i]
            if not result.passed:
                fix = (
                    "make the tests or the canonical solution faster"
                    if str(result.verdict) == "timeout"
                    else "correct the test, the canonical solution or the entry_point"
                )
                ran[i] = TaskProblem(tasks[i].task_id, "reference-fails", _describe_failure(result), fix)
    problems: list[TaskProblem] = []
    for i in range(len(tasks)):
        problems += static[i]
        if i in ran:
            problems.append(ran[i])
    return problems


def describe_problems(problems: Sequence[TaskProblem], num_tasks: int, shown: int = 5) -> str:
    """A report of ``problems`` for a person: the count of broken tasks and the first
    ``shown`` problems, one per line."""
    broken = list(dict.fromkeys(p.task_id for p in problems))
    lines = [f"{len(broken)} of {num_tasks} tasks are broken ({len(problems)} problem(s)):"]
    lines += [f"  {p}" for p in problems[:shown]]
    if len(problems) > shown:
        lines.append(f"  ... and {len(problems) - shown} more")
    return "\n".join(lines)
