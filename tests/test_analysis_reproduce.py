"""`demask reproduce`: verdict rules, intervals, and the report builder on small fixtures
(claims replaced by scripted ones: a missing piece or a failing step is reported, not fatal)."""

import json

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
    assert report["claims"]["c"]["status"] == "failed"
    assert "No such command" in report["claims"]["c"]["reason"]  # the log's last lines, not only the command
    assert (tmp_path / "rep" / "logs" / "boom.log").is_file()
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| (a) A | **reproduced** | x minus y: +0.200 ± 0.100 |" in md
    assert "**missing**: no shipped learned policy" in md and "**failed**" in md
    assert "Not measured in this run (`demask reproduce --claims d`" in md
    assert "--quick" in md
    # a finished claim is read back, not measured again; --redo measures it again
    rp.run_reproduce(config, log=lambda s: None)
    assert len(calls) == 1
    rp.run_reproduce(rp.ReproduceConfig(out=str(tmp_path / "rep"), claims=["a"], redo=True, quick=True), log=print)
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


def test_config_refuses_unknown_claims():
    with pytest.raises(ValueError, match="unknown claim.*g.*choose from a, b"):
        rp.ReproduceConfig(claims=["g"])


def test_verdict_needs_two_items():
    assert rp.verdict(1.0, 0.0, +1, n=1) == "inconclusive"
    assert rp.verdict(1.0, 0.0, +1, n=2) == "reproduced"


def test_a_folder_keeps_one_budget_and_split(tmp_path, monkeypatch):
    def claim(ctx):
        return {"verdict": "inconclusive", "measurements": [{"name": "x"}]}

    monkeypatch.setattr(rp, "CLAIMS", {**rp.CLAIMS, "a": ("A", claim)})
    rp.run_reproduce(rp.ReproduceConfig(out=str(tmp_path), claims=["a"], quick=True), log=lambda s: None)
    with pytest.raises(ValueError, match="holds a --quick report on the test split; this run asks for a full"):
        rp.run_reproduce(rp.ReproduceConfig(out=str(tmp_path), claims=["a"]), log=lambda s: None)
    (tmp_path / "claims" / "a.json").write_text('{"status": "meas')  # cut off: measured again, not a crash
    report = rp.run_reproduce(rp.ReproduceConfig(out=str(tmp_path), claims=["a"], quick=True), log=lambda s: None)
    assert report["claims"]["a"]["verdict"] == "inconclusive"
    # a later run for another claim still reports the ones measured before
    report = rp.run_reproduce(rp.ReproduceConfig(out=str(tmp_path), claims=[], quick=True), log=lambda s: None)
    assert "a" in report["claims"]


def test_batch_times_and_speed_ratio(tmp_path):
    samples = tmp_path / "samples.jsonl"
    rows = [{"num_tokens": 10, "seconds": 0.5}] * 3 + [{"num_tokens": 4, "seconds": 1.0}]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert rp.batch_times(samples, batch_size=2) == [(20, 1.0), (14, 1.5)]
    fast = [(20, 1.0), (20, 1.0)]
    slow = [(10, 1.0), (10, 1.0)]
    got = rp.speed_ratio(fast, slow)
    assert got["ratio"] == pytest.approx(2.0) and got["low"] == pytest.approx(2.0) and got["n"] == 2


def test_speed_verdict_needs_faster_and_equal_quality():
    faster = {"ratio": 1.5, "low": 1.2, "high": 1.8}
    assert rp.speed_verdict(faster, {"mean": -0.01, "ci95": 0.03, "n": 100}) == "reproduced"
    assert rp.speed_verdict(faster, {"mean": -0.10, "ci95": 0.03, "n": 100}) == "not reproduced"  # worse
    assert rp.speed_verdict(faster, {"mean": -0.03, "ci95": 0.05, "n": 100}) == "inconclusive"  # may be 8 worse
    assert rp.speed_verdict({"ratio": 0.8, "low": 0.7, "high": 0.9}, {"mean": 0, "ci95": 0, "n": 9}) == "not reproduced"


class _FakeEvals(rp.Context):
    """eval() answers from a table: {name: (per-task passes, mean NFE)}."""

    def __init__(self, tmp_path, table):
        super().__init__(tmp_path, rp.QUICK, "test", log=lambda s: None)
        self.table = table

    def eval(self, name, checkpoint, decode, n_samples=1):
        passes, nfe = self.table[name]
        tasks = {f"t{i}": {"n": 1, "c": int(p)} for i, p in enumerate(passes)}
        return {"tasks": tasks, "generation": {"mean_nfe": nfe}}


def test_claim_d_compares_with_the_best_heuristic_at_no_more_nfe(tmp_path):
    win = [1, 1, 1, 1, 0, 1, 1, 1]
    lose = [0, 0, 0, 1, 0, 0, 0, 0]
    table = {"d-learned-policy": (win, 4.0), "d-threshold-0.9": (lose, 4.1), "d-threshold-0.95": ([1] * 8, 6.0),
             "d-factor-1": ([0, 1, 0, 1, 0, 0, 0, 0], 3.9), "d-factor-0.5": ([1] * 8, 5.0),
             "d-entropy-bound-0.3": (lose, 4.5)}  # fmt: skip
    got = rp.claim_d(_FakeEvals(tmp_path, table))
    key = next(m for m in got["measurements"] if "minus" in m["name"])
    assert "factor 1" in key["name"] and "(the best heuristic at <= its NFE)" in key["name"]
    assert key["mean"] == pytest.approx(0.625) and got["verdict"] == "reproduced"
    # nothing as cheap as the policy: a loss against a costlier heuristic is inconclusive, and labelled so
    table = {k: (v[0], v[1] + 10) if k != "d-learned-policy" else (lose, 1.0) for k, v in table.items()}
    got = rp.claim_d(_FakeEvals(tmp_path, table))
    key = next(m for m in got["measurements"] if "minus" in m["name"])
    assert "the cheapest heuristic" in key["name"] and got["verdict"] == "inconclusive"
