"""`demask check-samples` and `demask eval` through the command table (real sandbox)."""

import json

import pytest
import typer
from typer.testing import CliRunner

from demask.cli import evaluate as cli
from demask.evaluation import SampleOutput
from demask.tasks import write_tasks_jsonl
from demask.tasks.base import Task

TASKS = [
    Task("C/0", "def add(a, b):\n", ("assert add(1, 2) == 3", "assert add(2, 2) == 4"), "add"),
    Task("C/1", "def neg(x):\n", ("assert neg(1) == -1",), "neg"),
]


@pytest.fixture()
def app():
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    cli.register(app)
    return app


def test_check_samples(tmp_path, app):
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", TASKS)
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"task_id": "C/0", "completion": "    return a + b\n"},
                {"task_id": "C/0", "completion": "    return (\n"},
                {"task_id": "C/1", "solution": "def neg(x):\n    return -x\n"},
                {"task_id": "C/1", "completion": "    return x\n"},
            ]
        )
    )
    out = tmp_path / "res" / "results.json"
    result = CliRunner().invoke(
        app,
        [
            "check-samples",
            "--tasks",
            str(tasks),
            "--samples",
            str(samples),
            "--out",
            str(out),
            "--timeout",
            "5",
            "--workers",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 tasks, 4 samples: pass@1 0.5000" in result.output
    res = json.loads(out.read_text())
    assert [(s["task_id"], s["passed"], s["verdict"]) for s in res["samples"]] == [
        ("C/0", True, "passed"),
        ("C/0", False, "error"),
        ("C/1", True, "passed"),
        ("C/1", False, "failed"),
    ]
    assert res["pass_at_k"] == {"pass@1": 0.5}


def test_check_samples_unknown_benchmark(tmp_path, app):
    result = CliRunner().invoke(
        app, ["check-samples", "--tasks", "humaneva", "--samples", "x.jsonl", "--out", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 2
    assert "did you mean 'humaneval'" in result.output


class FakeSampler:
    def __call__(self, prompts, seeds):
        return [
            SampleOutput("    return a + b\n" if "add" in p else "    return 0\n", nfe=4, num_tokens=2, seconds=0.25)
            for p in prompts
        ]


def test_eval_runs_and_resumes(tmp_path, app, monkeypatch):
    got = {}

    def fake_build(checkpoint, device, dtype, decode, per_row_seeds):
        got.update(checkpoint=checkpoint, decode=decode, per_row=per_row_seeds)
        return FakeSampler()

    monkeypatch.setattr(cli, "build_sampler", fake_build)
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", TASKS)
    args = [
        "eval",
        "--checkpoint",
        str(tmp_path),
        "--tasks",
        str(tasks),
        "--n-samples",
        "3",
        "--out",
        str(tmp_path / "run"),
        "--workers",
        "2",
        "--gen-length",
        "64",
        "--temperature",
        "0.2",
        "--set",
        "policy_options.threshold=0.8",
        "--no-early-stop",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert got["decode"] == {
        "gen_length": 64,
        "temperature": 0.2,
        "policy_options": {"threshold": 0.8},
        "early_stop": False,
    }
    assert "pass@1 0.5000" in result.output and "NFE per token 2.000, 8.0 tokens/s" in result.output
    assert len((tmp_path / "run" / "samples.jsonl").read_text().splitlines()) == 6
    # the same command again continues (nothing left); other decoding options are refused
    assert CliRunner().invoke(app, args).exit_code == 0
    assert len((tmp_path / "run" / "samples.jsonl").read_text().splitlines()) == 6
    changed = [a if a != "0.2" else "0.7" for a in args]
    result = CliRunner().invoke(app, changed)
    assert result.exit_code == 2 and "different run_info" in result.output


def test_eval_bad_decode_option(tmp_path, app, monkeypatch):
    monkeypatch.setattr(cli, "build_sampler", lambda *a: FakeSampler())
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(tmp_path),
            "--tasks",
            "humaneval",
            "--n-samples",
            "1",
            "--out",
            str(tmp_path / "o"),
            "--set",
            "novalue",
        ],
    )
    assert result.exit_code == 2 and "write KEY=VALUE" in result.output


def test_former_decode_option_is_read_as_a_setting(tmp_path, app, monkeypatch):
    got = {}
    monkeypatch.setattr(cli, "build_sampler", lambda _c, _d, _t, decode, _p: got.update(decode) or FakeSampler())
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", TASKS)
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(tmp_path),
            "--tasks",
            str(tasks),
            "--n-samples",
            "1",
            "--out",
            str(tmp_path / "o"),
            "--workers",
            "1",
            "--decode",
            "top_p=0.9",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "--decode KEY=VALUE is deprecated" in result.output and got == {"top_p": 0.9}


def test_build_sampler_rejects_unknown_decode_fields(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'bogus'.*gen_length"):
        cli.build_sampler(tmp_path, "cpu", None, {"bogus": 1}, False)


def test_commands_are_in_the_main_table():
    from demask.cli.main import app as main_app

    names = {c.name for c in main_app.registered_commands}
    assert {"check-samples", "eval"} <= names


def test_eval_end_to_end_with_a_tiny_checkpoint(tmp_path, app):
    """The real chain: checkpoint dir -> load_pretrained -> decoding engine -> sandbox -> results."""
    from helpers import tiny_model

    from demask.model.checkpoint import save_pretrained
    from demask.model.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer(["def add(a, b):\n    return a + b\n"] * 4, vocab_size=260)
    model = tiny_model(
        std=0.5,
        vocab_size=tok.vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        max_position_embeddings=128,
        mask_token_id=tok.mask_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    save_pretrained(model, tmp_path / "ckpt", tokenizer=tok)
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", TASKS)
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(tmp_path / "ckpt"),
            "--tasks",
            str(tasks),
            "--n-samples",
            "2",
            "--out",
            str(tmp_path / "run"),
            "--workers",
            "1",
            "--gen-length",
            "8",
            "--temperature",
            "1.0",
        ],
    )
    assert result.exit_code == 0, result.output
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["num_samples"] == 4 and res["generation"]["mean_nfe"] > 0
    assert res["run_info"]["decode"] == {"gen_length": 8, "temperature": 1.0}


# ------------------------------------------------------------ broken tasks, samples files, warnings
BROKEN = [
    *TASKS,
    Task("C/2", "def sub(a, b):\n", ("assert sub(3, 1) == = 2",), "sub"),  # the test does not compile
    Task("C/3", "def mul(a, b):\n", ("assert mul(2, 3) == 6",), "mul", canonical_solution="    return a + b\n"),
]


def eval_args(tmp_path, tasks, *extra):
    tmp_path.mkdir(parents=True, exist_ok=True)  # the checkpoint folder (the sampler is faked)
    return [
        "eval",
        "--checkpoint",
        str(tmp_path),
        "--tasks",
        str(tasks),
        "--out",
        str(tmp_path / "run"),
        "--workers",
        "2",
        *extra,
    ]


def test_eval_refuses_broken_tasks_before_loading_the_model(tmp_path, app, monkeypatch):
    def no_model(*args):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(cli, "build_sampler", no_model)
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", BROKEN)
    result = CliRunner().invoke(app, eval_args(tmp_path, tasks, "--n-samples", "1"))
    assert result.exit_code == 2, result.output
    assert "error: 2 of 4 tasks are broken (2 problem(s)):" in result.output
    assert "C/2: the test does not compile: SyntaxError" in result.output
    assert "C/3: the canonical solution does not pass its tests (failed, 0 of 1 tests passed" in result.output
    assert "--skip-broken-tasks" in result.output
    assert not (tmp_path / "run" / "samples.jsonl").exists()


def test_eval_skips_broken_tasks_when_asked(tmp_path, app, monkeypatch):
    monkeypatch.setattr(cli, "build_sampler", lambda *a: FakeSampler())
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", BROKEN)
    args = eval_args(tmp_path, tasks, "--n-samples", "1", "--skip-broken-tasks")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "warning: --skip-broken-tasks: leaving out 2 broken task(s) of 4: C/2 (test-syntax: " in result.output
    assert "C/3 (reference-fails: " in result.output
    assert "2 tasks, 2 samples" in result.output
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["run_info"]["skipped_broken_tasks"] == ["C/2", "C/3"]
    # the same command continues the run (the same tasks are left out)
    assert CliRunner().invoke(app, args).exit_code == 0


def test_eval_with_every_task_broken_is_an_error(tmp_path, app, monkeypatch):
    monkeypatch.setattr(cli, "build_sampler", lambda *a: FakeSampler())
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", BROKEN[2:])
    result = CliRunner().invoke(app, eval_args(tmp_path, tasks, "--n-samples", "1", "--skip-broken-tasks"))
    assert result.exit_code == 2 and "every task is broken: nothing left to evaluate" in result.output


def check_args(tmp_path, tasks, samples, *extra):
    out = tmp_path / "results.json"
    return ["check-samples", "--tasks", str(tasks), "--samples", str(samples), "--out", str(out), *extra]


def test_check_samples_broken_tasks(tmp_path, app):
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", BROKEN)
    samples = tmp_path / "samples.jsonl"
    records = [
        {"task_id": "C/0", "completion": "    return a + b\n"},
        {"task_id": "C/2", "completion": "    return a - b\n"},
    ]
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = CliRunner().invoke(app, check_args(tmp_path, tasks, samples, "--workers", "2"))
    assert result.exit_code == 2 and "C/2: the test does not compile" in result.output
    result = CliRunner().invoke(
        app, check_args(tmp_path, tasks, samples, "--workers", "2", "--only-sampled", "--skip-broken-tasks")
    )
    assert result.exit_code == 0, result.output
    assert "leaving out 2 broken task(s) of 4: C/2" in result.output
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["num_samples"] == 1 and res["excluded_tasks"] == ["C/2", "C/3"]


@pytest.mark.parametrize("content", ["", "\n\n", '{"task_id": "C/0", "compl'])
def test_check_samples_without_samples_is_an_error(tmp_path, app, content):
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", TASKS)
    samples = tmp_path / "samples.jsonl"
    samples.write_text(content)
    result = CliRunner().invoke(app, check_args(tmp_path, tasks, samples, "--workers", "1"))
    assert result.exit_code == 2, result.output
    assert f"error: no samples in {samples}" in result.output
    assert not (tmp_path / "results.json").exists()


def test_check_samples_warns_of_a_cut_off_last_line(tmp_path, app):
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", TASKS)
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        json.dumps({"task_id": "C/0", "completion": "    return a + b\n"})
        + "\n\n"
        + json.dumps({"task_id": "C/1", "completion": "    return -x\n"})
        + '\n{"task_id": "C/1", "comp'
    )
    result = CliRunner().invoke(app, check_args(tmp_path, tasks, samples, "--workers", "1"))
    assert result.exit_code == 0, result.output
    assert f"warning: {samples}, line 4: the last line is cut off" in result.output
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["dropped_partial_last_line"] is True and res["num_samples"] == 2


def test_eval_warns_of_options_without_effect(tmp_path, app, monkeypatch):
    monkeypatch.setattr(cli, "build_sampler", lambda *a: FakeSampler())
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", TASKS)
    result = CliRunner().invoke(app, eval_args(tmp_path, tasks, "--n-samples", "3"))
    assert result.exit_code == 0, result.output
    assert "warning: --n-samples 3 at temperature 0: every sample of a task is the same greedy decode" in result.output
    assert "--temperature" in result.output and "--n-samples 1" in result.output
    # samples differ: a temperature, or a policy that draws positions at random
    for i, extra in enumerate(
        (["--temperature", "0.5"], ["--policy", "random"], ["--set", "policy_options.alg_temp=0.5"])
    ):
        result = CliRunner().invoke(app, eval_args(tmp_path / str(i), tasks, "--n-samples", "3", *extra))
        assert result.exit_code == 0, result.output
        assert "warning" not in result.output


def test_eval_warns_of_diffusion_options_for_a_causal_checkpoint(tmp_path, app, monkeypatch):
    from demask.model.config import ModelConfig

    monkeypatch.setattr(cli, "build_sampler", lambda *a: FakeSampler())
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", TASKS)
    (tmp_path / "config.json").write_text(json.dumps(ModelConfig(causal=True).to_hf_dict()))
    extra = ["--n-samples", "2", "--steps", "4", "--policy", "random", "--set", "policy_options.alg_temp=0.5"]
    result = CliRunner().invoke(app, eval_args(tmp_path, tasks, *extra, "--temperature", "0"))
    assert result.exit_code == 0, result.output
    assert (
        "warning: the checkpoint is autoregressive (causal), which decodes left to right one token per step: "
        "--policy, --steps, policy_options.alg_temp have no effect on it" in result.output
    )
    # greedy whatever the policy: the causal model ignores it
    assert "--n-samples 2 at temperature 0" in result.output
    # options left at their defaults are not warned about
    result = CliRunner().invoke(app, eval_args(tmp_path / "y", tasks, "--n-samples", "1"))
    assert result.exit_code == 0 and "warning" not in result.output
