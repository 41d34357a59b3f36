"""`demask compare` and the results readers behind it, on results files made here."""

import json

import pytest
from typer.testing import CliRunner

from demask.cli.main import app
from demask.evaluation.compare import compare_results, load_results, task_scores


def _results(passed: dict[str, list[bool]]) -> dict:
    tasks = {}
    for task_id, samples in passed.items():
        n, c = len(samples), sum(samples)
        entry = {"n": n, "c": c, "pass_rate_mean": c / n, "pass@1": c / n}
        if n >= 2:
            entry["pass@2"] = 1 - ((n - c) * (n - c - 1)) / (n * (n - 1))
        tasks[task_id] = entry
    return {"tasks": tasks}


def _write(tmp_path, name, passed):
    run = tmp_path / name
    run.mkdir()
    (run / "results.json").write_text(json.dumps(_results(passed)))
    return run


def test_scores_and_comparison():
    base = _results({"t0": [True, False], "t1": [False, False], "t2": [True, True]})
    other = _results({"t0": [True, True], "t1": [True, False], "t2": [True, True]})
    assert task_scores(base) == {"t0": 0.5, "t1": 0.0, "t2": 1.0}
    assert task_scores(base, "pass@2") == {"t0": 1.0, "t1": 0.0, "t2": 1.0}
    d = compare_results(base, other)
    assert d.diff.mean == pytest.approx(1 / 3)  # deltas 0.5, 0.5, 0
    assert (d.gained, d.lost) == (2, 0)
    with pytest.raises(ValueError, match="has no 'pass@5'.*pass@1, pass@2"):
        task_scores(base, "pass@5")


def test_load_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results file"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="no per-task results"):
        load_results(tmp_path)


def test_compare_command(tmp_path):
    base = _write(tmp_path, "base", {"a": [True], "b": [False], "c": [False], "d": [True]})
    other = _write(tmp_path, "other", {"a": [True], "b": [True], "c": [True], "d": [False]})
    out = tmp_path / "cmp.json"
    result = CliRunner().invoke(app, ["compare", str(base), str(other), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "+0.250" in result.output
    row = json.loads(out.read_text())["comparisons"][0]
    assert (row["tasks"], row["gained"], row["lost"]) == (4, 2, 1)
    assert row["difference"] == pytest.approx(0.25)

    bad = _write(tmp_path, "bad", {"a": [True], "z": [False]})
    result = CliRunner().invoke(app, ["compare", str(base), str(bad)])
    assert result.exit_code == 2
    assert "different tasks" in result.output
