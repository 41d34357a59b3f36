"""One round of online post-training data: :func:`collect_round`.

    rollouts   = G completions per task, through the decoding engine (NFE, optional traces)
    rewards    = reward(completions, tasks, sandbox): one call for the whole round, so a
                 reward may look at every completion at once (shuffled controls, ranks)
    groups     = all, or the ``keep`` groups whose rewards differ first (``filter_groups``)
    advantages = the registered advantage rule over each kept group

The round's figures (:attr:`Round.metrics`) cover every rollout; the batch, rewards and
advantages only the kept groups. GRPO (:mod:`demask.training.rl.grpo`) trains on rounds;
the learned unmasking policy's trainer will too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from demask.tasks.base import Task
from demask.training.rl.advantages import compute_advantages, select_groups, varied_groups
from demask.training.rl.rewards import RewardBreakdown, RewardFn
from demask.training.rl.rollouts import RolloutBatch, RolloutFn


@dataclass
class Round:
    """A round's kept groups and its figures.

    batch: the kept rollouts (groups contiguous); rewards, advantages: (N,) for them.
    scored: every rollout's reward breakdown (kept or not), in rollout order.
    metrics: reward_mean, pass_rate, format_mean, nfe_mean, informative_groups over every
        rollout; rollout_s (decoding) and reward_s (the reward call, the sandbox's time).
    """

    batch: RolloutBatch
    rewards: torch.Tensor
    advantages: torch.Tensor
    scored: list[RewardBreakdown]
    metrics: dict[str, float] = field(default_factory=dict)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def collect_round(
    model: nn.Module,
    tasks: Sequence[Task],
    rollouts: RolloutFn,
    reward: RewardFn,
    sandbox: Any,
    generator: torch.Generator,
    *,
    group_size: int,
    keep: int | None = None,
    filter_groups: bool = False,
    advantage: str = "loo",
    amp: Any = None,
) -> Round:
    """Roll out, score, select and weigh one round (module docstring).

    keep: groups to keep (None: all); filter_groups: groups whose rewards differ first.
    amp: a context manager for the decoding (bf16 autocast), or None.
    """
    import contextlib

    t0 = time.perf_counter()
    with torch.no_grad(), amp if amp is not None else contextlib.nullcontext():
        batch = rollouts(model, tasks, group_size, generator)
    device = generator.device
    if batch.input_ids.device != device:
        batch = batch.to(device)
    t_roll = time.perf_counter() - t0
    group_tasks = [t for t in tasks for _ in range(group_size)]
    scored = reward.score_round(batch.completions, group_tasks, sandbox, batch.nfe)
    rewards = torch.tensor([s.total for s in scored], dtype=torch.float32)
    metrics = {
        "reward_mean": float(rewards.mean()),
        "pass_rate": _mean([1.0 if s.code >= 1.0 else 0.0 for s in scored]),
        "format_mean": _mean([s.format for s in scored]),
        "nfe_mean": _mean([float(n) for n in batch.nfe]),
        "informative_groups": float(varied_groups(rewards, group_size).float().mean()),
        "rollout_s": t_roll,
        "reward_s": time.perf_counter() - t0 - t_roll,
    }
    if (keep is not None and keep < len(tasks)) or filter_groups:
        groups = select_groups(
            rewards, group_size, keep if keep is not None else len(tasks), informative_first=filter_groups
        )
        rows = [g * group_size + j for g in groups for j in range(group_size)]
        batch, rewards = batch.select(rows), rewards[rows]
    advantages = compute_advantages(rewards, group_size, advantage).to(device)
    return Round(batch, rewards, advantages, list(scored), metrics)
