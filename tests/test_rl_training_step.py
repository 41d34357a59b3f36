"""One coupled-GRPO step on a tiny random Transformer moves what it should."""

from __future__ import annotations

import torch
from helpers import tiny_model

from demask.training.rl import GRPOLossConfig, get_estimator, grpo_loss, loo_advantages
from demask.training.rl.grpo_loss import tokens_through_first_end

EOS = 2


def _setup():
    model = tiny_model(max_position_embeddings=64, eos_token_id=EOS)
    prompt = torch.tensor([0, 0, 5, 6, 7, 8])  # left-padded to 6
    good = torch.tensor([10, 11, 12, 13, EOS, EOS, EOS, EOS])
    bad = torch.tensor([20, 21, 22, 23, 24, 25, EOS, EOS])
    ids = torch.stack([torch.cat([prompt, good]), torch.cat([prompt, bad])])  # (2, 14)
    am = torch.ones_like(ids, dtype=torch.bool)
    am[:, :2] = False
    return model, ids, am


def test_one_step_changes_parameters_and_raises_the_positive_completion():
    model, ids, am = _setup()
    est = get_estimator("coupled")
    rewards = torch.tensor([2.5, 0.0])  # the first completion passed, the second did not
    adv = loo_advantages(rewards, 2)  # [+2.5, -2.5]
    token_mask = tokens_through_first_end(ids[:, 6:], EOS)
    seed = 1234  # one mask seed for current, old and reference log-probs
    with torch.no_grad():
        old = est.log_probs(model, ids, am, 6, seed)
    ref = old.clone()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    # the paper's optimiser (Adam 0.9/0.99) with a step small enough to stay first-order
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    logp = est.log_probs(model, ids, am, 6, seed)
    loss, metrics = grpo_loss(logp, old, adv, token_mask, ref_logp=ref, config=GRPOLossConfig(epsilon=0.5, beta=0.01))
    # at the start of an update the ratio is exactly 1 and the KL exactly 0 (same seed)
    assert metrics["ratio_mean"] == 1.0 and metrics["kl_mean"] == 0.0
    assert metrics["clip_fraction"] == 0.0 and metrics["tokens"] == 5 + 7
    opt.zero_grad()
    loss.backward()
    opt.step()

    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert "lm_head.weight" in changed and "model.embed_tokens.weight" in changed
    assert len(changed) == len(before)
    with torch.no_grad():
        after = est.log_probs(model, ids, am, 6, seed)
    counted = token_mask.float()
    seq_before = (old * counted).sum(1)
    seq_after = (after * counted).sum(1)
    assert seq_after[0] > seq_before[0], "the positive-advantage completion became more likely"
    assert seq_after[1] < seq_before[1], "the negative-advantage completion became less likely"
    # and the same under the deterministic fully masked estimate (not just the step's masks)
    full = get_estimator("full_mask")
    with torch.no_grad():
        fm_before = (full.log_probs(_setup()[0], ids, am, 6, 0) * counted).sum(1)
        fm_after = (full.log_probs(model, ids, am, 6, 0) * counted).sum(1)
    assert fm_after[0] > fm_before[0] and fm_after[1] < fm_before[1]
