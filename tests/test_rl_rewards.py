"""Rewards for coupled-GRPO: format levels, pass rates with timeouts, batch scoring."""

from __future__ import annotations

import doctest
import importlib

import pytest

from demask.execution import Sandbox, SandboxConfig
from demask.execution.types import ExecutionResult, Program, Verdict
from demask.tasks.base import Task
from demask.training.rl import rewards as R

P, F, T, E = Verdict.PASSED, Verdict.FAILED, Verdict.TIMEOUT, Verdict.ERROR


@pytest.mark.parametrize("module", ["rewards", "advantages", "grpo_loss", "estimators"])
def test_doctests(module):
    mod = importlib.import_module(f"demask.training.rl.{module}")
    failed, attempted = doctest.testmod(mod, verbose=False)
    assert failed == 0
    assert attempted >= (1 if module != "estimators" else 0)


# ---------------------------------------------------------------------- format, chat
@pytest.mark.parametrize(
    "text, expected",
    [
        ("```python\ndef f(x):\n    return x + 1\n```", 1.0),
        ("Here is the code:\n```python\nx = [i for i in range(3)]\n```\nIt builds a list.", 1.0),
        ("```py\nx = 1\n```\n", 1.0),
        ("```Python3\nx = 1\n```", 1.0),
        ("```python\n```", 1.0),  # an empty block parses (its tests will fail)
        ("```python\ndef f(x:\n    return x\n```", 0.5),  # syntax error
        ("```python\n    x = 1\n```", 0.5),  # unexpected indent
        ("```python\nx = '\0'\x00\n```", 0.5),  # NUL byte: not parseable
        ("def f(x):\n    return x\n", 0.0),  # no fence
        ("```python\nx = 1\n", 0.0),  # never closed
        ("```python\nx = 1\n```\nand\n```python\ny = 2\n```", 0.0),  # two blocks
        ("```python\nx = 1\n```\n```", 0.0),  # a stray third fence
        ("```javascript\nlet x = 1;\n```", 0.0),  # another language
        ("```\nx = 1\n```", 0.0),  # no language tag
        ("```python x = 1```", 0.0),  # no newline after the opening tag
        ("", 0.0),
    ],
)
def test_format_reward_chat(text, expected):
    assert R.format_reward_chat(text) == expected


def test_extract_code_block_returns_the_block_only():
    assert R.extract_code_block("intro\n```python\na = 1\nb = 2\n```\noutro") == "a = 1\nb = 2\n"
    assert R.extract_code_block("```python\n```") == ""
    assert R.extract_code_block("no code") is None


# ---------------------------------------------------------------------- format, body
PROMPT = 'def add_one(xs):\n    """Add one to every number."""\n'


@pytest.mark.parametrize(
    "body, expected",
    [
        ("    return [x + 1 for x in xs]\n", 1.0),
        ("    ys = [x + 1 for x in xs]\n    return ys\n", 1.0),
        ("", 1.0),  # the docstring is a body
        ("    return [x + 1 for x in xs\n", 0.0),  # unclosed bracket
        ("    return xs\n  return 1\n", 0.0),  # inconsistent dedent
    ],
)
def test_format_reward_body(body, expected):
    assert R.format_reward_body(body, PROMPT) == expected


# ---------------------------------------------------------------------- code reward
@pytest.mark.parametrize(
    "result, expected",
    [
        (ExecutionResult(P, 4, 4, [P, P, P, P]), 1.0),
        (ExecutionResult(F, 3, 4, [P, F, P, P]), 0.75),
        (ExecutionResult(T, 3, 4, [P, P, T, P]), 0.75),  # a timed-out test fails, others count
        (ExecutionResult(T, 1, 4, [P, T]), 0.25),  # the rest never ran: failed
        (ExecutionResult(E, 0, 3, [], error="NameError: x"), 0.0),  # the program died at load
        (ExecutionResult(T, 2, 4, []), 0.5),  # no per-test detail: fall back on the counts
        (ExecutionResult(Verdict.KILLED, 0, 2, [Verdict.KILLED, Verdict.KILLED]), 0.0),
        (ExecutionResult(P, 0, 0, []), 1.0),  # no tests: the program is the test
        (ExecutionResult(T, 0, 0, []), 0.0),
        (ExecutionResult(F, 3, 3, [P, F, P]), 2 / 3),  # per_test wins over inconsistent counts
    ],
)
def test_code_reward(result, expected):
    assert R.code_reward(result) == pytest.approx(expected, abs=1e-12)


