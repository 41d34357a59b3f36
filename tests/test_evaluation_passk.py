import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demask.evaluation.passk import mean_pass_at_k, pass_at_k, pass_at_k_totals

EXACT = 1e-15


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (4, 1, 2, 1 - 3 / 6),  # 1 - C(3,2)/C(4,2)
        (6, 2, 3, 1 - 4 / 20),  # 1 - C(4,3)/C(6,3)
        (10, 3, 1, 0.3),  # pass@1 = c / n
        (200, 1, 100, 0.5),  # 1 - C(199,100)/C(200,100) = 1 - 100/200
        (10, 0, 5, 0.0),
        (10, 10, 1, 1.0),
        (3, 2, 2, 1.0),  # n - c = 1 < k: every draw of 2 holds a pass
        (7, 5, 3, 1.0),  # n - c = 2 < 3
        (1, 0, 1, 0.0),
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=EXACT)


def test_pass_at_k_is_exactly_one_when_failures_fewer_than_k():
    assert pass_at_k(100, 96, 5) == 1.0


@pytest.mark.parametrize("n, c, k", [(3, 1, 4), (0, 0, 1)])
def test_k_larger_than_n_is_an_error(n, c, k):
    with pytest.raises(ValueError, match=f"k={k} is larger than the number of samples n={n}"):
        pass_at_k(n, c, k)


@pytest.mark.parametrize("n, c, k", [(5, 6, 1), (5, -1, 1), (5, 1, 0)])
def test_bad_counts_are_errors(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_non_integers_are_rejected():
    with pytest.raises(TypeError):
        pass_at_k(5.0, 2, 1)
    with pytest.raises(TypeError):
        pass_at_k(5, True, 1)


@given(st.integers(1, 60), st.data())
def test_matches_binomial_form(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12, abs=1e-12)


def test_large_n_is_stable():
    # C(1000, 500) overflows a float; the product form does not.
    value = pass_at_k(1000, 1, 500)
    assert value == pytest.approx(0.5, abs=1e-12)


def test_mean_only_when_every_task_has_k_samples():
    counts = [(5, 2), (4, 1)]
    assert mean_pass_at_k(counts, 2) == pytest.approx((0.7 + 0.5) / 2, abs=EXACT)
    assert mean_pass_at_k([*counts, (1, 1)], 2) is None
    assert mean_pass_at_k([], 1) is None


def test_totals_report_only_reachable_k():
    totals = pass_at_k_totals([(10, 3), (10, 0)], ks=(1, 10, 100))
    assert set(totals) == {"pass@1", "pass@10"}
    assert totals["pass@1"] == pytest.approx((0.3 + 0.0) / 2, abs=EXACT)
    assert totals["pass@10"] == pytest.approx((1.0 + 0.0) / 2, abs=EXACT)
