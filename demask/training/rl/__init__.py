"""RL post-training pieces: rewards, log-prob estimators, advantages and the GRPO loss.

Pure parts of coupled-GRPO (DiffuCoder) and its baselines; the rollout/update loop that
strings them together lives with the training loop. See docs/grpo.md.
"""

from demask.training.rl.advantages import (
    ADVANTAGES,
    compute_advantages,
    get_advantage_fn,
    loo_advantages,
    mean_advantages,
    mean_std_advantages,
)
from demask.training.rl.estimators import (
    LogProbEstimator,
    MaskPlan,
    estimator_names,
    get_estimator,
    register_estimator,
)
from demask.training.rl.grpo_loss import GRPOLossConfig, grpo_loss, k3_kl, tokens_through_first_end
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

__all__ = [
    "ADVANTAGES", "GRPOLossConfig", "LogProbEstimator", "MaskPlan", "RewardBreakdown", "RewardFn",
    "code_reward", "combine", "compute_advantages", "compute_rewards", "estimator_names",
    "extract_code_block", "format_reward_body", "format_reward_chat", "get_advantage_fn",
    "get_estimator", "get_reward", "grpo_loss", "k3_kl", "loo_advantages", "mean_advantages",
    "mean_std_advantages", "register_estimator", "register_reward", "reward_names",
    "tokens_through_first_end",
]
