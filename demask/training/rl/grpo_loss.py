"""The GRPO objective: token-level PPO clipping plus a k3 KL penalty to a reference model.

Per completion token k of completion b (DiffuCoder, arXiv 2506.20639, section 4; DeepSeekMath
GRPO)::

    ratio_k = exp(logp_k - logp_old_k)
    loss_k  = -min(ratio_k * A_b, clip(ratio_k, 1 - eps_low, 1 + eps_high) * A_b)
              + beta * (exp(ref_k - logp_k) - (ref_k - logp_k) - 1)        # k3 estimator

and the loss is the mean of ``loss_k`` over every counted token of the batch (one token, one
vote: long completions weigh more, as in the reference code, which divides by the batch's
total number of counted tokens). The counted tokens are given by ``token_mask``; for
coupled-GRPO they run up to and including the first end token
(:func:`tokens_through_first_end`).

For a diffusion model the log-probs are estimates (see ``estimators.py``); the same mask
seed must be used for ``logp``, ``logp_old`` and ``ref`` of one update, otherwise the ratio
compares two different noisy estimates and is not 1 at the start of an update.

Gradients flow only through ``logp``: the old and reference log-probs and the advantages are
detached here. Not covered: sequence-level importance ratios (GSPO), per-sequence length
normalisation (original GRPO's ``1/|o_i|``), entropy bonuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GRPOLossConfig:
    """Clipping and KL settings (paper: eps = 0.5, beta = 0.01).

    epsilon: the clip range, ratio in [1 - epsilon, 1 + epsilon].
    epsilon_high: upper clip bound 1 + epsilon_high if set (DAPO's "clip higher"); default
        symmetric.
    beta: weight of the k3 KL to the reference; 0 disables it (no reference needed).
    """

    epsilon: float = 0.5
    epsilon_high: float | None = None
    beta: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.epsilon < 1:
            raise ValueError(f"GRPOLossConfig.epsilon must be in (0, 1), got {self.epsilon} (the paper uses 0.5)")
        if self.epsilon_high is not None and self.epsilon_high <= 0:
            raise ValueError(f"GRPOLossConfig.epsilon_high must be > 0 or None, got {self.epsilon_high}")
        if self.beta < 0:
            raise ValueError(f"GRPOLossConfig.beta must be >= 0, got {self.beta} (paper: 0.01)")


def tokens_through_first_end(completion_ids: torch.Tensor, end_ids: int | Sequence[int]) -> torch.Tensor:
    """(B, L) bool: True up to and including the first end token of each row (all if none).

    ``end_ids``: the token(s) that end a completion (EOS; DiffuCoder's ``<|dlm_pad|>``).

    >>> tokens_through_first_end(torch.tensor([[5, 2, 9, 2], [5, 6, 7, 8]]), 2).tolist()
    [[True, True, False, False], [True, True, True, True]]
    """
    ends = torch.as_tensor(list(end_ids) if not isinstance(end_ids, int) else [end_ids], device=completion_ids.device)
    is_end = torch.isin(completion_ids, ends).long()  # (B, L)
    ends_before = is_end.cumsum(dim=1) - is_end  # end tokens strictly before position k
    return ends_before == 0


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || ref): ``exp(ref - logp) - (ref - logp) - 1`` (>= 0)."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    token_mask: torch.Tensor,
    ref_logp: torch.Tensor | None = None,
    config: GRPOLossConfig = GRPOLossConfig(),
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss of a batch and its metrics.

    logp, old_logp, ref_logp: (B, L) per-token log-probs of the completions under the current
        policy (with grad), the policy that sampled them, and the reference model.
    advantages: (B,) one per completion.
    token_mask: (B, L) bool/0-1, the tokens that count.

    Returns ``(loss, metrics)``; metrics (floats, over counted tokens): ``clip_fraction`` (the
    clipped term is the active one: ratio above 1 + eps with A > 0, or below 1 - eps with
    A < 0), ``ratio_mean``, ``kl_mean`` (0 when there is no reference), ``policy_loss``,
    ``tokens``.
    """
    if logp.shape != old_logp.shape or logp.shape != token_mask.shape:
        raise ValueError(
            f"logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)} and "
            f"token_mask {tuple(token_mask.shape)} must have the same (B, L) shape"
        )
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages must be (B,) = ({logp.shape[0]},), got {tuple(advantages.shape)}")
    if config.beta > 0 and ref_logp is None:
        raise ValueError(f"beta={config.beta} needs ref_logp (the reference model's log-probs); pass it or set beta=0")
    eps_low = config.epsilon
    eps_high = config.epsilon if config.epsilon_high is None else config.epsilon_high
    mask = token_mask.to(logp.dtype)
    count = mask.sum().clamp(min=1.0)
    adv = advantages.detach().to(logp.dtype)[:, None]  # (B, 1)

    ratio = torch.exp(logp - old_logp.detach())  # (B, L)
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high)
    policy = -torch.min(ratio * adv, clipped * adv)  # (B, L)
    per_token = policy
    kl = None
    if ref_logp is not None:
        kl = k3_kl(logp, ref_logp.detach())
        if config.beta > 0:
            per_token = per_token + config.beta * kl
    loss = (per_token * mask).sum() / count

    with torch.no_grad():
        is_clipped = ((ratio > 1 + eps_high) & (adv > 0)) | ((ratio < 1 - eps_low) & (adv < 0))
        metrics = {
            "clip_fraction": float((is_clipped.to(mask.dtype) * mask).sum() / count),
            "ratio_mean": float((ratio * mask).sum() / count),
            "kl_mean": float((kl * mask).sum() / count) if kl is not None else 0.0,
            "policy_loss": float((policy * mask).sum() / count),
            "tokens": float(mask.sum()),
        }
    return loss, metrics
