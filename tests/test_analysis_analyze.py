"""`demask analyze`: per-sample trace fields, their aggregation, the entropy-sink rows on a
scripted model, and the whole command on a tiny checkpoint (resumed from disk)."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from demask.analysis.analyze import AnalyzeConfig, decode_fields, frontier_sweeps, setting_summary
from demask.analysis.arness import first_step_rows
from demask.analysis.figures import summary_markdown
from demask.decoding.mock import ScriptedModel
from demask.decoding.trace import RowStep, RowTrace
from demask.tasks import write_tasks_jsonl
from demask.tasks.base import Task


def _row(groups, gen_length=4, stopped_at=None):
    steps = [RowStep(nfe=i + 1, positions=g, tokens=[5] * len(g), scores=[0.0] * len(g), confidences=[1.0] * len(g))
             for i, g in enumerate(groups)]  # fmt: skip
    return RowTrace(gen_length, steps, stopped_at)


def test_decode_fields_hand_computed():
    # order 1, 0, 2 (the prompt is committed before: virtual positions -1, -2, ...)
    got = decode_fields(_row([[1], [0], [2]], gen_length=4, stopped_at=3))
    # local@1: 1 after prompt? p=1 needs -> 0 before it: no; 0 after 1: no (needs -1); 2 after 0: no (needs 1) -> 0
    assert got["arness"]["local"][0] == 0.0
    # global@1: 1 has one masked position (0) to its left: no; 0: yes; 2: yes -> 2/3
    assert got["arness"]["global"][0] == pytest.approx(2 / 3)
    # global@2: every commit is among the two leftmost masked positions
    assert got["arness"]["global"][1] == 1.0
    assert got["commit_steps"] == [1, 0, 2, -1]  # position 3 was filled by the early stop
    assert len(got["arness"]["local"]) == 4
    assert decode_fields(_row([]))["arness"] is None  # nothing committed: no AR-ness


def test_setting_summary_means_each_task_over_its_samples():
    def rec(task, passed, local1):
        ar = None if local1 is None else {"local": [local1] * 4, "global": [1.0] * 4}
        return {"task_id": task, "sample_index": 0, "passed": passed, "arness": ar}

    records = [rec("a", True, 1.0), rec("a", False, 0.0), rec("b", True, 0.5), rec("b", True, None)]
    results = {"pass_at_k": {"pass@1": 0.75}, "generation": {"mean_nfe": 3.0, "tokens_per_second": 10.0},
               "num_tasks": 2, "num_samples": 4}  # fmt: skip
    got = setting_summary(results, records)
    assert got["pass@1"]["mean"] == pytest.approx((0.5 + 1.0) / 2)
    assert got["per_task_pass"] == {"a": 0.5, "b": 1.0}
    # task a: mean(1, 0) = 0.5; task b: only the sample with a trace, 0.5 -> mean 0.5, both 0.5
    assert got["local_arness"]["@1"]["mean"] == pytest.approx(0.5)
    assert got["local_arness"]["@1"]["ci95"] == 0.0 and got["local_arness"]["@1"]["n"] == 2
    assert got["mean_nfe"] == 3.0


def test_first_step_rows_read_an_l_shaped_scripted_model(tiny_cfg):
    vocab = tiny_cfg.vocab_size

    def fn(ids, positions, call):
        logits = torch.zeros(ids.shape[0], ids.shape[1], vocab)
        logits[:, :, 7] = torch.where(positions == 3, 50.0, 0.0)  # sure only right after the prompt
        return logits

    model = ScriptedModel(tiny_cfg, fn)
    rows = first_step_rows(model, [[4, 5, 6], [4, 5, 6]], gen_length=4)
    conf = rows["confidence"]
    assert conf.shape == (2, 4)
    assert conf[:, 0].tolist() == pytest.approx([1.0, 1.0])
    uniform = 1.0 / vocab
    assert conf[:, 1:].flatten().tolist() == pytest.approx([uniform] * 6)
    assert rows["entropy"][0, 1].item() == pytest.approx(math.log(vocab), rel=1e-5)


@pytest.fixture()
def tiny_cfg():
    from helpers import tiny_config

    return tiny_config(shift_logits=False)


def test_frontier_sweeps_keep_budgets_that_split_over_the_blocks():
    sweeps = frontier_sweeps(48, 8)  # 6 blocks: 48 / k steps must be a multiple of 6
    assert [opts["steps"] for _, opts in sweeps["confidence"]] == [48, 24, 12, 6]
    assert [opts["steps"] for _, opts in frontier_sweeps(8, None)["confidence"]] == [8, 4, 2, 1]


def test_config_refuses_unknown_sections_and_bad_settings():
    with pytest.raises(ValueError, match="unknown section.*sinks.*choose from"):
        AnalyzeConfig(checkpoint="x", out="y", sections=["sinks"])
    with pytest.raises(ValueError, match="temperatures"):
        AnalyzeConfig(checkpoint="x", out="y", temperatures=[-0.5])


def test_summary_says_which_sections_were_skipped():
    report = {"checkpoint": "ar", "tasks": "t", "num_tasks": 2, "decode": {}, "sections": {},
              "skipped": {"sink": "the checkpoint is autoregressive"}}  # fmt: skip
    assert "section sink skipped: the checkpoint is autoregressive" in summary_markdown(report)


TASKS = [
    Task("A/0", "def add(a, b):\n", ("assert add(1, 2) == 3",), "add"),
    Task("A/1", "def inc(x):\n", ("assert inc(1) == 2",), "inc"),
]


def test_analyze_command_end_to_end_and_resumed(tmp_path):
    """A tiny random checkpoint through every section; a rerun decodes nothing."""
    from helpers import tiny_checkpoint

    from demask.cli.main import app

    tiny_checkpoint(tmp_path / "ckpt", max_position_embeddings=128)
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", TASKS)
    args = ["analyze", "--checkpoint", str(tmp_path / "ckpt"), "--tasks", str(tasks), "--out", str(tmp_path / "an"),
            "--gen-length", "8", "--temperatures", "0", "--temperatures", "1.0", "--n-samples", "2",
            "--policies", "confidence", "--policies", "random", "--frontier", "threshold", "--workers", "1",
            "--baseline", str(tmp_path / "ckpt"), "--heatmap-tasks", "2"]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert torch.is_grad_enabled()  # the analysis leaves the process as it found it
    report = json.loads((tmp_path / "an" / "analysis.json").read_text())
    assert set(report["sections"]) == {"temperature", "policies", "sink", "heatmap", "halving", "frontier"}
    hot = report["sections"]["temperature"][1]
    assert hot["temperature"] == 1.0 and hot["num_samples"] == 4 and "pass@2" in hot["pass_at_k"]
    assert 0.0 <= hot["global_arness"]["@1"]["mean"] <= 1.0
    assert len(report["sections"]["sink"]["checkpoint"]["confidence"]) == 8
    assert report["sections"]["halving"]["checkpoint"]["steps"] == [8, 4]
    assert len(report["sections"]["heatmap"]["panels"]["random"]["commit_steps"][0]) == 8
    assert next(p["setting"] for p in report["sections"]["frontier"]["threshold"]) == "tau 0.7"
    for name in ("temperature", "policies", "sink", "heatmap", "frontier"):
        assert (tmp_path / "an" / f"{name}.png").stat().st_size > 1000
    summary = (tmp_path / "an" / "summary.md").read_text()
    assert "## AR-ness and pass@k vs temperature" in summary and "![frontier](frontier.png)" in summary
    # every sample record carries its decoding order
    rec = json.loads(next((tmp_path / "an" / "evals").glob("*/samples.jsonl")).read_text().splitlines()[0])
    assert len(rec["commit_steps"]) == 8 and "arness" in rec

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "loading" not in again.output  # everything read back from disk: no model loaded
    assert json.loads((tmp_path / "an" / "analysis.json").read_text())["sections"] == report["sections"]


def test_analyze_refuses_bad_names_before_decoding_and_keys_folders_by_seed(tmp_path):
    from helpers import tiny_checkpoint

    from demask.cli.main import app

    tiny_checkpoint(tmp_path / "ckpt", max_position_embeddings=128)
    tasks = write_tasks_jsonl(tmp_path / "tasks.jsonl", TASKS)
    base = ["analyze", "--checkpoint", str(tmp_path / "ckpt"), "--tasks", str(tasks), "--out", str(tmp_path / "an"),
            "--gen-length", "8", "--workers", "1"]  # fmt: skip
    bad = CliRunner().invoke(app, [*base, "--policies", "confidnce"])
    assert bad.exit_code == 2 and "confidence" in bad.output  # did you mean
    assert not (tmp_path / "an").exists()  # refused before anything was decoded
    missing = CliRunner().invoke(app, [*base, "--learned-policy", str(tmp_path), "--sections", "frontier"])
    assert missing.exit_code == 2 and "not a policy folder" in missing.output
    one = [*base, "--sections", "temperature", "--temperatures", "1.0", "--n-samples", "1"]
    assert CliRunner().invoke(app, one).exit_code == 0
    assert CliRunner().invoke(app, [*one, "--seed", "1"]).exit_code == 0
    assert len(list((tmp_path / "an" / "evals").glob("*/samples.jsonl"))) == 2  # another seed: other samples
    sink_only = [*base[:6], str(tmp_path / "sink"), *base[7:], "--sections", "sink"]
    assert CliRunner().invoke(app, sink_only).exit_code == 0  # a section that decodes nothing, alone
    assert "sink" in json.loads((tmp_path / "sink" / "analysis.json").read_text())["sections"]
