"""check_samples() on hand-made sample files."""

import json

import pytest
from test_evaluation_fake import best_sandbox

from demask.evaluation import check_samples
from demask.tasks.base import Task

ADD = Task(
    "H/0",
    "def add(a, b):\n",
    ("assert add(1, 2) == 3", "assert add(2, 2) == 4"),
    "add",
    canonical_solution="    return a + b\n",
)
# MBPP style: whole-program completions; the setup is in front of each test
MUL = Task(
    "M/1",
    '"""\nmultiply\n"""\n',
    ("import math\nassert mul(2, 3) == 6", "assert mul(0, 3) == 0"),
    "mul",
    canonical_solution="def mul(a, b):\n    return a * b\n",
    prefix_prompt=False,
)
TASKS = [ADD, MUL]


@pytest.fixture(scope="module")
def sandbox():
    with best_sandbox(workers=2, timeout_s=5.0) as sb:
        yield sb


def write(path, records, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def test_mixed_samples(tmp_path, sandbox):
    path = write(
        tmp_path / "s.jsonl",
        [
            {"task_id": "H/0", "completion": "    return a + b\n"},  # correct
            {"task_id": "H/0", "completion": "    return 3\n"},  # passes 1 of 2
            {"task_id": "H/0", "completion": "    return (\n"},  # syntax error
            {"task_id": "H/0", "solution": "def add(a, b):\n    return b + a\n"},  # EvalPlus: whole program
            {"task_id": "M/1", "completion": "def mul(a, b):\n    return a * b\n"},  # whole program
            {"task_id": "M/1", "solution": "def mul(a, b):\n    return a + b\n"},  # wrong
            # solution wins over completion, as in EvalPlus
            {
                "task_id": "M/1",
                "completion": "def mul(a, b):\n    return a * b\n",
                "solution": "def mul(a, b):\n    return 0\n",
            },
        ],
    )
    res = check_samples(TASKS, path, sandbox, ks=(1, 2, 3))
    got = [(s["task_id"], s["sample_index"], s["passed"], s["verdict"], s["pass_rate"]) for s in res["samples"]]
    assert got == [
        ("H/0", 0, True, "passed", 1.0),
        ("H/0", 1, False, "failed", 0.5),
        ("H/0", 2, False, "error", 0.0),
        ("H/0", 3, True, "passed", 1.0),
        ("M/1", 0, True, "passed", 1.0),
        ("M/1", 1, False, "failed", 0.0),
        ("M/1", 2, False, "failed", 0.5),
    ]
    assert res["samples"][2]["error"].startswith("SyntaxError")
    assert res["tasks"]["H/0"]["n"] == 4 and res["tasks"]["H/0"]["c"] == 2
    assert res["tasks"]["M/1"]["n"] == 3 and res["tasks"]["M/1"]["c"] == 1
    # pass@1 = (2/4 + 1/3) / 2; pass@3: H/0 n - c = 2 < 3 -> 1; M/1 1 - C(2,3)/C(3,3) = 1
    assert res["pass_at_k"] == pytest.approx(
        {"pass@1": (0.5 + 1 / 3) / 2, "pass@2": (5 / 6 + 2 / 3) / 2, "pass@3": 1.0}
    )
    assert res["missing_tasks"] == [] and res["dropped_partial_last_line"] is False


def test_sample_indices_from_the_file(tmp_path, sandbox):
    path = write(
        tmp_path / "s.jsonl",
        [
            {"task_id": "H/0", "completion": "    return 0\n", "completion_id": 7},
            {"task_id": "H/0", "completion": "    return a + b\n", "sample_index": 2},
        ],
    )
    res = check_samples(TASKS, path, sandbox, only_sampled_tasks=True)
    assert [(s["sample_index"], s["passed"]) for s in res["samples"]] == [(2, True), (7, False)]
    assert res["num_tasks"] == 1 and res["pass_at_k"] == {"pass@1": 0.5}


def test_tasks_without_samples_block_pass_at_k(tmp_path, sandbox):
    path = write(tmp_path / "s.jsonl", [{"task_id": "H/0", "completion": "    return a + b\n"}])
    res = check_samples(TASKS, path, sandbox)
    assert res["missing_tasks"] == ["M/1"] and res["pass_at_k"] == {}


def test_partial_last_line_is_dropped(tmp_path, sandbox):
    path = write(
        tmp_path / "s.jsonl", [{"task_id": "H/0", "completion": "    return a + b\n"}], tail='{"task_id": "H/0", "comp'
    )
    res = check_samples(TASKS, path, sandbox, only_sampled_tasks=True)
    assert res["num_samples"] == 1 and res["dropped_partial_last_line"] is True


def test_unknown_task_suggests_a_close_one(tmp_path, sandbox):
    path = write(tmp_path / "s.jsonl", [{"task_id": "H/0", "completion": ""}, {"task_id": "H/O", "completion": ""}])
    with pytest.raises(ValueError, match=r"line 2: task_id 'H/O' is not among the 2 tasks; did you mean 'H/0'\?"):
        check_samples(TASKS, path, sandbox)


def test_record_without_code_names_its_line(tmp_path, sandbox):
    path = write(tmp_path / "s.jsonl", [{"task_id": "H/0", "completion": ""}, {"task_id": "M/1", "text": "x"}])
    with pytest.raises(ValueError, match="line 2: has neither a 'completion' nor a 'solution'"):
        check_samples(TASKS, path, sandbox)


def test_repeated_sample_index_is_an_error(tmp_path, sandbox):
    path = write(
        tmp_path / "s.jsonl",
        [
            {"task_id": "H/0", "completion": "", "sample_index": 0},
            {"task_id": "H/0", "completion": "", "sample_index": 0},
        ],
    )
    with pytest.raises(ValueError, match="line 2: sample 0 of 'H/0' repeats line 1"):
        check_samples(TASKS, path, sandbox)


def test_missing_samples_file(tmp_path, sandbox):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        check_samples(TASKS, tmp_path / "nope.jsonl", sandbox)


@pytest.mark.parametrize("tail", ["", "\n", '{"task_id": "H/0", "comp'])
def test_a_file_without_samples_is_an_error(tmp_path, sandbox, tail):
    path = write(tmp_path / "s.jsonl", [], tail=tail)
    with pytest.raises(ValueError, match=r"no samples in .*s\.jsonl"):
        check_samples(TASKS, path, sandbox)


def test_excluded_tasks_are_left_out(tmp_path, sandbox):
    path = write(
        tmp_path / "s.jsonl",
        [{"task_id": "H/0", "completion": "    return a + b\n"}, {"task_id": "M/1", "completion": "x = ("}],
    )
    res = check_samples(TASKS, path, sandbox, exclude_tasks=["M/1"])
    assert [s["task_id"] for s in res["samples"]] == ["H/0"]
    assert res["num_tasks"] == 1 and res["excluded_tasks"] == ["M/1"] and res["pass_at_k"] == {"pass@1": 1.0}
    with pytest.raises(ValueError, match="no samples left .* all 2 belong to the excluded tasks"):
        check_samples(TASKS, path, sandbox, exclude_tasks=["M/1", "H/0"])
