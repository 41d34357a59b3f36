"""RL post-training: rewards, log-prob estimators, advantages, the GRPO loss, rollouts and
the coupled-GRPO trainer (:func:`train_grpo`, ``demask grpo``). See docs/grpo.md.

Names are imported on first use (PEP 562), so that the post-training framework
(:mod:`demask.training.posttrain`) and GRPO can import each other's modules freely.
"""

from __future__ import annotations

import importlib
from typing import Any

# The function shares its name with its module: bound here, or importing the module
# demask.training.rl.grpo_loss anywhere would shadow it with the module object.
from demask.training.rl.grpo_loss import grpo_loss as grpo_loss

_EXPORTS = {
    "ADVANTAGES": "advantages",
    "DecodingRollouts": "rollouts",
    "GRPOConfig": "grpo",
    "GRPOLossConfig": "grpo_loss",
    "GRPORecipe": "grpo_recipe",
    "GRPOResult": "grpo",
    "LogProbEstimator": "estimators",
    "MaskPlan": "estimators",
    "RewardBreakdown": "rewards",
    "RewardFn": "rewards",
    "RolloutBatch": "rollouts",
    "RolloutFn": "rollouts",
    "code_reward": "rewards",
    "combine": "rewards",
    "compute_advantages": "advantages",
    "compute_rewards": "rewards",
    "estimator_names": "estimators",
    "extract_code_block": "rewards",
    "format_reward_body": "rewards",
    "format_reward_chat": "rewards",
    "get_advantage_fn": "advantages",
    "get_estimator": "estimators",
    "get_reward": "rewards",
    "grpo_loss": "grpo_loss",
    "k3_kl": "grpo_loss",
    "load_grpo_recipe": "grpo_recipe",
    "loo_advantages": "advantages",
    "mean_advantages": "advantages",
    "mean_std_advantages": "advantages",
    "register_estimator": "estimators",
    "register_reward": "rewards",
    "reward_names": "rewards",
    "run_grpo_recipe": "grpo_recipe",
    "select_groups": "advantages",
    "tokens_through_first_end": "grpo_loss",
    "train_grpo": "grpo",
    "varied_groups": "advantages",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'demask.training.rl' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"demask.training.rl.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
