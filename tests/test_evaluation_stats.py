"""Intervals and paired differences on hand-computed inputs."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demask.evaluation.stats import mean_interval, paired_difference, t95


def test_t95_agrees_with_published_quantiles():
    # printed t tables (3 decimals): df 1 -> 12.706, 2 -> 4.303, 29 -> 2.045
    assert t95(1) == pytest.approx(12.706, abs=5e-4)
    assert t95(2) == pytest.approx(4.303, abs=5e-4)
    assert t95(29) == pytest.approx(2.045, abs=5e-4)
    # t_{0.975} to 4 decimals: df 30 -> 2.0423, 100 -> 1.9840, 1000 -> 1.9623
    assert t95(30) == pytest.approx(2.0423, abs=5e-5)
    assert t95(100) == pytest.approx(1.9840, abs=5e-5)
    assert t95(1000) == pytest.approx(1.9623, abs=5e-5)
    with pytest.raises(ValueError, match="two values"):
        t95(0)


def test_mean_interval_by_hand():
    iv = mean_interval([1.0, 2.0, 3.0])  # sd 1, se 1/sqrt(3), t(2) = 4.3027
    assert iv.mean == 2.0 and iv.n == 3
    assert iv.half_width == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    assert (iv.low, iv.high) == pytest.approx((2 - 4.3027 / math.sqrt(3), 2 + 4.3027 / math.sqrt(3)), rel=1e-4)
    one = mean_interval([0.5, float("nan")])
    assert (one.mean, one.half_width, one.n) == (0.5, 0.0, 1)
    assert math.isnan(mean_interval([]).mean)


def test_paired_difference_by_hand():
    base = {"a": 1, "b": 0, "c": 0, "d": 1}
    other = {"a": 1, "b": 1, "c": 1, "d": 0}
    d = paired_difference(base, other)
    # deltas 0, 1, 1, -1: mean 0.25, sample variance 2.75 / 3, se = sd / 2
    se = math.sqrt(2.75 / 3) / 2
    assert (d.n, d.base_mean, d.other_mean) == (4, 0.5, 0.75)
    assert d.diff.mean == pytest.approx(0.25)
    assert d.se == pytest.approx(se)
    assert d.diff.half_width == pytest.approx(3.1824 * se, rel=1e-4)  # t(3) = 3.1824
    assert (d.gained, d.lost) == (2, 1)


def test_paired_difference_names_mismatched_tasks():
    with pytest.raises(ValueError, match=r"1 only in the base \(first: b\).*1 only in the other \(first: c\)"):
        paired_difference({"a": 1, "b": 0}, {"a": 1, "c": 0})
    with pytest.raises(ValueError, match="no tasks"):
        paired_difference({}, {})


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=3), st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=30
    )
)
def test_paired_mean_is_difference_of_means(pairs):
    d = paired_difference({k: a for k, (a, _) in pairs.items()}, {k: b for k, (_, b) in pairs.items()})
    assert d.diff.mean == pytest.approx(d.other_mean - d.base_mean, abs=1e-12)
    assert d.gained + d.lost <= d.n
    assert d.diff.half_width >= 0
