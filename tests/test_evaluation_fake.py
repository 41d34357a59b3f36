"""A stand-in sandbox for the evaluation tests (same ``run_many`` interface as the real one),
and ``best_sandbox``, which gives a test the real ``demask.execution.Sandbox``.

The fake runs each program in a fresh ``python -I`` subprocess (no isolation beyond that), and
yields results out of order on purpose, so callers must use the index.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed

from demask.execution import Sandbox, SandboxConfig
from demask.execution.types import ExecutionResult, Program, Verdict

_HARNESS = r"""
import json, sys
src = json.loads(sys.stdin.read())
g = {"__name__": "__main__"}
def verdict(e):
    if isinstance(e, AssertionError): return "failed"
    if isinstance(e, MemoryError): return "memory"
    return "error"
def describe(e):
    return type(e).__name__ + ": " + str(e)[:200]
out = {"code": None, "tests": []}
try:
    exec(compile(src["code"], "<program>", "exec"), g)
except BaseException as e:
    out["code"] = [verdict(e), describe(e)]
else:
    for t in src["tests"]:
        try:
            exec(compile(t, "<test>", "exec"), g)
            out["tests"].append(["passed", None])
        except BaseException as e:
            out["tests"].append([verdict(e), describe(e)])
sys.__stdout__.write("\n@@RESULT@@" + json.dumps(out))
"""


class FakeSandbox:
    """``run_many(programs)`` -> (index, ExecutionResult) in completion order."""

    def __init__(self, workers: int = 2, timeout_s: float = 5.0) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self.calls = 0

    def __enter__(self) -> FakeSandbox:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def run(self, program: Program) -> ExecutionResult:
        return next(iter(self.run_many([program])))[1]

    def run_many(self, programs):
        self.calls += 1
        with ThreadPoolExecutor(self.workers) as ex:
            futures = {ex.submit(self._run_one, p): i for i, p in enumerate(programs)}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()

    def _run_one(self, program: Program) -> ExecutionResult:
        timeout = program.timeout_s or self.timeout_s
        payload = json.dumps({"code": program.code, "tests": list(program.tests)})
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-c", _HARNESS],
                input=payload,
                text=True,
                capture_output=True,
                timeout=timeout,
                cwd="/tmp",
            )
        except subprocess.TimeoutExpired:
            return ExecutionResult(
                Verdict.TIMEOUT, 0, len(program.tests), [Verdict.TIMEOUT] * len(program.tests), error="timeout"
            )
        marker = proc.stdout.rfind("@@RESULT@@")
        if marker < 0:
            return ExecutionResult(
                Verdict.KILLED,
                0,
                len(program.tests),
                [Verdict.KILLED] * len(program.tests),
                error=f"exit {proc.returncode}",
                stderr=proc.stderr[-2000:],
            )
        out = json.loads(proc.stdout[marker + len("@@RESULT@@") :])
        if out["code"] is not None:
            v, err = out["code"]
            n = len(program.tests)
            return ExecutionResult(Verdict(v), 0, n, [Verdict(v)] * n, error=err)
        per = [Verdict(v) for v, _ in out["tests"]]
        errors = [e for v, e in out["tests"] if e]
        first_bad = next((v for v in per if v is not Verdict.PASSED), Verdict.PASSED)
        return ExecutionResult(
            first_bad, sum(v is Verdict.PASSED for v in per), len(per), per, error=errors[0] if errors else None
        )


def best_sandbox(workers: int = 2, timeout_s: float = 5.0) -> Sandbox:
    """The real sandbox (demask.execution.Sandbox) with these settings."""
    return Sandbox(SandboxConfig(workers=workers, timeout_s=timeout_s))


# ---------------------------------------------------------------- the fake itself
def test_fake_sandbox_verdicts_and_indices():
    programs = [
        Program("def f(x):\n    return x + 1\n", ("assert f(1) == 2", "assert f(1) == 3", "f(None)")),
        Program("def f(:\n", ("assert True",)),
        Program("x = 1\n"),
        Program("while True:\n    pass\n", timeout_s=0.5),
    ]
    got = dict(FakeSandbox().run_many(programs))
    assert sorted(got) == [0, 1, 2, 3]
    assert got[0].per_test == [Verdict.PASSED, Verdict.FAILED, Verdict.ERROR]
    assert got[0].verdict is Verdict.FAILED and got[0].tests_passed == 1
    assert got[1].verdict is Verdict.ERROR and got[1].error.startswith("SyntaxError")
    assert got[2].passed and got[2].pass_rate == 1.0
    assert got[3].verdict is Verdict.TIMEOUT