def test_combine_weights():
    assert R.combine(1.0, 1.0) == 2.5
    assert R.combine(0.25, 1.0) == 1.0
    assert R.combine(0.0, 0.5) == 0.25
    assert R.combine(0.5, 1.0, w_code=1.0, w_format=0.0) == 0.5


# ---------------------------------------------------------------------- batch scoring
class FakeSandbox:
    """Scripted sandbox: the result of a program is looked up by a marker in its code."""

    def __init__(self, script: dict[str, ExecutionResult]):
        self.script = script
        self.calls: list[list[Program]] = []

    def run_many(self, programs):
        """Yields (index, result) in reverse order, as a real pool may finish out of order."""
        programs = list(programs)
        self.calls.append(programs)
        for index in reversed(range(len(programs))):
            hits = [res for marker, res in self.script.items() if marker in programs[index].code]
            assert len(hits) == 1, programs[index].code
            yield index, hits[0]


def _task(prefix_prompt=True, setup=""):
    return Task(
        task_id="t/0",
        prompt=PROMPT,
        tests=("assert add_one([1]) == [2]", "assert add_one([]) == []"),
        entry_point="add_one",
        prefix_prompt=prefix_prompt,
        setup=setup,
    )


def test_compute_rewards_body_runs_only_formatted_completions():
    task = _task()
    completions = [
        "    return [x + 1 for x in xs]  # ok\n",
        "    return [x + 2 for x in xs]  # half\n",
        "    return [x + 1 for x in xs\n",  # syntax error: never run
        "    while True: pass  # hang\n",
    ]
    sandbox = FakeSandbox(
        {
            "# ok": ExecutionResult(P, 2, 2, [P, P]),
            "# half": ExecutionResult(F, 1, 2, [F, P]),
            "# hang": ExecutionResult(T, 0, 2, [T]),
        }
    )
    out = R.compute_rewards(completions, [task] * 4, sandbox, timeout_s=3.0)
    assert [r.format for r in out] == [1.0, 1.0, 0.0, 1.0]
    assert [r.code for r in out] == [1.0, 0.5, 0.0, 0.0]
    assert [r.total for r in out] == [2.5, 1.5, 0.0, 0.5]
    assert out[2].result is None and out[0].result.verdict is P
    assert len(sandbox.calls) == 1 and len(sandbox.calls[0]) == 3  # one batch, 3 programs
    prog = sandbox.calls[0][0]
    assert prog.code == PROMPT + completions[0]
    assert prog.tests == task.tests and prog.timeout_s == 3.0


def test_compute_rewards_chat_extracts_the_block_and_honours_the_prefix():
    task = _task(prefix_prompt=True, setup="import math")
    prefix = "Here is the code to solve this problem:\n```python\n"
    completions = [
        "def add_one(xs):\n    return [x + 1 for x in xs]  # ok\n```\nDone.",
        "def add_one(xs:\n    return xs  # bad\n```",  # syntax error: 0.5, not run
        "def add_one(xs):\n    return xs  # no close",  # unterminated: 0.0
    ]
    sandbox = FakeSandbox({"# ok": ExecutionResult(P, 2, 2, [P, P])})
    reward = R.get_reward("code_format", style="chat", response_prefix=prefix)
    out = reward(completions, [task] * 3, sandbox)
    assert [r.format for r in out] == [1.0, 0.5, 0.0]
    assert [r.total for r in out] == [2.5, 0.25, 0.0]
    (prog,) = sandbox.calls[0]
    # the block alone (plus setup), not prompt + answer: the answer restates the function
    assert prog.code == "import math\ndef add_one(xs):\n    return [x + 1 for x in xs]  # ok\n"


