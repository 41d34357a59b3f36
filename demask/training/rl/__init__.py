"""RL post-training: rewards, log-prob estimators, advantages, the GRPO loss, rollouts and
the coupled-GRPO trainer (:func:`train_grpo`, ``demask grpo``). See docs/grpo.md.
"""

from demask.training.rl.advantages import (
    ADVANTAGES,
    compute_advantages,
    get_advantage_fn,
    loo_advantages,
    mean_advantages,
    mean_std_advantages,
    select_groups,
    varied_groups,
)
from demask.training.rl.estimators import (
    LogProbEstimator,
    MaskPlan,
    estimator_names,
    get_estimator,
    register_estimator,
)
from demask.training.rl.grpo import GRPOConfig, GRPOResult, train_grpo
from demask.training.rl.grpo_loss import GRPOLossConfig, grpo_loss, k3_kl, tokens_through_first_end
from demask.training.rl.grpo_recipe import GRPORecipe, load_grpo_recipe, run_grpo_recipe
from demask.training.rl.rewards import (
    RewardBreakdown,
    RewardFn,
    code_reward,
    combine,
    compute_rewards,
    extract_code_block,
    format_reward_body,
    format_reward_chat,
    get_reward,
    register_reward,
    reward_names,
)
from demask.training.rl.rollouts import DecodingRollouts, RolloutBatch, RolloutFn

__all__ = [
    "ADVANTAGES",
    "DecodingRollouts",
    "GRPOConfig",
    "GRPOLossConfig",
    "GRPORecipe",
    "GRPOResult",
    "LogProbEstimator",
    "MaskPlan",
    "RewardBreakdown",
    "RewardFn",
    "RolloutBatch",
    "RolloutFn",
    "code_reward",
    "combine",
    "compute_advantages",
    "compute_rewards",
    "estimator_names",
    "extract_code_block",
    "format_reward_body",
    "format_reward_chat",
    "get_advantage_fn",
    "get_estimator",
    "get_reward",
    "grpo_loss",
    "k3_kl",
    "load_grpo_recipe",
    "loo_advantages",
    "mean_advantages",
    "mean_std_advantages",
    "register_estimator",
    "register_reward",
    "reward_names",
    "run_grpo_recipe",
    "select_groups",
    "tokens_through_first_end",
    "train_grpo",
    "varied_groups",
]
