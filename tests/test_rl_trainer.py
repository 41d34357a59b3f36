"""The GRPO trainer (demask.training.rl.grpo) on tiny random models with scripted rollouts."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from helpers import tiny_model

from demask.tasks.base import Task
from demask.training.config import TrainConfig
from demask.training.loop import Callback
from demask.training.rl import RewardBreakdown, get_estimator
from demask.training.rl.estimators import CoupledEstimator
from demask.training.rl.grpo import GRPOConfig, mask_seed, mix_into, train_grpo
from demask.training.rl.rollouts import RolloutBatch

EOS, PAD = 2, 0
PROMPT = [5, 6, 7, 8]
GOOD = [10, 11, 12, EOS, PAD, PAD]
BAD = [20, 21, 22, 23, 24, EOS]


def tasks(n: int = 4) -> list[Task]:
    return [Task(f"t{i}", f"prompt {i}", ("assert True",), "f") for i in range(n)]


@dataclass
class ScriptedRollouts:
    """Each row is GOOD or BAD: alternating, or drawn from the round's generator (random=True)."""

    random: bool = False

    def __call__(self, model, round_tasks, group_size, generator):
        n = len(round_tasks) * group_size
        if self.random:
            good = torch.rand(n, generator=generator) < 0.5
        else:
            good = torch.arange(n) % 2 == 0
        rows = [PROMPT + (GOOD if g else BAD) for g in good.tolist()]
        ids = torch.tensor(rows)
        return RolloutBatch(
            ids,
            torch.ones_like(ids, dtype=torch.bool),
            len(PROMPT),
            ["good" if g else "bad" for g in good.tolist()],
            [3] * n,
        )


def reward_for(rewarded: str):
    def reward(completions, task_list, sandbox=None):
        assert len(completions) == len(task_list)
        return [RewardBreakdown(2.5 if c == rewarded else 0.0, 1.0 if c == rewarded else 0.0, 1.0) for c in completions]

    return reward


def grpo(**kw) -> GRPOConfig:
    base = dict(group_size=4, prompts_per_step=2, inner_iterations=2, estimator="coupled", beta=0.01)
    return GRPOConfig(**{**base, **kw})


def train_cfg(**kw) -> TrainConfig:
    base = dict(max_steps=2, lr=1e-3, warmup_steps=0, log_every=1, progress=False, beta2=0.99, grad_clip=1.0)
    return TrainConfig(**{**base, **kw})


def seq_logp(model, completion) -> float:
    """Deterministic (fully masked) log-prob of PROMPT + completion, through its first end."""
    ids = torch.tensor([PROMPT + completion])
    with torch.no_grad():
        lp = get_estimator("full_mask").log_probs(model, ids, torch.ones_like(ids, dtype=torch.bool), len(PROMPT), 0)
    n = completion.index(EOS) + 1
    return float(lp[0, :n].sum())


def test_one_round_changes_every_parameter():
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = train_grpo(grpo(), train_cfg(), model, tasks(), rollout_fn=ScriptedRollouts(), reward_fn=reward_for("good"))
    assert res.step == 2
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert sorted(changed) == sorted(before)
    # half the rollouts are rewarded: reward mean 1.25, pass rate 0.5, no group without signal
    assert res.metrics["reward_mean"] == pytest.approx(1.25)
    assert res.metrics["pass_rate"] == pytest.approx(0.5)
    assert res.metrics["nonzero_adv"] == 1.0
    # GOOD counts 4 tokens (through its EOS), BAD 6
    assert res.metrics["completion_tokens"] == pytest.approx(5.0)


def test_kl_ratio_and_clip_are_exact_right_after_init():
    res = train_grpo(
        grpo(inner_iterations=1),
        train_cfg(max_steps=1),
        tiny_model(),
        tasks(),
        rollout_fn=ScriptedRollouts(),
        reward_fn=reward_for("good"),
    )
    m = res.metrics
    assert m["kl"] == 0.0 and m["ratio_mean"] == 1.0 and m["clip_fraction"] == 0.0


