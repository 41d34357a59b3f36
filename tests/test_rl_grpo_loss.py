"""The GRPO loss: clipping, k3 KL, token masks, gradients, on hand-computed inputs."""

from __future__ import annotations

import math

import pytest
import torch

from demask.training.rl.grpo_loss import GRPOLossConfig, grpo_loss, k3_kl, tokens_through_first_end

NO_KL = GRPOLossConfig(epsilon=0.5, beta=0.0)


def _case():
    """Row 0: A = +1, ratios 1.2 (inside), 2.0 (above), 0.4 (below).
    Row 1: A = -1, ratios 1.2 (inside), 0.4 (below), 2.0 (above)."""
    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.3, -2.2]], dtype=torch.float64)
    ratios = torch.tensor([[1.2, 2.0, 0.4], [1.2, 0.4, 2.0]], dtype=torch.float64)
    logp = (old + ratios.log()).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    return logp, old, adv


def test_clipped_loss_by_hand():
    logp, old, adv = _case()
    # per-token -min(r A, clip(r, 0.5, 1.5) A):
    #   A=+1: 1.2 -> -1.2 ; 2.0 -> -min(2.0, 1.5) = -1.5 (clipped) ; 0.4 -> -min(0.4, 0.5) = -0.4
    #   A=-1: 1.2 -> 1.2 ; 0.4 -> -min(-0.4, -0.5) = 0.5 (clipped) ; 2.0 -> -min(-2.0, -1.5) = 2.0
    mask = torch.ones(2, 3, dtype=torch.bool)
    loss, m = grpo_loss(logp, old, adv, mask, config=NO_KL)
    assert loss.item() == pytest.approx((-1.2 - 1.5 - 0.4 + 1.2 + 0.5 + 2.0) / 6)
    assert m["clip_fraction"] == pytest.approx(2 / 6)
    assert m["ratio_mean"] == pytest.approx((1.2 + 2.0 + 0.4) * 2 / 6)
    assert m["kl_mean"] == 0.0 and m["tokens"] == 6.0


def test_token_mask_averages_over_counted_tokens_only():
    logp, old, adv = _case()
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    loss, m = grpo_loss(logp, old, adv, mask, config=NO_KL)
    assert loss.item() == pytest.approx((-1.2 - 1.5 + 1.2) / 3)
    assert m["clip_fraction"] == pytest.approx(1 / 3)
    # an all-zero mask gives 0, not NaN
    loss0, _ = grpo_loss(logp, old, adv, torch.zeros(2, 3), config=NO_KL)
    assert loss0.item() == 0.0


def test_gradient_by_hand_and_only_through_logp():
    logp, old, adv = _case()
    old = old.clone().requires_grad_(True)
    adv = adv.clone().requires_grad_(True)
    ref = (old.detach() - 0.1).requires_grad_(True)
    loss, _ = grpo_loss(logp, old, adv, torch.ones(2, 3), ref_logp=ref, config=GRPOLossConfig(epsilon=0.5, beta=0.0))
    loss.backward()
    assert old.grad is None and adv.grad is None and ref.grad is None
    # d/dlogp of -r A is -r A where the unclipped term is active, 0 where clipping is active
    expected = torch.tensor([[-1.2, 0.0, -0.4], [1.2, 0.0, 2.0]], dtype=torch.float64) / 6
    torch.testing.assert_close(logp.grad, expected)


def test_k3_kl_values():
    logp = torch.tensor([-1.0, -2.0])
    assert k3_kl(logp, logp).tolist() == [0.0, 0.0]
    # ref - logp = log 2: 2 - log 2 - 1
    val = k3_kl(torch.tensor([math.log(0.25)]), torch.tensor([math.log(0.5)])).item()
    assert val == pytest.approx(1 - math.log(2), rel=1e-6)
    # ref - logp = -log 2: 1/2 + log 2 - 1
    val = k3_kl(torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])).item()
    assert val == pytest.approx(math.log(2) - 0.5, rel=1e-6)


def test_kl_term_by_hand():
    logp = torch.tensor([[math.log(0.25), math.log(0.5)]], dtype=torch.float64, requires_grad=True)
    old = logp.detach().clone()  # ratio 1: the policy term is -A per token
    ref = torch.tensor([[math.log(0.5), math.log(0.5)]], dtype=torch.float64)
    adv = torch.tensor([2.0], dtype=torch.float64)
    loss, m = grpo_loss(logp, old, adv, torch.ones(1, 2), ref_logp=ref, config=GRPOLossConfig(epsilon=0.5, beta=0.01))
    kl = (1 - math.log(2), 0.0)
    assert m["kl_mean"] == pytest.approx(sum(kl) / 2)
    assert loss.item() == pytest.approx((-2.0 - 2.0) / 2 + 0.01 * sum(kl) / 2)
    # against an identical reference the KL term is exactly 0
    _, m2 = grpo_loss(logp, old, adv, torch.ones(1, 2), ref_logp=logp.detach())
    assert m2["kl_mean"] == 0.0 and m2["ratio_mean"] == 1.0 and m2["clip_fraction"] == 0.0


def test_asymmetric_clip_higher():
    logp, old, adv = _case()
    cfg = GRPOLossConfig(epsilon=0.5, epsilon_high=1.5, beta=0.0)  # ratio in [0.5, 2.5]
    loss, m = grpo_loss(logp, old, adv, torch.ones(2, 3), config=cfg)
    # A=+1 ratio 2.0 is no longer clipped: -2.0 instead of -1.5
    assert loss.item() == pytest.approx((-1.2 - 2.0 - 0.4 + 1.2 + 0.5 + 2.0) / 6)
    assert m["clip_fraction"] == pytest.approx(1 / 6)


def test_tokens_through_first_end():
    ids = torch.tensor([[5, 2, 9, 2], [2, 6, 7, 8], [5, 6, 7, 8], [5, 6, 3, 2]])
    assert tokens_through_first_end(ids, 2).tolist() == [
        [True, True, False, False],
        [True, False, False, False],
        [True, True, True, True],
        [True, True, True, True],
    ]
    # several end ids (EOS and a pad token): the first of either ends the completion
    assert tokens_through_first_end(ids, [2, 3])[3].tolist() == [True, True, True, False]


def test_errors():
    logp, old, adv = _case()
    with pytest.raises(ValueError, match="needs ref_logp"):
        grpo_loss(logp, old, adv, torch.ones(2, 3), config=GRPOLossConfig(beta=0.01))
    with pytest.raises(ValueError, match="advantages must be"):
        grpo_loss(logp, old, adv[:1], torch.ones(2, 3), config=NO_KL)
    with pytest.raises(ValueError, match="same"):
        grpo_loss(logp, old[:, :2], adv, torch.ones(2, 3), config=NO_KL)
    with pytest.raises(ValueError, match="epsilon"):
        GRPOLossConfig(epsilon=0.0)
    with pytest.raises(ValueError, match="beta"):
        GRPOLossConfig(beta=-1.0)
