import gzip
import json

import pytest

from demask.tasks.base import Task
from demask.tasks.jsonl import read_tasks_jsonl, split_check, task_from_record, write_tasks_jsonl

TEST = """

METADATA = {'k': 1}


def helper(x):
    return x * 2


def check(candidate):
    import math
    base = helper(2)
    assert candidate(1) == 2
    # a comment
    assert candidate(base) == 5
    for i in range(3):
        assert candidate(i) == i + 1
"""

RECORD = {
    "task_id": "T/0",
    "prompt": "def inc(x):\n",
    "canonical_solution": "    return x + 1\n",
    "test": TEST,
    "entry_point": "inc",
}


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def run(code: str, tests) -> list[str]:
    """Run a program the way the sandbox does (one namespace, tests after the code)."""
    ns: dict = {}
    exec(code, ns)
    out = []
    for t in tests:
        try:
            exec(t, ns)
            out.append("passed")
        except AssertionError:
            out.append("failed")
    return out


def test_whole_program_form_matches_human_eval_string():
    task = task_from_record(RECORD)
    completion = "    return x + 1\n"
    program = task.program(completion)
    human_eval = RECORD["prompt"] + completion + "\n" + TEST + "\n" + "check(inc)"
    assert program.code + "\n" + program.tests[0] == human_eval
    assert task.prefix_prompt and task.tests == (TEST + "\ncheck(inc)",)


def test_split_check_gives_one_test_per_assert_with_context():
    tests = split_check(TEST, "inc")
    assert len(tests) == 3
    for t in tests:
        assert "METADATA = {'k': 1}" in t and "def helper(x):" in t and t.endswith("check(inc)")
        assert "import math" in t and "base = helper(2)" in t
    assert "assert candidate(1) == 2" in tests[0] and "candidate(base)" not in tests[0]
    assert "assert candidate(base) == 5" in tests[1] and "candidate(1) == 2" not in tests[1]
    assert "for i in range(3):" in tests[2]
    # base = helper(2) = 4, so the middle assert checks inc(4) == 5
    assert run("def inc(x):\n    return x + 1\n", tests) == ["passed", "passed", "passed"]
    assert run("def inc(x):\n    return x + 2\n", tests) == ["failed", "failed", "failed"]
    assert run("def inc(x):\n    return 2 if x == 1 else x + 1\n", tests) == ["passed", "passed", "passed"]
    assert run("def inc(x):\n    return x + 1 if x < 3 else 0\n", tests) == ["passed", "failed", "passed"]


def test_split_check_errors():
    with pytest.raises(ValueError, match="expected one 'def check"):
        split_check("x = 1\n", "f")
    with pytest.raises(ValueError, match="no assert"):
        split_check("def check(candidate):\n    candidate()\n", "f")


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "sub" / "missing.jsonl"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        read_tasks_jsonl(missing)


def test_bad_line_names_the_line_number(tmp_path):
    path = write_lines(
        tmp_path / "t.jsonl", [json.dumps(RECORD), "", '{"task_id": "T/1", "prompt": ', json.dumps(RECORD)]
    )
    with pytest.raises(ValueError, match=r"t\.jsonl, line 3: not valid JSON"):
        read_tasks_jsonl(path)


def test_non_object_line_and_missing_keys(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", ["[1, 2]"])
    with pytest.raises(ValueError, match="line 1: expected a JSON object, got list"):
        read_tasks_jsonl(path)
    rec = dict(RECORD)
    del rec["entry_point"]
    path = write_lines(tmp_path / "u.jsonl", [json.dumps(RECORD).replace("T/0", "T/9"), json.dumps(rec)])
    with pytest.raises(ValueError, match="line 2: missing key.s. entry_point"):
        read_tasks_jsonl(path)


def test_duplicate_ids_and_empty_file(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [json.dumps(RECORD), json.dumps(RECORD)])
    with pytest.raises(ValueError, match="line 2: task_id 'T/0' already used on line 1"):
        read_tasks_jsonl(path)
    empty = write_lines(tmp_path / "e.jsonl", ["", "  "])
    with pytest.raises(ValueError, match="holds no tasks"):
        read_tasks_jsonl(empty)


def test_gzip_file(tmp_path):
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(RECORD) + "\n")
    (task,) = read_tasks_jsonl(path, separate_asserts=True)
    assert len(task.tests) == 3 and task.canonical_solution == RECORD["canonical_solution"]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_write_then_read_round_trip(tmp_path, suffix):
    tasks = [
        task_from_record(RECORD),
        task_from_record(RECORD | {"task_id": "T/1"}, separate_asserts=True),
        Task(
            "tiny/0",
            '"""add two numbers"""\n',
            ("assert add(1, 2) == 3", "assert add(-1, 1) == 0"),
            "add",
            canonical_solution="def add(a, b):\n    return a + b\n",
            prefix_prompt=False,
            setup="import math",
        ),
        Task("tiny/1", "def s():\n", ('assert s() == """a\nb"""',), "s", canonical_solution='    return "a\\nb"\n'),
    ]
    path = write_tasks_jsonl(tmp_path / ("out" + suffix), tasks)
    again = read_tasks_jsonl(path)
    assert again == tasks  # Task equality ignores meta


def test_written_test_field_runs_like_the_tasks_tests(tmp_path):
    """Tools that only know HumanEval keys build prompt + completion + test + check(entry)."""
    tasks = [
        Task(
            "tiny/0",
            "def add(a, b):\n",
            ("assert add(1, 2) == 3", "assert add(2, 2) == 4"),
            "add",
            canonical_solution="    return a + b\n",
        ),
        Task("tiny/1", "def s():\n", ('assert s() == """a\nb"""',), "s", canonical_solution='    return "a\\nb"\n'),
    ]
    path = write_tasks_jsonl(tmp_path / "out.jsonl", tasks)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["test"].startswith("def check(candidate):\n    assert add(1, 2) == 3\n")
    assert records[1]["test"].startswith('assert s() == """a\nb"""')  # not indented: the string would change
    for rec, task in zip(records, tasks):
        good = rec["prompt"] + task.canonical_solution + "\n" + rec["test"] + "\n" + f"check({rec['entry_point']})"
        exec(good, {})
        bad = rec["prompt"] + "    return None\n" + "\n" + rec["test"] + "\n" + f"check({rec['entry_point']})"
        with pytest.raises(AssertionError):
            exec(bad, {})
