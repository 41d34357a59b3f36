"""Group-relative advantages: exact values on hand-computed groups."""

from __future__ import annotations

import pytest
import torch

from demask.training.rl.advantages import (
    compute_advantages,
    get_advantage_fn,
    loo_advantages,
    loo_positive_advantages,
    mean_advantages,
    mean_std_advantages,
    select_groups,
    varied_groups,
)


def test_loo_by_hand():
    # group 1: r = [1, 2, 6] (G=3): sum 9 -> 1 - 8/2, 2 - 7/2, 6 - 3/2
    # group 2: r = [0, 0, 3]: 0 - 3/2, 0 - 3/2, 3 - 0/2
    r = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])
    assert loo_advantages(r, 3).tolist() == [-3.0, -1.5, 4.5, -1.5, -1.5, 3.0]


def test_loo_coupled_grpo_rewards():
    # DiffuCoder rewards 2*code + 0.5*format, G=4: [2.5, 0.5, 0.0, 1.5], sum 4.5
    r = torch.tensor([2.5, 0.5, 0.0, 1.5])
    expected = [2.5 - 2.0 / 3, 0.5 - 4.0 / 3, 0.0 - 1.5, 1.5 - 1.0]
    torch.testing.assert_close(loo_advantages(r, 4), torch.tensor(expected))


def test_loo_positive_by_hand():
    # the groups of test_loo_by_hand: [-3, -1.5, 4.5] and [-1.5, -1.5, 3] -> negatives to 0
    r = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])
    assert loo_positive_advantages(r, 3).tolist() == [0.0, 0.0, 4.5, 0.0, 0.0, 3.0]
    torch.testing.assert_close(
        compute_advantages(torch.tensor([2.5, 0.5, 0.0, 1.5]), 4, "loo_positive"),
        torch.tensor([2.5 - 2.0 / 3, 0.0, 0.0, 0.5]),
    )


def test_mean_and_mean_std_by_hand():
    r = torch.tensor([[1.0, 3.0, 5.0], [2.0, 2.0, 8.0]])  # already (groups, G)
    assert mean_advantages(r).tolist() == [[-2.0, 0.0, 2.0], [-2.0, -2.0, 4.0]]
    # unbiased std: group 1 sqrt((4+0+4)/2) = 2; group 2 sqrt((4+4+16)/2) = sqrt(12)
    out = mean_std_advantages(r, eps=0.0)
    s12 = 12**0.5
    torch.testing.assert_close(out, torch.tensor([[-1.0, 0.0, 1.0], [-2 / s12, -2 / s12, 4 / s12]]))
    # eps is added to the std, not to the variance
    torch.testing.assert_close(mean_std_advantages(r[:1], eps=2.0), torch.tensor([[-0.5, 0.0, 0.5]]))


@pytest.mark.parametrize("g", [2, 3, 5, 10])
def test_loo_equals_scaled_mean_baseline(g):
    r = torch.rand(4 * g, generator=torch.Generator().manual_seed(g), dtype=torch.float64)
    torch.testing.assert_close(loo_advantages(r, g), g / (g - 1) * mean_advantages(r, g))


def test_equal_rewards_give_zero_advantages():
    r = torch.full((8,), 2.5)
    for kind in ("loo", "mean", "mean_std", "loo_positive"):
        assert compute_advantages(r, 4, kind).abs().max().item() == 0.0


def test_groups_do_not_mix():
    # changing a reward of group 2 leaves group 1's advantages alone
    a = torch.tensor([1.0, 0.0, 0.0, 0.0])
    b = torch.tensor([1.0, 0.0, 7.0, 0.0])
    assert loo_advantages(a, 2)[:2].tolist() == loo_advantages(b, 2)[:2].tolist() == [1.0, -1.0]


def test_shape_and_name_errors():
    with pytest.raises(ValueError, match="multiple of G"):
        loo_advantages(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="at least 2"):
        loo_advantages(torch.zeros(3), 1)
    with pytest.raises(ValueError, match="group_size"):
        mean_advantages(torch.zeros(4))
    with pytest.raises(ValueError, match="groups of 3"):
        mean_advantages(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="did you mean 'mean-std'"):
        get_advantage_fn("mean_sd")
    assert get_advantage_fn("mean-std") is mean_std_advantages  # "_" and "-" both work
    assert get_advantage_fn("RLOO") is loo_advantages
    assert compute_advantages(torch.tensor([0.0, 1.0]), 2, "loo").dtype == torch.float32
    assert compute_advantages(torch.tensor([0, 1]), 2, "mean").tolist() == [-0.5, 0.5]


def test_select_groups_puts_groups_whose_rewards_differ_first():
    # groups of 3: uniform, varied, uniform, varied, varied
    r = torch.tensor([1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 3.0, 3.0, 1.0, 0.0, 0.0, 0.5])
    assert select_groups(r, 3, 2) == [1, 3]
    assert select_groups(r, 3, 3) == [1, 3, 4]
    assert select_groups(r, 3, 5) == [1, 3, 4, 0, 2]  # then the uniform ones, in order
    assert select_groups(r, 3, 2, informative_first=False) == [0, 1]
    assert select_groups(r.view(5, 3), None, 1) == [1]


@pytest.mark.parametrize("keep", [0, 6])
def test_select_groups_refuses_a_count_outside_the_groups(keep):
    with pytest.raises(ValueError, match=r"keep=.* \[1, 5\]"):
        select_groups(torch.zeros(15), 3, keep)


def test_varied_groups_marks_groups_with_different_rewards():
    r = torch.tensor([[1.0, 1.0, 1.0], [0.0, 2.0, 2.0], [0.0, 0.0, 0.0], [3.0, 3.0, 1.0]])
    assert varied_groups(r).tolist() == [False, True, False, True]
    assert varied_groups(r.flatten(), 3).tolist() == [False, True, False, True]
