"""`demask demo` on the shipped models: the files it promises, re-scorable by another harness."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from demask.cli.main import app
from demask.demo import SHIPPED, DemoPolicy, default_policies, heldout_tasks, run_demo
from demask.evaluation.check import check_samples
from demask.execution import Sandbox, SandboxConfig
from demask.model import load_pretrained
from demask.tasks.jsonl import read_tasks_jsonl

pytestmark = pytest.mark.skipif(
    not (SHIPPED["diffusion"] / "config.json").is_file(), reason="the shipped TinyCode model is not installed"
)


@pytest.fixture(scope="module")
def tasks():
    return heldout_tasks(SHIPPED["diffusion"])[:6]


def test_demo_writes_rescorable_results(tmp_path, tasks):
    model = load_pretrained(SHIPPED["diffusion"], dtype="float32")
    one = dict(gen_length=48, steps=48, block_length=24, cache="dual")
    policies = [DemoPolicy(name, {**one, "policy": name}) for name in ("confidence", "left-to-right")]
    rows = run_demo({"diffusion": model}, tasks, tmp_path, policies, workers=1)
    assert [r.policy for r in rows] == ["confidence", "left-to-right"]
    results = json.loads((tmp_path / "results.json").read_text())
    for entry in results["policies"]:
        assert set(entry) >= {"policy", "pass_at_1", "nfe_per_token", "tokens_per_s", "global_ar_ness", "samples_file"}
        assert 0.0 <= entry["pass_at_1"] <= 1.0 and entry["nfe_per_token"] > 0
    ltr = results["policies"][1]
    assert ltr["global_ar_ness"] == 1.0  # left to right commits the leftmost masked position
    # Another harness (here: check-samples over the exported tasks) gives the same pass@1.
    exported = read_tasks_jsonl(tmp_path / "tasks.jsonl")
    assert [t.task_id for t in exported] == [t.task_id for t in tasks]
    with Sandbox(SandboxConfig(workers=1)) as sandbox:
        for entry in results["policies"]:
            rescored = check_samples(exported, entry["samples_file"], sandbox)
            assert rescored["pass_at_k"]["pass@1"] == pytest.approx(entry["pass_at_1"])


def test_demo_skips_rows_of_models_not_given(tmp_path, tasks):
    model = load_pretrained(SHIPPED["diffusion"], dtype="float32")
    only_ar = [DemoPolicy("ar", dict(gen_length=48), model="autoregressive")]
    assert run_demo({"diffusion": model}, tasks[:1], tmp_path, only_ar, workers=1) == []


@pytest.mark.skipif(
    not (SHIPPED["autoregressive"] / "config.json").is_file(),
    reason="the shipped autoregressive model is not installed",
)
def test_demo_command(tmp_path):
    rows = default_policies(SHIPPED, 48)
    # every shipped model has its rows: the AR twin one, each diffusion model its best (and fast)
    assert {r.model for r in rows} == set(SHIPPED) and rows[0].model == "autoregressive"
    chosen = [rows[0].name, rows[-1].name]
    args = ["demo", "--out", str(tmp_path), "--max-tasks", "3", "--policy", chosen[0], "--policy", chosen[1]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    names = [p["policy"] for p in json.loads((tmp_path / "results.json").read_text())["policies"]]
    assert names == chosen
    assert "pass@1" in result.output and "x AR" in result.output


def test_rows_come_from_each_models_decoders_json(tmp_path):
    ar, block = tmp_path / "ar", tmp_path / "block"
    ar.mkdir()
    block.mkdir()
    best = {"gen_length": 48, "policy": "confidence", "steps": 48, "cache": "dual"}
    fast = {"gen_length": 48, "policy": "threshold", "policy_options": {"threshold": 0.9}, "cache": "dual"}
    names = {"best": "confidence", "fast": "threshold 0.9"}
    (block / "decoders.json").write_text(json.dumps({"best": best, "fast": fast, "names": names}))
    rows = default_policies({"autoregressive": ar, "block": block}, 48)
    assert [(r.name, r.model) for r in rows] == [
        ("AR twin: confidence", "autoregressive"),  # no decoders.json: one token per step
        ("block diffusion: confidence", "block"),
        ("block diffusion: threshold 0.9 (fastest within 0.01)", "block"),
    ]
    assert rows[2].decode == fast


@pytest.mark.skipif(
    not (SHIPPED["autoregressive"] / "config.json").is_file(),
    reason="the shipped autoregressive model is not installed",
)
def test_demo_command_rejects_unknown_row(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--policy", "bogus"])
    assert result.exit_code != 0
    assert "unknown policy row" in result.output


@pytest.mark.skipif(
    not (SHIPPED["autoregressive"] / "config.json").is_file(),
    reason="the shipped autoregressive model is not installed",
)
def test_demo_grpo_row_decodes_the_given_checkpoint(tmp_path):
    # the shipped diffusion model stands in for a GRPO checkpoint: its row (the diffusion
    # model's best decoder) must equal the diffusion model's best row
    rows = default_policies({**SHIPPED, "grpo": SHIPPED["diffusion"]}, 48)
    base = next(r.name for r in rows if r.model == "diffusion")
    grpo = next(r.name for r in rows if r.model == "grpo")
    args = ["demo", "--out", str(tmp_path), "--max-tasks", "4", "--grpo", str(SHIPPED["diffusion"])]
    result = CliRunner().invoke(app, [*args, "--policy", base, "--policy", grpo])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "results.json").read_text())["policies"]
    assert [r["policy"] for r in rows] == [base, grpo]
    assert rows[0]["pass_at_1"] == rows[1]["pass_at_1"]
    first = [json.loads(line)["completion"] for line in Path(rows[0]["samples_file"]).read_text().splitlines()]
    second = [json.loads(line)["completion"] for line in Path(rows[1]["samples_file"]).read_text().splitlines()]
    assert first == second


def test_demo_grpo_option_names_a_missing_checkpoint(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--grpo", "no-such-dir"])
    assert result.exit_code != 0
    assert "no config.json" in result.output


def test_demo_grpo_row_without_a_checkpoint_is_refused(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--policy", "coupled-GRPO: confidence"])
    assert result.exit_code != 0
    assert "--grpo" in result.output


def test_bf16_only_where_the_cpu_has_it_natively(tmp_path, monkeypatch):
    import torch

    from demask.demo import inference_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    plain, native = tmp_path / "plain", tmp_path / "native"
    plain.write_text("flags\t\t: fpu sse avx2 avx512f avx512bw\n")
    native.write_text("flags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    assert inference_dtype(plain) == "float32"  # AVX-512 alone: bf16 would be emulated
    assert inference_dtype(native) == "bfloat16"
    assert inference_dtype(tmp_path / "missing") in ("float32", "bfloat16")  # oneDNN's check decides


@pytest.mark.skipif(not (SHIPPED["diffusion"] / "config.json").is_file(), reason="no shipped diffusion model")
def test_demo_shows_the_shipped_learned_policy(tmp_path):
    from demask.demo import POLICY_SHIPPED

    rows = default_policies(SHIPPED, 48)
    learned = [r for r in rows if r.decode.get("policy") == "learned"]
    assert (POLICY_SHIPPED / "config.json").is_file() and len(learned) == 1
    assert learned[0].model == "diffusion" and learned[0].decode["block_length"] is None  # full diffusion
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--max-tasks", "3", "--policy", learned[0].name])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "results.json").read_text())["policies"]
    assert row["policy"] == learned[0].name and row["nfe_per_token"] < 0.5
