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