def test_kl_becomes_positive_once_the_policy_moves():
    # mu = 2: the second update's log-probs come from moved weights, the reference stays put
    res = train_grpo(
        grpo(), train_cfg(), tiny_model(), tasks(), rollout_fn=ScriptedRollouts(), reward_fn=reward_for("good")
    )
    assert res.metrics["kl"] > 0.0


class SpyEstimator(CoupledEstimator):
    """Records (which model, grad enabled, seed) of every log_probs call."""

    def __init__(self, policy, reference):
        super().__init__()
        self.policy, self.reference, self.calls = policy, reference, []

    def log_probs(self, model, input_ids, attention_mask, prompt, seed):
        who = "policy" if model is self.policy else "reference" if model is self.reference else "?"
        self.calls.append((who, torch.is_grad_enabled(), seed))
        assert attention_mask is not None and attention_mask.shape == input_ids.shape
        return super().log_probs(model, input_ids, attention_mask, prompt, seed)


def test_mask_seeds_shared_within_an_iteration_fresh_across_iterations():
    policy = tiny_model()
    reference = copy.deepcopy(policy)
    spy = SpyEstimator(policy, reference)
    mu, rounds = 3, 2
    train_grpo(
        grpo(inner_iterations=mu),
        train_cfg(max_steps=mu * rounds, seed=7),
        policy,
        tasks(),
        reference=reference,
        estimator=spy,
        rollout_fn=ScriptedRollouts(),
        reward_fn=reward_for("good"),
    )
    per_round = len(spy.calls) // rounds
    # per round: old log-probs for iterations 1..mu-1, reference for 0..mu-1, current for 0..mu-1
    assert per_round == (mu - 1) + mu + mu
    seen = set()
    for r in range(rounds):
        calls = spy.calls[r * per_round : (r + 1) * per_round]
        old = [s for who, grad, s in calls if who == "policy" and not grad]
        ref = [s for who, grad, s in calls if who == "reference"]
        cur = [s for who, grad, s in calls if who == "policy" and grad]
        assert all(not grad for who, grad, _ in calls if who == "reference")
        assert cur == ref, "current and reference share the seed of each iteration"
        assert old == cur[1:], "old log-probs use the seed of their iteration"
        assert cur == [mask_seed(7, r, i, 0, 0) for i in range(mu)]
        assert len(set(cur)) == mu, "a fresh seed for every inner iteration"
        assert not seen & set(cur), "and for every round"
        seen |= set(cur)


@pytest.mark.parametrize("rewarded, winner, loser", [("good", GOOD, BAD), ("bad", BAD, GOOD)])
def test_rewarded_completion_becomes_more_likely(rewarded, winner, loser):
    model = tiny_model()
    win0, lose0 = seq_logp(model, winner), seq_logp(model, loser)
    train_grpo(
        grpo(beta=0.0),
        train_cfg(max_steps=6),
        model,
        tasks(),
        rollout_fn=ScriptedRollouts(),
        reward_fn=reward_for(rewarded),
    )
    win1, lose1 = seq_logp(model, winner), seq_logp(model, loser)
    assert win1 > win0 + 0.1, (win0, win1)
    assert lose1 < lose0 - 0.1, (lose0, lose1)


def pad_fill_logp(model) -> float:
    """Fully masked log-prob of GOOD's two pads after its end token."""
    ids = torch.tensor([PROMPT + GOOD])
    with torch.no_grad():
        lp = get_estimator("full_mask").log_probs(model, ids, torch.ones_like(ids, dtype=torch.bool), len(PROMPT), 0)
    return float(lp[0, GOOD.index(EOS) + 1 :].sum())


