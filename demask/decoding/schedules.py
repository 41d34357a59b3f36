"""How many positions a fixed-budget policy commits at each step of a block.

A schedule maps (masked positions left in the block, step index, the block's steps) to a
count per row. The last step of a block always commits everything that is left. Adaptive
policies (threshold, factor, ...) do not use a schedule.

- ``llada``: m masked positions over k steps -> ``m // k`` per step and one more in each of
  the first ``m % k`` steps (LLaDA's ``get_num_transfer_tokens``). It is computed from the
  tokens still masked as ``ceil(n / steps_left)``, which gives the same split (and stays
  right for rows that joined late or committed differently).
- ``dream``: timesteps ``linspace(1, eps, steps + 1)`` (eps = 1e-3, float32 as in Dream);
  going from t to s commits ``int(n * (1 - s / t))`` of the n still masked, all at the last
  step. With steps = block length the first step commits nothing (a wasted NFE, kept for
  parity). Unlike Dream, n is counted per row, not averaged over the batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from demask.registry import Registry


class Schedule(ABC):
    name: str

    @abstractmethod
    def counts(self, n_masked: torch.Tensor, step: int, steps: int) -> torch.Tensor:
        """(A,) long: positions to commit at ``step`` (0-based) of ``steps``, given (A,) masked."""


SCHEDULES: Registry[type[Schedule]] = Registry("schedule", base=Schedule)


@SCHEDULES.register("llada", "equal", "linear")
class LLaDASchedule(Schedule):
    def counts(self, n_masked: torch.Tensor, step: int, steps: int) -> torch.Tensor:
        left = steps - step
        return torch.div(n_masked + left - 1, left, rounding_mode="floor")  # ceil(n / left)


@SCHEDULES.register("dream", "linspace")
class DreamSchedule(Schedule):
    def __init__(self, eps: float = 1e-3) -> None:
        self.eps = eps

    def counts(self, n_masked: torch.Tensor, step: int, steps: int) -> torch.Tensor:
        if step >= steps - 1:
            return n_masked.clone()
        ts = torch.linspace(1, self.eps, steps + 1)  # float32, as Dream computes it
        t, s = ts[step], ts[step + 1]
        return (n_masked.to(torch.float32) * (1 - s / t)).long()  # 0-dim CPU factor: no sync


def schedule_class(name: str) -> type[Schedule]:
    return SCHEDULES.get(name)


def llada_split(m: int, k: int) -> list[int]:
    """LLaDA's split of m masked positions over k steps: [m//k + 1] * (m%k) + [m//k] * rest."""
    return [m // k + (i < m % k) for i in range(k)]
