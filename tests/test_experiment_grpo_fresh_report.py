"""experiments/grpo_fresh_report.py on eval directories made here."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("grpo_fresh_report", ROOT / "experiments/grpo_fresh_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _eval_dir(tmp_path, name, passed):
    run = tmp_path / name
    run.mkdir()
    tasks = {f"t{i}": {"n": 1, "c": int(p), "pass@1": float(p)} for i, p in enumerate(passed)}
    (run / "results.json").write_text(json.dumps({"tasks": tasks}))
    return run


def test_report_pairs_seeds_and_replots_from_json(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    report = _script()
    base = _eval_dir(tmp_path, "sft", [1, 0, 0, 1])
    s0 = _eval_dir(tmp_path, "s0", [1, 1, 0, 1])  # +0.25
    s1 = _eval_dir(tmp_path, "s1", [1, 0, 0, 0])  # -0.25
    other = _eval_dir(tmp_path, "x", [1, 1, 1, 1])  # +0.5
    docs = tmp_path / "docs" / "fresh"
    report.main(
        ["--base", str(base), "--run", f"C=s0={s0}", "--run", f"C=s0={s1}", "--run", f"X={other}", "--docs", str(docs)]
    )
    rows = report.summarize(json.loads(docs.with_suffix(".json").read_text()))
    # labels may contain '=': the path is after the last one
    assert [r["label"] for r in rows] == ["C=s0", "X"]
    assert rows[0]["diff"] == pytest.approx([0.25, -0.25])
    assert rows[0]["mean_diff"] == pytest.approx(0.0)
    assert rows[0]["ci95_over_seeds"] == pytest.approx(12.7062 * 0.25, rel=1e-5)  # sd 0.354, se 0.25
    assert rows[1]["mean_diff"] == pytest.approx(0.5) and rows[1]["ci95_over_seeds"] == 0.0
    assert docs.with_suffix(".png").stat().st_size > 0
    docs.with_suffix(".png").unlink()
    report.main(["--from-json", str(docs.with_suffix(".json")), "--docs", str(docs)])
    assert docs.with_suffix(".png").exists()
    assert "mean +0.500" in capsys.readouterr().out
