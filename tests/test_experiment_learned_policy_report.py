"""experiments/learned_policy_report.py: the heuristics' frontier a policy is measured against."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    path = ROOT / "experiments/learned_policy_report.py"
    spec = importlib.util.spec_from_file_location("learned_policy_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _point(nfe, passed):
    return {"pass": {f"t{i}": float(p) for i, p in enumerate(passed)}, "nfe": nfe}


def test_the_frontier_is_the_upper_hull_interpolated_task_by_task():
    f = _script().frontier_baseline
    h = {
        "a": _point(2.0, [0, 0, 0, 1]),  # 0.25
        "dominated": _point(3.0, [0, 0, 0, 0]),  # below a at more NFE: never on the frontier
        "under": _point(4.0, [0, 0, 1, 1]),  # 0.5: under the chord a..c (0.25 -> 1.0 over 2 -> 6 gives 0.625)
        "c": _point(6.0, [1, 1, 1, 1]),  # 1.0
    }
    line, between = f(h, 4.0)
    assert between == "a..c (0.50)"
    assert line == {"t0": 0.5, "t1": 0.5, "t2": 0.5, "t3": 1.0}
    assert sum(line.values()) / 4 == pytest.approx(0.625)
    # outside the measured range: the nearest end, not an extrapolation
    assert f(h, 1.0) == (h["a"]["pass"], "a")
    assert f(h, 9.0) == (h["c"]["pass"], "c")
    # exactly on a corner: that corner's scores
    assert f(h, 2.0)[0] == {"t0": 0.0, "t1": 0.0, "t2": 0.0, "t3": 1.0}


def test_a_point_above_the_chord_stays_a_corner():
    f = _script().frontier_baseline
    h = {"a": _point(2.0, [0, 0, 0, 0]), "b": _point(3.0, [1, 1, 1, 0]), "c": _point(6.0, [1, 1, 1, 1])}
    line, between = f(h, 4.5)
    assert between == "b..c (0.50)"
    assert sum(line.values()) / 4 == pytest.approx(0.875)


def test_the_hull_keeps_only_corners_above_the_chords():
    h = {
        "a": _point(2.0, [0, 0, 0, 1]),
        "dominated": _point(3.0, [0, 0, 0, 0]),
        "under": _point(4.0, [0, 0, 1, 1]),
        "c": _point(6.0, [1, 1, 1, 1]),
        "costly": _point(9.0, [1, 1, 1, 1]),  # no better than c at more NFE
    }
    assert _script().hull(h) == ["a", "c"]
