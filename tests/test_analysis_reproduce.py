"""`demask reproduce`: verdict rules, intervals, and the report builder on small fixtures
(claims replaced by scripted ones: a missing piece or a failing step is reported, not fatal)."""

import json
import sys

import pytest

from demask.analysis import reproduce as rp


def test_verdict_reads_the_side_of_the_interval():
    assert rp.verdict(0.10, 0.05, +1) == "reproduced"
    assert rp.verdict(0.10, 0.15, +1) == "inconclusive"
    assert rp.verdict(-0.10, 0.05, +1) == "not reproduced"
    assert rp.verdict(-0.10, 0.05, -1) == "reproduced"  # the claim says the effect is negative
    assert rp.verdict(float("nan"), 0.1, +1) == "inconclusive"


def test_combine_parts():
    assert rp.combine(["reproduced", "reproduced"]) == "reproduced"
    assert rp.combine(["reproduced", "inconclusive"]) == "inconclusive"
    assert rp.combine(["reproduced", "not reproduced"]) == "not reproduced"
    assert rp.combine([]) == "inconclusive"


def test_bootstrap_ratio_point_and_interval():
    got = rp.bootstrap_ratio([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert got["ratio"] == pytest.approx(0.5) and got["low"] == pytest.approx(0.5) and got["high"] == pytest.approx(0.5)
    spread = rp.bootstrap_ratio([1.0, 3.0, 1.0, 3.0], [2.0, 2.0, 2.0, 2.0])
    assert spread["ratio"] == pytest.approx(1.0) and spread["low"] < 1.0 < spread["high"]
    with pytest.raises(ValueError):
        rp.bootstrap_ratio([], [])


def test_per_task_pass_reads_results():
    results = {"tasks": {"a": {"n": 4, "c": 1, "pass@2": 0.5}, "b": {"n": 4, "c": 0, "pass@2": 0.0}}}
    assert rp.per_task_pass(results) == {"a": 0.25, "b": 0.0}
    assert rp.per_task_pass(results, "pass@2") == {"a": 0.5, "b": 0.0}


def test_estimator_variance_on_a_tiny_model():
    from helpers import tiny_model

    model = tiny_model(std=0.5).eval()
    got = rp.estimator_variance(model, [([3, 4, 5], [6, 7, 8, 9])], seeds=6)
    assert set(got) == set(rp.ESTIMATORS)
    assert got["full_mask"] == [pytest.approx(0.0)]  # deterministic: every completion token masked
    assert got["coupled"][0] > 0 and got["decoupled"][0] > 0


def test_run_reproduce_reports_missing_and_failed_claims(tmp_path, monkeypatch):
    def good(ctx):
        return {"verdict": "reproduced", "measurements": [{"name": "x minus y", "mean": 0.2, "ci95": 0.1, "n": 9}],
                "notes": ["a note"], "figure": None}  # fmt: skip

    def missing(ctx):
        raise rp.Missing("no shipped learned policy at somewhere")

    def failing(ctx):
        ctx.cli("boom", ["no-such-command"])  # a real subprocess: exits with an error
        return good(ctx)

    calls = []

    def counted(ctx):
        calls.append(1)
        return good(ctx)

    monkeypatch.setattr(rp, "CLAIMS", {**rp.CLAIMS, "a": ("A", counted), "b": ("B", missing), "c": ("C", failing)})
    config = rp.ReproduceConfig(out=str(tmp_path / "rep"), claims=["a", "b", "c"], quick=True)
    report = rp.run_reproduce(config, log=lambda s: None)
    assert report["claims"]["a"]["verdict"] == "reproduced"
    assert report["claims"]["b"] == {"status": "missing", "reason": "no shipped learned policy at somewhere",
                                     "commands": []}  # fmt: skip
    assert report["claims"]["c"]["status"] == "failed" and "no-such-command" in report["claims"]["c"]["reason"]
    assert (tmp_path / "rep" / "logs" / "boom.log").is_file()
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| (a) A | **reproduced** | x minus y: +0.200 ± 0.100 |" in md
    assert "**missing**: no shipped learned policy" in md and "**failed**" in md
    assert "Not measured in this run (`demask reproduce --claims d`" in md
    assert "--quick" in md
    # a finished claim is read back, not measured again; --redo measures it again
    rp.run_reproduce(config, log=lambda s: None)
    assert len(calls) == 1
    rp.run_reproduce(rp.ReproduceConfig(out=str(tmp_path / "rep"), claims=["a"], redo=True), log=lambda s: None)
    assert len(calls) == 2
    assert json.loads((tmp_path / "rep" / "claims" / "a.json").read_text())["verdict"] == "reproduced"


def test_cli_steps_run_once(tmp_path):
    ctx = rp.Context(tmp_path, rp.QUICK, "test", log=lambda s: None)
    ctx.cli("info", ["recipes"])
    assert (tmp_path / "logs" / "info.done").is_file()
    (tmp_path / "logs" / "info.log").unlink()
    ctx.cli("info", ["recipes"])  # done: not run again
    assert not (tmp_path / "logs" / "info.log").exists()
    assert ctx.commands == ["demask recipes", "demask recipes"]
    assert sys.executable  # the subprocess is this interpreter's `python -m demask.cli.main`


def test_config_refuses_unknown_claims():
    with pytest.raises(ValueError, match="unknown claim.*g.*choose from a, b"):
        rp.ReproduceConfig(claims=["g"])
