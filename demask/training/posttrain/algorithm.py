"""The post-training algorithm protocol: one small class per algorithm, registered by name.

An algorithm says what it needs and computes a loss; the trainers around it (GRPO's online
rounds, the offline ranking trainer) own the data, the update skeleton
(:class:`~demask.training.updates.UpdateLoop`) and the logs::

    @ALGORITHMS.register("my-algo")
    class MyAlgorithm(Algorithm):
        requires = frozenset({"ranked"})          # what the trainer must provide

        def loss(self, model, batch, **context):
            ...
            return loss, {"my_metric": value}      # metrics: a named dict of floats

Requirements are declared, never probed: ``"rollouts"`` and ``"reward"`` (online RL: a round
from :func:`~demask.training.posttrain.rounds.collect_round`), ``"reference"`` (a frozen
reference model), ``"ranked"`` (the JSONL of the RRTF rank stage). A reward that runs
programs declares ``"sandbox"`` (:attr:`demask.training.rl.rewards.RewardFn.requires`), one
that penalises compute ``"nfe"`` (it is then given each rollout's forward-pass count).

Registered here: ``grpo`` (:mod:`demask.training.rl.grpo`), ``unmasking-grpo`` (the learned
unmasking policy, :mod:`demask.training.posttrain.unmasking`), ``rrtf``, ``rrhf``, ``sft``
(SFT on the teacher's responses of the RRTF pairs) and ``rejection-sampling`` (SFT on the
student's own passing samples) (:mod:`demask.training.posttrain.ranking`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from demask.registry import Registry

REQUIREMENTS = frozenset({"rollouts", "reward", "reference", "ranked", "sandbox", "nfe"})


class Algorithm(ABC):
    """A post-training algorithm: its declared needs and its loss."""

    name: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any, **context: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of ``batch`` (with gradients into ``model``) and named float metrics."""


ALGORITHMS: Registry[type[Algorithm]] = Registry("post-training algorithm", base=Algorithm)
ALGORITHMS.register_lazy("grpo", "demask.training.rl.grpo:GRPO")
ALGORITHMS.register_lazy("unmasking-grpo", "demask.training.posttrain.unmasking:UnmaskingGRPO", "policy-grpo")
ALGORITHMS.register_lazy("rrtf", "demask.training.posttrain.ranking:RRTF")
ALGORITHMS.register_lazy("rrhf", "demask.training.posttrain.ranking:RRHF")
ALGORITHMS.register_lazy("sft", "demask.training.posttrain.ranking:TeacherSFT", "sft-teacher")
ALGORITHMS.register_lazy("rejection-sampling", "demask.training.posttrain.ranking:RejectionSampling", "rejection")


def check_requirements(algorithm: type[Algorithm] | Algorithm, provided: set[str] | frozenset[str]) -> None:
    """Raise when the trainer does not provide what ``algorithm`` declared it needs."""
    cls = algorithm if isinstance(algorithm, type) else type(algorithm)
    missing = sorted(cls.requires - set(provided))
    if missing:
        raise ValueError(
            f"algorithm {cls.name or cls.__name__!r} needs {', '.join(missing)}, which this trainer does not "
            f"provide (it provides {', '.join(sorted(provided)) or 'nothing'}); run it with the trainer that does"
        )
