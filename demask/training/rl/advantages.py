"""Group-relative advantages: each completion's reward against the others of its group.

A group is the G completions of one prompt. Rewards come flat, ``(N,)`` with N = groups * G
and each group contiguous (rows ``g*G .. g*G+G-1``), or already shaped ``(groups, G)``; the
result has the shape of the input.

- ``loo`` (coupled-GRPO, DiffuCoder): leave-one-out baseline,
  ``A_i = r_i - (sum_j r_j - r_i) / (G - 1)``, no std scaling. Identity:
  ``A_loo = G / (G - 1) * (r_i - mean(r))``.
- ``mean`` (Dr. GRPO; the unmasking-policy paper): ``A_i = r_i - mean(r)``.
- ``mean_std`` (DeepSeekMath GRPO): ``A_i = (r_i - mean(r)) / (std(r) + eps)`` with the
  unbiased (G - 1) standard deviation, as torch.std and TRL compute it.
- ``loo_positive`` (an ablation of ours): the positive part of ``loo``, ``max(A_loo, 0)``.
  Completions better than the rest of their group are pushed up as in ``loo``; worse ones
  are not pushed down, so the update is a reward-weighted fit of the group's better
  completions (rejection-sampling fine-tuning through the same estimator and clipped loss).

A group whose rewards are all equal gets zero advantages under every rule (no signal).
Not covered: batch-level (rather than group-level) normalisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from demask.registry import Registry

AdvantageFn = Callable[..., torch.Tensor]


def _grouped(rewards: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """(N,) or (groups, G) -> (groups, G), float."""
    rewards = torch.as_tensor(rewards)
    if not rewards.is_floating_point():
        rewards = rewards.float()
    if rewards.dim() == 2:
        if group_size is not None and rewards.shape[1] != group_size:
            raise ValueError(
                f"rewards of shape {tuple(rewards.shape)} hold groups of "
                f"{rewards.shape[1]}, but group_size={group_size}"
            )
        return rewards
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be (N,) or (groups, G), got shape {tuple(rewards.shape)}")
    if group_size is None or group_size <= 0:
        raise ValueError(f"flat rewards need group_size > 0 (the G completions per prompt), got {group_size}")
    if rewards.numel() % group_size:
        raise ValueError(
            f"{rewards.numel()} rewards do not split into groups of {group_size}; N must be a multiple of G"
        )
    return rewards.view(-1, group_size)


def loo_advantages(rewards: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    """Leave-one-out: ``A_i = r_i - (sum_j r_j - r_i) / (G - 1)``. Needs G >= 2.

    >>> loo_advantages(torch.tensor([1.0, 2.0, 6.0]), 3).tolist()
    [-3.0, -1.5, 4.5]
    """
    r = _grouped(rewards, group_size)
    g = r.shape[1]
    if g < 2:
        raise ValueError(
            f"leave-one-out advantages need at least 2 completions per group (got G={g}); use 'mean' or raise G"
        )
    total = r.sum(dim=1, keepdim=True)
    return (r - (total - r) / (g - 1)).reshape(torch.as_tensor(rewards).shape)


def mean_advantages(rewards: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    """``A_i = r_i - mean_j r_j`` within each group.

    >>> mean_advantages(torch.tensor([1.0, 3.0]), 2).tolist()
    [-1.0, 1.0]
    """
    r = _grouped(rewards, group_size)
    return (r - r.mean(dim=1, keepdim=True)).reshape(torch.as_tensor(rewards).shape)


def mean_std_advantages(rewards: torch.Tensor, group_size: int | None = None, eps: float = 1e-4) -> torch.Tensor:
    """``A_i = (r_i - mean) / (std + eps)``, unbiased std within each group. Needs G >= 2.

    >>> mean_std_advantages(torch.tensor([1.0, 3.0]), 2, eps=0.0).tolist()
    [-0.7071067690849304, 0.7071067690849304]
    """
    r = _grouped(rewards, group_size)
    if r.shape[1] < 2:
        raise ValueError(f"std scaling needs at least 2 completions per group (got G={r.shape[1]})")
    centered = r - r.mean(dim=1, keepdim=True)
    return (centered / (r.std(dim=1, keepdim=True) + eps)).reshape(torch.as_tensor(rewards).shape)


def loo_positive_advantages(rewards: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    """``max(A_loo, 0)``: leave-one-out advantages with the negative ones set to 0.

    >>> loo_positive_advantages(torch.tensor([1.0, 2.0, 6.0]), 3).tolist()
    [0.0, 0.0, 4.5]
    """
    return loo_advantages(rewards, group_size).clamp_min(0.0)


ADVANTAGES: Registry[AdvantageFn] = Registry("advantage")
ADVANTAGES.register("loo", "leave-one-out", "rloo")(loo_advantages)
ADVANTAGES.register("mean")(mean_advantages)
ADVANTAGES.register("mean_std")(mean_std_advantages)
ADVANTAGES.register("loo_positive")(loo_positive_advantages)


def get_advantage_fn(name: str) -> AdvantageFn:
    """The advantage rule registered as ``name`` ("loo", "mean", "mean_std", "loo_positive")."""
    return ADVANTAGES.get(name)


def compute_advantages(
    rewards: torch.Tensor, group_size: int | None = None, kind: str = "loo", **kwargs
) -> torch.Tensor:
    """Advantages by rule name ("loo", "mean", "mean_std", "loo_positive"); see the module
    docstring."""
    return get_advantage_fn(kind)(rewards, group_size, **kwargs)


def select_groups(rewards: torch.Tensor, group_size: int, keep: int, *, informative_first: bool = True) -> list[int]:
    """Which ``keep`` groups of a round to train on (DAPO's dynamic sampling, without the
    re-sampling loop): groups whose rewards differ (they carry a gradient) first, in order,
    then the uniform ones, in order, so that every round trains on the same number of groups
    (fixed compute; DDP processes stay in step). ``informative_first=False``: the first
    ``keep`` groups.

    >>> select_groups(torch.tensor([1., 1., 0., 1., 2., 2., 0., 3.]), 2, 2)
    [1, 3]
    >>> select_groups(torch.tensor([1., 1., 0., 1.]), 2, 2)
    [1, 0]
    """
    n = _grouped(rewards, group_size).shape[0]
    if not 1 <= keep <= n:
        raise ValueError(f"keep={keep} groups must lie in [1, {n}] (the groups rolled out)")
    order = list(range(n))
    if informative_first:
        varied = varied_groups(rewards, group_size).tolist()
        order = [g for g in order if varied[g]] + [g for g in order if not varied[g]]
    return order[:keep]


def varied_groups(rewards: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    """(groups,) bool: whether a group's rewards are not all equal (it has a gradient).

    >>> varied_groups(torch.tensor([1., 1., 0., 1.]), 2).tolist()
    [False, True]
    """
    r = _grouped(rewards, group_size)
    return (r != r[:, :1]).any(dim=1)