def test_pass_rate_reward_runs_everything_and_format_reward_needs_no_sandbox():
    task = _task()
    completions = ["    return [x + 1 for x in xs  # broken\n", "    return xs  # id\n"]
    sandbox = FakeSandbox(
        {"# broken": ExecutionResult(E, 0, 2, [], error="SyntaxError"), "# id": ExecutionResult(F, 1, 2, [F, P])}
    )
    out = R.get_reward("pass_rate")(completions, [task] * 2, sandbox)
    assert [r.total for r in out] == [0.0, 0.5]
    assert len(sandbox.calls[0]) == 2
    fmt = R.get_reward("format")(completions, [task] * 2)  # no sandbox at all
    assert [r.total for r in fmt] == [0.0, 1.0]


def test_shuffled_reward_permutes_within_each_task_group_only():
    """The control reward: each group keeps its multiset of rewards, the permutation differs
    between batches and is the same for the same batch (resume)."""
    import dataclasses

    t0, t1 = _task(), dataclasses.replace(_task(), task_id="t/1")
    completions = [f"    return [x + {k} for x in xs]  # c{k}\n" for k in range(8)]
    script = {
        f"# c{k}": ExecutionResult(P if k % 4 == 0 else F, 2 - (k % 4 != 0), 2, [P, P] if k % 4 == 0 else [F, P])
        for k in range(8)
    }
    tasks = [t0] * 4 + [t1] * 4
    plain = [r.total for r in R.get_reward("code_format")(completions, tasks, FakeSandbox(script))]
    assert plain == [2.5, 1.5, 1.5, 1.5] * 2
    shuffled = R.get_reward("shuffled_code_format", seed=3)
    seen = set()
    for k in range(12):
        batch = completions[k % 8 :] + completions[: k % 8] if k < 8 else completions
        want = [r.total for r in R.get_reward("code_format")(batch, tasks, FakeSandbox(script))]
        got = [r.total for r in shuffled(batch, tasks, FakeSandbox(script))]
        assert sorted(got[:4]) == sorted(want[:4]) and sorted(got[4:]) == sorted(want[4:])
        assert got == [r.total for r in shuffled(batch, tasks, FakeSandbox(script))]
        seen.add(tuple(got))
    assert len(seen) > 1  # the 2.5 moves around between batches
    other_seed = R.get_reward("shuffled_code_format", seed=4)
    assert any(
        [r.total for r in other_seed(c, tasks, FakeSandbox(script))]
        != [r.total for r in shuffled(c, tasks, FakeSandbox(script))]
        for c in (completions, completions[::-1], completions[1:] + completions[:1])
    )


def test_compute_rewards_errors():
    task = _task()
    with pytest.raises(ValueError, match="2 completions but 1 tasks"):
        R.compute_rewards(["a", "b"], [task], None)
    with pytest.raises(ValueError, match="needs a sandbox"):
        R.compute_rewards(["    return xs\n"], [task], None)
    with pytest.raises(ValueError, match="did you mean 'code-format'"):
        R.get_reward("code_fromat")
    with pytest.raises(ValueError, match="style"):
        R.get_reward("code_format", style="markdown")
    with pytest.raises(ValueError, match="response_prefix"):
        R.get_reward("code_format", response_prefix="```python\n")


def test_real_sandbox_partial_pass_and_timeout():
    config = SandboxConfig(workers=2, timeout_s=1.0, max_restarts=2)
    task = Task(
        task_id="t/1",
        prompt="def f(x):\n",
        entry_point="f",
        tests=("assert f(1) == 2", "assert f(2) == 3", "assert f(0) == 1"),
    )
    completions = [
        "    return x + 1\n",  # all pass
        "    return 2 if x == 1 else x + 1 if x == 2 else 0\n",  # 2 of 3
        "    if x == 2:\n        while True: pass\n    return x + 1\n",  # 1st passes, 2nd hangs
        "    return (x\n",  # syntax error: not run
    ]
    with Sandbox(config) as sandbox:
        out = R.compute_rewards(completions, [task] * 4, sandbox)
    assert [r.format for r in out] == [1.0, 1.0, 1.0, 0.0]
    assert out[0].code == 1.0
    assert out[1].code == pytest.approx(2 / 3)
    # the hanging test fails; the one before it still counts, and the sandbox re-runs the
    # program for the test after it (max_restarts), which passes
    assert out[2].result.per_test == [Verdict.PASSED, Verdict.TIMEOUT, Verdict.PASSED]
    assert out[2].code == pytest.approx(2 / 3)
    assert out[3].total == 0.0