def test_loss_tokens_all_also_trains_the_pad_fill_after_the_end():
    """Rewarding GOOD: with loss_tokens 'all' the pads after its end token are targets and
    become likelier, by far more than when only the tokens through the end are scored, and
    a completion's counted tokens (the log's completion_tokens) stay those through its end."""
    gains = {}
    for mode in ("through_end", "all"):
        model = tiny_model()
        before = pad_fill_logp(model)
        res = train_grpo(
            grpo(beta=0.0, loss_tokens=mode),
            train_cfg(max_steps=6),
            model,
            tasks(),
            rollout_fn=ScriptedRollouts(),
            reward_fn=reward_for("good"),
        )
        gains[mode] = pad_fill_logp(model) - before
        assert res.metrics["completion_tokens"] == pytest.approx(5.0)
    assert gains["all"] > 0.5 and gains["all"] > gains["through_end"] + 0.5, gains


def test_micro_batches_give_the_same_update_as_one_batch():
    # full_mask is deterministic, so splitting the batch changes only the summation order
    a, b = tiny_model(), tiny_model()
    kw = dict(rollout_fn=ScriptedRollouts(), reward_fn=reward_for("good"))
    train_grpo(grpo(estimator="full_mask"), train_cfg(), a, tasks(), **kw)
    train_grpo(grpo(estimator="full_mask", micro_batch_size=3), train_cfg(), b, tasks(), **kw)
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6, msg=n)


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, step, metrics):
        if step == self.step:
            raise KeyboardInterrupt


def test_resume_ends_with_the_same_weights(tmp_path):
    kw = dict(rollout_fn=ScriptedRollouts(random=True), reward_fn=reward_for("good"))
    full = tiny_model()
    train_grpo(grpo(), train_cfg(max_steps=6, save_every=2, out_dir=str(tmp_path / "a")), full, tasks(), **kw)

    part = tiny_model()
    cfg = train_cfg(max_steps=6, save_every=2, out_dir=str(tmp_path / "b"))
    with pytest.raises(KeyboardInterrupt):
        train_grpo(grpo(), cfg, part, tasks(), callbacks=[StopAt(4)], **kw)
    resumed = tiny_model(seed=99)  # weights, optimizer and reference all come from the checkpoint
    res = train_grpo(grpo(), cfg, resumed, tasks(), resume=True, **kw)
    assert res.step == 6
    for (n, pa), (_, pb) in zip(full.named_parameters(), resumed.named_parameters()):
        assert torch.equal(pa, pb), n
    log = (tmp_path / "b" / "grpo_log.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in log[1:]] == [2, 4, 6]


def test_resume_refuses_a_different_group_size(tmp_path):
    kw = dict(rollout_fn=ScriptedRollouts(), reward_fn=reward_for("good"))
    cfg = train_cfg(out_dir=str(tmp_path))
    train_grpo(grpo(), cfg, tiny_model(), tasks(), **kw)
    with pytest.raises(ValueError, match="group_size"):
        train_grpo(grpo(group_size=2), cfg.replace(max_steps=2), tiny_model(), tasks(), resume=True, **kw)


def test_reference_mixup_moves_the_reference_toward_the_policy():
    policy, ref = tiny_model(seed=0), tiny_model(seed=1)
    p0 = policy.lm_head.weight.detach().clone()
    r0 = ref.lm_head.weight.detach().clone()
    mix_into(ref, policy, 0.6)
    torch.testing.assert_close(ref.lm_head.weight, 0.6 * p0 + 0.4 * r0)
    torch.testing.assert_close(policy.lm_head.weight, p0)


def test_reference_is_resynced_every_n_updates():
    policy = tiny_model()
    ref = copy.deepcopy(policy)
    r0 = ref.lm_head.weight.detach().clone()
    train_grpo(
        grpo(ref_sync_every=2, ref_mixup=1.0),
        train_cfg(),
        policy,
        tasks(),
        reference=ref,
        rollout_fn=ScriptedRollouts(),
        reward_fn=reward_for("good"),
    )
    assert not torch.equal(ref.lm_head.weight, r0)
    torch.testing.assert_close(ref.lm_head.weight, policy.lm_head.weight)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(estimator="coupld"), "coupled"),
        (dict(advantage="loo", group_size=1), "group_size"),
        (dict(ref_mixup=0.0), "ref_mixup"),
        (dict(epsilon=1.5), "epsilon"),
        (dict(oversample=2), "filter_groups"),
        (dict(oversample=0), "oversample"),
        (dict(loss_tokens="everything"), "through_end"),
        (dict(greedy_rollouts=2), "one per group"),
        (dict(greedy_rollouts=1, group_size=1, advantage="mean"), "below group_size"),
    ],
)
def test_config_errors_name_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        GRPOConfig(**bad)


