"""The learned unmasking policy's RL trainer: reward, per-step PPO ratio and clip, expert
steering's mixture, log-probs recomputed from traces, and a training round on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import ROOT, random_policy_net, tiny_model

from demask.decoding import DecodeConfig, LearnedPolicy, generate
from demask.decoding.policy_net import PolicyNet, PolicyNetConfig, load_policy
from demask.tasks.base import Task
from demask.training.config import TrainConfig
from demask.training.posttrain import ALGORITHMS
from demask.training.posttrain.unmasking import (
    PolicyRollouts,
    UnmaskingBatch,
    UnmaskingConfig,
    UnmaskingGRPO,
    mixture_logprob,
    nfe_reward,
    step_logprobs,
    steps_from_trace,
    train_unmasking_policy,
)
from demask.training.rl.rewards import RewardBreakdown, RewardFn, get_reward


def test_reward_on_hand_computed_nfe_and_correctness():
    assert nfe_reward(True, 12, 48, 1.0) == pytest.approx(37 / 48)
    assert nfe_reward(True, 12, 48, 10.0) == pytest.approx((37 / 48) ** 10)
    assert nfe_reward(True, 100, 48, 1.0) == pytest.approx(1 / 48)  # NFE capped at L
    assert nfe_reward(True, 1, 48, 0.0) == 1.0  # alpha 0: correctness only
    assert nfe_reward(False, 1, 48, 1.0) == 0.0
    assert "nfe" in get_reward("correct_nfe").requirements  # declared: the round passes the NFE


def _decode(dllm, net, **kw):
    fn = lambda f: net.probabilities(f.masked, f.confidence, f.time)  # noqa: E731
    cfg = DecodeConfig(gen_length=8, block_length=4, policy=LearnedPolicy(fn, force_nonempty=False), trace=True, **kw)
    return generate(dllm, [[5, 6, 7], [8, 9]], cfg, generator=torch.Generator().manual_seed(0))


def test_log_probs_recomputed_from_the_trace_equal_the_decoders():
    dllm, net = tiny_model().eval(), random_policy_net()
    out = _decode(dllm, net, early_stop=False)
    steps = steps_from_trace(out.trace, 0, expert=False)
    recorded = torch.cat([v for _, v in out.trace.policy_info("logprob")])
    capped = torch.cat([v for _, v in out.trace.policy_info("capped")])
    recorded = recorded[~capped]  # the cap's steps are dropped: their action changed nothing
    with torch.no_grad():
        assert torch.allclose(step_logprobs(net, steps), recorded, atol=1e-4)


def test_each_block_is_capped_at_its_length_in_steps():
    dllm, net = tiny_model().eval(), PolicyNet()  # p = 0.12: empty steps are common
    with torch.no_grad():
        net.out.bias.fill_(-20.0)  # never commits on its own
    out = _decode(dllm, net, early_stop=False)
    assert out.nfe == [8, 8]  # two blocks of 4, each ended by its step cap
    assert out.tokens.shape[1] - out.prompt_length == 8


def test_per_step_ppo_ratio_and_clip_on_hand_computed_inputs():
    net = random_policy_net()
    dllm = tiny_model().eval()
    steps = steps_from_trace(_decode(dllm, net, early_stop=False).trace, 0, expert=False)
    steps = type(steps)(**{k: v[:2] for k, v in vars(steps).items()})  # two steps
    steps.row = torch.tensor([0, 1])
    with torch.no_grad():
        lp = step_logprobs(net, steps)
    ratios = torch.tensor([2.0, 0.25])
    batch = UnmaskingBatch(steps, torch.tensor([1.0, -1.0]), lp - ratios.log())
    loss, m = UnmaskingGRPO(epsilon=0.5).loss(net, batch)
    # step 0: -min(2 * 1, 1.5 * 1) = -1.5; step 1: -min(0.25 * -1, 0.5 * -1) = 0.5
    assert float(loss.detach()) == pytest.approx((-1.5 + 0.5) / 2, abs=1e-5)
    assert m["ratio_mean"] == pytest.approx(1.125, abs=1e-5) and m["clip_fraction"] == 1.0


def test_expert_steering_mixture_log_prob():
    lp = torch.tensor([math.log(0.5), math.log(1e-9)])
    mix = mixture_logprob(lp, 8, 2)
    assert mix.tolist() == pytest.approx([math.log(0.8 * 0.5 + 0.1), math.log(0.8e-9 + 0.1)], rel=1e-6)
    assert float(mix[1]) > math.log(0.099)  # bounded below: the ratio cannot explode


class NFEOnly(RewardFn):
    """Rewards fewer forward passes (no sandbox): enough to move the policy."""

    requires = frozenset({"nfe"})

    def __call__(self, completions, tasks, sandbox=None):
        raise AssertionError("score_round is the entry point")

    def score_round(self, completions, tasks, sandbox, nfe):
        return [RewardBreakdown(nfe_reward(True, n, 8, 1.0), 1.0, 1.0) for n in nfe]


def test_a_training_round_changes_the_policy_not_the_frozen_dllm_and_saves_a_usable_policy(tmp_path):
    dllm, net = tiny_model().eval(), PolicyNet(PolicyNetConfig(block_length=4, output_bias=0.0))  # p = 0.5
    before_dllm = {k: v.clone() for k, v in dllm.state_dict().items()}
    before = {k: v.clone() for k, v in net.state_dict().items()}
    tasks = [Task(f"t{i}", f"p{i}", ("assert True",), "f") for i in range(4)]
    config = UnmaskingConfig(group_size=4, prompts_per_step=2, inner_iterations=2, experts=1,
                             decode={"gen_length": 8, "block_length": 4})  # fmt: skip
    train = TrainConfig(max_steps=2, lr=1e-3, warmup_steps=0, log_every=1, progress=False, out_dir=str(tmp_path))
    loop = train_unmasking_policy(config, train, net, dllm, _Tok(), tasks, reward_fn=NFEOnly())
    assert loop.done == 2
    assert any(not torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(torch.equal(v, before_dllm[k]) for k, v in dllm.state_dict().items())
    assert loop.last_row["steps"] > 0 and 0.0 < loop.last_row["p_mean"] < 1.0
    saved = load_policy(loop.last_checkpoint)  # every checkpoint is a policy folder
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), net.state_dict().values()))
    assert ALGORITHMS.get("unmasking-grpo") is UnmaskingGRPO


def test_expert_rollouts_join_each_group_and_are_flagged():
    dllm, net = tiny_model().eval(), PolicyNet()
    rollouts = PolicyRollouts(dllm, _Tok(), DecodeConfig(gen_length=8, block_length=4), experts=2)
    tasks = [Task("a", "p", (), "f"), Task("b", "pq", (), "f")]
    batch = rollouts(net, tasks, 5, torch.Generator().manual_seed(0))  # G = 3, E = 2
    assert len(batch) == 10 and batch.traces is not None
    flags = [bool(t.expert.all()) if len(t) else None for t in batch.traces]
    assert flags == [False, False, False, True, True] * 2


class _Tok:
    def encode(self, text: str) -> list[int]:
        return [3 + (ord(c) % 20) for c in text]

    def decode(self, ids) -> str:
        return " ".join(str(i) for i in ids)


POLICY_RECIPES = sorted((ROOT / "recipes").glob("**/policy_*.yaml"))


@pytest.mark.parametrize("path", POLICY_RECIPES, ids=lambda p: p.relative_to(ROOT / "recipes").as_posix())
def test_shipped_policy_recipes_load_with_the_papers_rl_settings(path):
    from demask.training.posttrain.unmasking import load_policy_recipe

    recipe = load_policy_recipe(path)
    p = recipe.policy
    assert (p.group_size, p.epsilon, p.inner_iterations) == (8, 0.5, 2)
    assert recipe.train.grad_clip == 0.2 and recipe.train.weight_decay == 0.1
    with pytest.raises(ValueError, match="did you mean"):
        load_policy_recipe(path, ["policy.alhpa=3"])


def test_policy_train_command_reports_a_bad_recipe_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from demask.cli.main import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("policy: {group_size: 0}\n")
    result = CliRunner().invoke(app, ["policy-train", "--recipe", str(bad)])
    assert result.exit_code == 2 and "group_size must be at least 1" in result.output


def test_expert_steps_are_scored_over_the_policys_block_not_the_experts():
    dllm, net = tiny_model().eval(), PolicyNet()
    rollouts = PolicyRollouts(dllm, _Tok(), DecodeConfig(gen_length=8), experts=1, expert_block_length=4)
    batch = rollouts(net, [Task("a", "p", (), "f")], 2, torch.Generator().manual_seed(0))
    expert_steps = batch.traces[1]
    assert bool(expert_steps.expert.all()) and bool(expert_steps.block.all())  # the policy acts on all 8
    assert not bool(batch.traces[0].expert.any())


def test_behaviour_cloning_fits_the_threshold_experts_decisions():
    """The warm start: on the threshold expert's traces of a tiny model, imitation lowers the
    cross-entropy and the network then commits where the expert did (and not elsewhere)."""
    from demask.training.posttrain.unmasking import expert_steps, imitate

    dllm = tiny_model().eval()
    tasks = [Task(str(i), "abcdefg"[: 1 + i % 6], (), "f") for i in range(12)]
    steps = expert_steps(dllm, _Tok(), tasks, DecodeConfig(gen_length=8, block_length=4), threshold=0.5, batch=4)
    assert len(steps) > 0 and bool(steps.expert.all())
    net = PolicyNet(PolicyNetConfig(block_length=4, gen_length=8))
    losses = imitate(net, steps, 150, lr=3e-3)
    assert sum(losses[-10:]) / 10 < 0.5 * losses[0]
    with torch.no_grad():
        p = net.probabilities(steps.masked, steps.confidence, steps.time)
    where = steps.masked & steps.block
    agree = float(((p > 0.5) == steps.action)[where].float().mean())
    rate = float(steps.action[where].float().mean())
    base = max(rate, 1 - rate)  # what ignoring the features would reach
    assert agree > base + 0.05, f"agreement {agree:.2f}, no better than always answering the majority ({base:.2f})"


def test_max_updates_stops_early_but_keeps_the_schedule_of_max_steps(tmp_path):
    dllm, net = tiny_model().eval(), PolicyNet(PolicyNetConfig(block_length=4, output_bias=0.0))
    tasks = [Task(f"t{i}", f"p{i}", ("assert True",), "f") for i in range(4)]
    config = UnmaskingConfig(group_size=2, prompts_per_step=2, inner_iterations=2, max_updates=2,
                             decode={"gen_length": 8, "block_length": 4})  # fmt: skip
    train = TrainConfig(max_steps=20, lr=1e-3, warmup_steps=4, min_lr_ratio=0.1, log_every=1, progress=False,
                        out_dir=str(tmp_path))  # fmt: skip
    loop = train_unmasking_policy(config, train, net, dllm, _Tok(), tasks, reward_fn=NFEOnly())
    assert loop.done == 2 and loop.stopping  # one round of mu = 2 updates, then stopped
    assert loop.last_row["lr"] == pytest.approx(1e-3 * 2 / 4)  # still warming up over 4 of 20 steps
    assert load_policy(loop.last_checkpoint) is not None  # the last round is saved