def test_max_steps_must_be_a_multiple_of_mu():
    with pytest.raises(ValueError, match="multiple of grpo.inner_iterations"):
        train_grpo(
            grpo(inner_iterations=2),
            train_cfg(max_steps=3),
            tiny_model(),
            tasks(),
            rollout_fn=ScriptedRollouts(),
            reward_fn=reward_for("good"),
        )


def test_time_budget_stops_after_a_round_and_saves_it(tmp_path):
    cfg = train_cfg(max_steps=10, save_every=0, log_every=100, out_dir=str(tmp_path))
    res = train_grpo(
        grpo(max_seconds=1e-6), cfg, tiny_model(), tasks(), rollout_fn=ScriptedRollouts(), reward_fn=reward_for("good")
    )
    assert res.step == 2  # one round of mu = 2 updates
    assert res.checkpoint is not None and res.checkpoint.name == "checkpoint-0000002"
    assert res.metrics["reward_mean"] == pytest.approx(1.25)  # logged as a last round


class HalfUniformRollouts:
    """Task tN's group is all GOOD for even N, alternating GOOD/BAD for odd N."""

    def __init__(self):
        self.rolled: list[str] = []

    def __call__(self, model, round_tasks, group_size, generator):
        rows, texts = [], []
        for t in round_tasks:
            self.rolled.append(t.task_id)
            for j in range(group_size):
                good = int(t.task_id[1:]) % 2 == 0 or j % 2 == 0
                rows.append(PROMPT + (GOOD if good else BAD))
                texts.append("good" if good else "bad")
        ids = torch.tensor(rows)
        return RolloutBatch(ids, torch.ones_like(ids, dtype=torch.bool), len(PROMPT), texts, [3] * len(rows))


class RowCounter(CoupledEstimator):
    def __init__(self):
        super().__init__()
        self.rows: set[int] = set()

    def log_probs(self, model, input_ids, attention_mask, prompt, seed):
        self.rows.add(input_ids.shape[0])
        return super().log_probs(model, input_ids, attention_mask, prompt, seed)


def test_filter_groups_trains_on_the_oversampled_groups_whose_rewards_differ():
    rollouts, est = HalfUniformRollouts(), RowCounter()
    res = train_grpo(
        grpo(prompts_per_step=2, oversample=4, filter_groups=True),
        train_cfg(),
        tiny_model(),
        tasks(8),
        rollout_fn=rollouts,
        reward_fn=reward_for("good"),
        estimator=est,
    )
    assert len(rollouts.rolled) == 8  # 4 x 2 prompts rolled out ...
    assert est.rows == {2 * 4}  # ... 2 groups of 4 trained on ...
    assert res.metrics["informative_groups"] == 0.5
    assert res.metrics["nonzero_adv"] == 1.0  # ... the two whose rewards differ
    # the round's reward and pass rate cover all 32 rollouts (4 all-good groups, 4 half-good)
    assert res.metrics["pass_rate"] == pytest.approx(0.75)
    assert res.metrics["reward_mean"] == pytest.approx(2.5 * 0.75)
    # without the filter, the first prompts_per_step groups: here one uniform, one not
    plain, est = HalfUniformRollouts(), RowCounter()
    res = train_grpo(
        grpo(prompts_per_step=8),
        train_cfg(),
        tiny_model(),
        tasks(8),
        rollout_fn=plain,
        reward_fn=reward_for("good"),
        estimator=est,
    )
    assert est.rows == {8 * 4} and res.metrics["nonzero_adv"] == 0.5
