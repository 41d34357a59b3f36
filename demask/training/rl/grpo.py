"""Coupled-GRPO and its baselines: the rollout / reward / update loop, :func:`train_grpo`.

One *round* (DiffuCoder, arXiv 2506.20639, section 4; docs/grpo.md)::

    prompts   = oversample * prompts_per_step tasks, from (seed, round)   (order.py)
    rollouts  = G completions per prompt, decoding.generate                (rollouts.py)
    rewards   = 2.0 * code + 0.5 * format by default, in the sandbox       (rewards.py)
    groups    = all, or with oversample/filter_groups the prompts_per_step groups whose
                rewards differ first, out of oversample * prompts_per_step   (advantages.py)
    A         = leave-one-out by default ("mean", "mean_std" by name)      (advantages.py)
    for i < mu:                       mask seed s_i, fresh per iteration, shared by
        logp     = estimator(policy)        the current, old and reference log-probs
        logp_old = estimator(policy as it was at the rollouts)   (no grad, before update 0)
        logp_ref = estimator(reference)                          (no grad)
        one optimizer update on grpo_loss(logp, logp_old, A, tokens through the first end)
    every ref_sync_every updates: ref <- mixup * policy + (1 - mixup) * ref

A *step* is one optimizer update, as in the SFT loop (``TrainConfig.max_steps``, the
learning-rate schedule and the log/eval/save cadence count updates); a round makes ``mu``
of them, so ``max_steps`` must be a multiple of ``mu``. Logging, evaluation and
checkpoints happen at the end of a round (when its updates reach a multiple of the
cadence). For iteration 0 the old log-probs are the current ones detached: the weights have
not moved and the seed is the same, so they are equal bit for bit (one forward saved).

The estimator is chosen by name (``coupled``, ``decoupled``, ``full_mask``, ``d1``;
``autoregressive`` for a causal model, which makes AR GRPO this same trainer). The algorithm
is the small class :class:`GRPO` (registered as ``grpo`` on
:data:`~demask.training.posttrain.algorithm.ALGORITHMS`); a round comes from
:func:`~demask.training.posttrain.rounds.collect_round`; everything else is the update
skeleton SFT runs on too (:class:`~demask.training.updates.UpdateLoop`: resume, the DDP
wrap, the optimizer and schedule, checkpoints with the reference model's weights inside
trainer_state.pt, the CSV log, the evaluation callbacks, Ctrl-C and the time budget). The
recipe glue is :mod:`demask.training.rl.grpo_recipe`.

Resume: prompts, rollout generators and mask seeds are functions of (seed, round, rank,
iteration), so a run resumed from a checkpoint ends with the same weights as an
uninterrupted one on the CPU (given a deterministic reward; the sandbox seeds ``random``).

Distributed (torchrun): each process rolls out and scores its share of the round's prompts
(whole groups, so advantages stay local), and DDP averages gradients; each process
normalises its loss by its own number of counted tokens (the global token mean when every
process counts the same number).

Not covered: FSDP (the reference model and the rollouts want a whole model per process),
reward models, DAPO's re-sampling until enough groups differ (``filter_groups`` chooses
among the groups of one oversampled round instead), rollout buffers reused across rounds,
TraceRL's trajectory-aware scoring.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
from torch import nn

from demask.decoding.config import DecodeConfig
from demask.model.config import ModelConfig
from demask.tasks.base import Task
from demask.training.checkpointing import require_unchanged
from demask.training.config import TrainConfig
from demask.training.loop import Callback
from demask.training.order import _mix, global_batch_indices
from demask.training.posttrain.algorithm import Algorithm
from demask.training.posttrain.rounds import Round, collect_round
from demask.training.rl.advantages import ADVANTAGES
from demask.training.rl.estimators import ESTIMATORS, LogProbEstimator, get_estimator
from demask.training.rl.grpo_loss import GRPOLossConfig, grpo_loss, tokens_through_first_end
from demask.training.rl.rewards import REWARDS, RewardFn, as_reward, get_reward
from demask.training.rl.rollouts import DecodingRollouts, RolloutFn, rank_slice
from demask.training.updates import UpdateLoop, reduce_metrics

LOG_FILE = "grpo_log.csv"
_ROLLOUT_STREAM = 0x0A11_0075
_MASK_STREAM = 0x3A5C_5EED


def paper_rollout() -> DecodeConfig:
    """DiffuCoder's rollout decoder: entropy policy, temperature 1.2, top-p 0.95 (256 tokens)."""
    return DecodeConfig(gen_length=256, steps=256, policy="entropy", temperature=1.2, top_p=0.95)


LOSS_TOKENS = ("through_end", "all")
"""Values of GRPOConfig.loss_tokens."""


@dataclass
class GRPOConfig:
    """Settings of :func:`train_grpo` beyond the optimizer's (those are a TrainConfig)."""

    group_size: int = 10
    """G: completions sampled per prompt (paper: 10)."""
    prompts_per_step: int = 8
    """Prompts (groups) trained on per round, summed over processes (a multiple of the number
    of processes)."""
    oversample: int = 1
    """Roll out ``oversample * prompts_per_step`` prompts a round and train on
    ``prompts_per_step`` of their groups, chosen by ``filter_groups`` (needs it when > 1)."""
    filter_groups: bool = False
    """Train on the groups whose rewards differ first (DAPO's dynamic sampling without its
    re-sampling loop; uniform groups have zero advantage and fill up only when too few
    differ): the loss's forward/backward passes go where the gradient is."""
    inner_iterations: int = 2
    """mu: optimizer updates on one round's rollouts, each with a fresh mask seed (paper: 2)."""
    estimator: str = "coupled"
    """Per-token log-prob estimator: coupled, decoupled, full_mask, d1, autoregressive."""
    estimator_options: dict[str, Any] = field(default_factory=dict)
    """Fields of the estimator (coupled: t_min, t_max, max_rows; d1: p_mask_prompt)."""
    advantage: str = "loo"
    """Group baseline: loo (leave-one-out, paper), mean, mean_std, loo_positive (loo without
    its negative part: an ablation)."""
    loss_tokens: str = "through_end"
    """Completion positions the loss averages over: ``through_end`` (paper: up to and including
    each completion's first end token) or ``all`` (every completion position, the pad fill
    after the end token too, as the SFT masked-diffusion objective scores them: a masked
    diffusion model decides where a completion ends by predicting pad at the later positions,
    and ``through_end`` never trains those predictions; see docs/grpo.md, "Fresh
    compositions")."""
    epsilon: float = 0.5
    """PPO clip range (paper: 0.5)."""
    epsilon_high: float | None = None
    """Upper clip 1 + epsilon_high (DAPO); None = symmetric."""
    beta: float = 0.01
    """Weight of the k3 KL to the reference model (paper: 0.01); 0 = no reference model."""
    reward: str = "code_format"
    """Registered reward: code_format (w_code * tests + w_format * format), pass_rate, format."""
    reward_options: dict[str, Any] = field(default_factory=dict)
    """Fields of the reward (code_format: style body|chat, w_code 2.0, w_format 0.5, ...)."""
    rollout: DecodeConfig = field(default_factory=paper_rollout)
    """The decoder that samples the rollouts (DecodeConfig fields; the seed is ignored: each
    round's generator comes from train.seed and the round)."""
    greedy_rollouts: int = 0
    """1: each group's first completion is the rollout decoder's argmax output (temperature 0,
    what a greedy evaluation with that decoder writes), the other G - 1 sampled; the group then
    scores the samples against the model's own greedy answer (ReMax-like). 0: all sampled."""
    ref_sync_every: int = 64
    """Every this many updates: ref <- mixup * policy + (1 - mixup) * ref (0 = never)."""
    ref_mixup: float = 0.6
    """Weight of the policy in a reference re-sync (paper: 0.6; 1.0 copies the policy)."""
    micro_batch_size: int | None = None
    """Completions per forward/backward of the loss (gradient accumulation); None = all of a
    process's completions at once."""
    sandbox_workers: int | None = None
    """Sandbox worker processes per node (None: the sandbox's default, the CPU count)."""
    timeout_s: float = 3.0
    """Wall-clock limit per program in the sandbox."""
    max_seconds: float | None = None
    """Stop after the first round that ends past this many seconds of this call's wall time (logged,
    evaluated and saved as a last round); None = run all train.max_steps. The learning-rate
    schedule still follows max_steps."""

    def __post_init__(self) -> None:
        for name in ("group_size", "prompts_per_step", "inner_iterations", "oversample"):
            if getattr(self, name) < 1:
                raise ValueError(f"grpo.{name} must be at least 1, got {getattr(self, name)}")
        if self.advantage in ("loo", "mean_std", "loo_positive") and self.group_size < 2:
            raise ValueError(
                f"grpo.advantage={self.advantage!r} needs group_size >= 2, got "
                f"{self.group_size}; raise group_size or use 'mean'"
            )
        if self.greedy_rollouts not in (0, 1) or self.greedy_rollouts >= self.group_size:
            raise ValueError(
                f"grpo.greedy_rollouts must be 0 or 1 and below group_size "
                f"({self.group_size}), got {self.greedy_rollouts}: a greedy decode is "
                "deterministic, so one per group is all it can add"
            )
        if self.loss_tokens not in LOSS_TOKENS:
            raise ValueError(
                f"grpo.loss_tokens={self.loss_tokens!r} is not one of {LOSS_TOKENS}; "
                "'through_end' is the paper's, 'all' also scores the pad fill"
            )
        if self.oversample > 1 and not self.filter_groups:
            raise ValueError(
                f"grpo.oversample={self.oversample} rolls out more groups than are trained "
                "on; set grpo.filter_groups: true to choose them (or oversample: 1)"
            )
        ESTIMATORS.get(self.estimator)  # "did you mean" for a misspelt name
        ADVANTAGES.get(self.advantage)
        REWARDS.get(self.reward)
        _ = self.loss_config  # validates epsilon, epsilon_high, beta
        if self.ref_sync_every < 0:
            raise ValueError(f"grpo.ref_sync_every must be >= 0 (0 = never), got {self.ref_sync_every}")
        if not 0.0 < self.ref_mixup <= 1.0:
            raise ValueError(f"grpo.ref_mixup must lie in (0, 1] (paper: 0.6), got {self.ref_mixup}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"grpo.micro_batch_size must be >= 1 or null, got {self.micro_batch_size}")
        if self.sandbox_workers is not None and self.sandbox_workers < 1:
            raise ValueError(f"grpo.sandbox_workers must be >= 1 or null, got {self.sandbox_workers}")
        if self.timeout_s <= 0:
            raise ValueError(f"grpo.timeout_s must be positive, got {self.timeout_s}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"grpo.max_seconds must be positive or null (no limit), got {self.max_seconds}")

    @property
    def loss_config(self) -> GRPOLossConfig:
        return GRPOLossConfig(epsilon=self.epsilon, epsilon_high=self.epsilon_high, beta=self.beta)

    def build_estimator(self) -> LogProbEstimator:
        return get_estimator(self.estimator, **self.estimator_options)

    def build_reward(self) -> RewardFn:
        return get_reward(self.reward, **self.reward_options)

    def replace(self, **changes: Any) -> GRPOConfig:
        return dataclasses.replace(self, **changes)


@dataclass
class GRPOResult:
    step: int
    """Updates done."""
    checkpoint: Path | None
    log_path: Path | None
    metrics: dict[str, float]
    """The last logged round's metrics (reward_mean, pass_rate, loss, kl, ...)."""
    eval_metrics: dict[str, float]
    """The last evaluation's metrics."""
    seconds: float


# ---------------------------------------------------------------------- seeds (pure)
def rollout_seed(seed: int, round_index: int, rank: int) -> int:
    """Seed of the generator that samples process ``rank``'s rollouts of a round."""
    return _mix(_mix(seed ^ _ROLLOUT_STREAM, round_index), rank)


def mask_seed(seed: int, round_index: int, iteration: int, rank: int, micro: int) -> int:
    """The estimator seed of one (round, inner iteration, process, micro-batch): the same for
    the current, old and reference log-probs, different for every other argument."""
    return _mix(_mix(_mix(_mix(seed ^ _MASK_STREAM, round_index), iteration), rank), micro)


def mix_into(reference: nn.Module, policy: nn.Module, mixup: float) -> None:
    """``ref <- mixup * policy + (1 - mixup) * ref``, parameter by parameter, in place."""
    with torch.no_grad():
        ref_params = dict(reference.named_parameters())
        for name, p in policy.named_parameters():
            ref_params[name].lerp_(p.detach().to(ref_params[name].dtype), mixup)


# ---------------------------------------------------------------------- the algorithm
@dataclass
class GRPOMicroBatch:
    """One micro-batch of a round as the GRPO loss reads it.

    old_logp: the sampling policy's log-probs, or None on the round's first update (the
        current ones detached: the weights have not moved and the seed is the same).
    ref_logp: the reference model's log-probs, or None without a reference.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_length: int
    advantages: torch.Tensor
    token_mask: torch.Tensor
    seed: int
    old_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None


class GRPO(Algorithm):
    """GRPO with a per-token log-prob estimator: ``loss = grpo_loss(logp, old, A, tokens, ref)``."""

    requires: ClassVar[frozenset[str]] = frozenset({"rollouts", "reward"})

    def __init__(self, estimator: LogProbEstimator, loss_config: GRPOLossConfig = GRPOLossConfig()) -> None:
        self.estimator, self.loss_config = estimator, loss_config

    def log_probs(self, model: nn.Module, batch: GRPOMicroBatch) -> torch.Tensor:
        """(N, L) per-token log-probs of the batch's completions under ``model``."""
        return self.estimator.log_probs(model, batch.input_ids, batch.attention_mask, batch.prompt_length, batch.seed)

    def loss(self, model: nn.Module, batch: GRPOMicroBatch, **context: Any) -> tuple[torch.Tensor, dict[str, float]]:
        logp = self.log_probs(model, batch)
        old = logp.detach() if batch.old_logp is None else batch.old_logp
        return grpo_loss(logp, old, batch.advantages, batch.token_mask, batch.ref_logp, self.loss_config)


# ---------------------------------------------------------------------- the trainer
def train_grpo(
    config: GRPOConfig,
    train: TrainConfig,
    policy: nn.Module,
    tasks: Sequence[Task],
    *,
    tokenizer: Any = None,
    reference: nn.Module | None = None,
    sandbox: Any = None,
    rollout_fn: RolloutFn | None = None,
    reward_fn: RewardFn | Callable | None = None,
    estimator: LogProbEstimator | None = None,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    extra_files: dict[str, str] | None = None,
    log: Callable[[str], None] | None = None,
) -> GRPOResult:
    """Post-train ``policy`` with GRPO on ``tasks``; see the module docstring.

    tokenizer: encodes prompts / decodes completions for the default rollouts and is saved in
        checkpoints (may be None when ``rollout_fn`` is given).
    reference: the KL reference (default: a copy of ``policy`` at the start; unused at beta 0).
    sandbox: runs the programs (default: one is started when the reward declares it needs one).
    rollout_fn, reward_fn, estimator: override the ones ``config`` names (tests, experiments);
        a plain reward function declares no needs (pass a sandbox yourself if it runs code).
    train: optimizer, schedule, seed, cadence, out_dir, precision (its objective,
        global_batch_size and micro_batch_size are not used).
    """
    t0 = time.perf_counter()
    mu, G = config.inner_iterations, config.group_size
    if train.max_steps % mu:
        raise ValueError(
            f"train.max_steps={train.max_steps} is not a multiple of grpo.inner_iterations"
            f"={mu} (a round makes {mu} updates); use {train.max_steps - train.max_steps % mu + mu}"
        )
    if len(tasks) < config.prompts_per_step * config.oversample:
        raise ValueError(
            f"{len(tasks)} tasks, fewer than the {config.prompts_per_step * config.oversample} "
            f"prompts a round rolls out (prompts_per_step x oversample)"
        )
    algorithm = GRPO(estimator if estimator is not None else config.build_estimator(), config.loss_config)
    reward = as_reward(reward_fn if reward_fn is not None else config.build_reward())
    rollouts = rollout_fn
    if rollouts is None:
        if tokenizer is None:
            raise ValueError("the default rollouts decode text: pass tokenizer (or a rollout_fn)")
        rollouts = DecodingRollouts(tokenizer, config.rollout, greedy_per_group=config.greedy_rollouts)
    policy_config = cast(ModelConfig, policy.config)  # nn.Module types attributes as Tensor | Module
    end_ids = sorted({i for i in (policy_config.eos_token_id, policy_config.pad_token_id) if i is not None})
    if not end_ids:
        raise ValueError(
            "the policy's config has no eos_token_id or pad_token_id: the loss counts tokens up to the first end token"
        )
    reference = (reference if reference is not None else copy.deepcopy(policy)) if config.beta > 0 else None
    loop = UpdateLoop(
        train,
        policy,
        log_name=LOG_FILE,
        tokenizer=tokenizer,
        callbacks=callbacks,
        resume=resume,
        extra_files=extra_files,
        refuse_fsdp="GRPO runs ddp or none: rollouts and the reference need a whole model per process",
        check_resume=lambda saved: _check_resumable(saved, train, config, len(tasks)),
        max_seconds=config.max_seconds,
        desc="grpo",
    )
    info, wrapped = loop.info, loop.wrapped
    if reference is not None:
        if loop.saved is not None and loop.saved.get("reference") is not None:
            reference.load_state_dict(loop.saved["reference"])
        reference.to(info.device).eval()
        reference.requires_grad_(False)
    own_sandbox = None
    if sandbox is None and "sandbox" in reward.requirements:
        from demask.execution import Sandbox, SandboxConfig

        sandbox = own_sandbox = Sandbox(SandboxConfig.pool(config.timeout_s, config.sandbox_workers))
    n_rolled = config.prompts_per_step * config.oversample
    share = rank_slice(n_rolled, info.rank, info.world_size)
    try:
        with loop:
            for round_index in range(loop.start // mu, train.max_steps // mu):
                r_t0 = time.perf_counter()
                picked = global_batch_indices(len(tasks), n_rolled, train.seed, round_index)
                gen = torch.Generator(device=info.device).manual_seed(rollout_seed(train.seed, round_index, info.rank))
                rnd = collect_round(
                    loop.strategy.unwrap(wrapped),
                    [tasks[int(i)] for i in picked[share]],
                    rollouts,
                    reward,
                    sandbox,
                    gen,
                    group_size=G,
                    keep=config.prompts_per_step // info.world_size,
                    filter_groups=config.filter_groups,
                    advantage=config.advantage,
                    amp=loop.amp,  # bf16 runs decode their rollouts in bf16 too
                )
                prev = loop.done
                stats = _train_on_round(loop, algorithm, config, rnd, reference, end_ids, round_index)
                row = {**rnd.metrics, **stats, "round_s": time.perf_counter() - r_t0}
                loop.end_unit(
                    prev,
                    functools.partial(_log_row, loop, row),
                    functools.partial(_extra_state, config, reference, len(tasks), loop.done),
                    log_line=log,
                )
                if loop.stopping:
                    break
    finally:
        if own_sandbox is not None:
            own_sandbox.close()
    return GRPOResult(
        step=loop.done,
        checkpoint=loop.last_checkpoint,
        log_path=loop.log.path,
        metrics=loop.last_row,
        eval_metrics=loop.eval_metrics,
        seconds=time.perf_counter() - t0,
    )


# ---------------------------------------------------------------------- one round's updates
def _train_on_round(
    loop: UpdateLoop,
    algorithm: GRPO,
    config: GRPOConfig,
    rnd: Round,
    reference: nn.Module | None,
    end_ids: list[int],
    round_index: int,
) -> dict[str, float]:
    """The mu updates on one round's rollouts; returns their mean loss, kl, clip fraction,
    ratio and gradient norm (weighted by counted tokens) and the round's token figures."""
    mu, wrapped, seed, rank = config.inner_iterations, loop.wrapped, loop.train.seed, loop.info.rank
    through_end = tokens_through_first_end(rnd.batch.completion_ids, end_ids)  # (N, L)
    token_mask = through_end if config.loss_tokens == "through_end" else torch.ones_like(through_end)
    micro = _micro_slices(len(rnd.batch), config.micro_batch_size)
    total_tokens = max(float(token_mask.sum()), 1.0)

    def micro_batch(i: int, m: int) -> GRPOMicroBatch:
        sl = micro[m]
        b = rnd.batch
        seed_im = mask_seed(seed, round_index, i, rank, m)
        return GRPOMicroBatch(
            b.input_ids[sl], b.attention_mask[sl], b.prompt_length, rnd.advantages[sl], token_mask[sl], seed_im
        )

    # Old (i >= 1) and reference log-probs, all before the first update of the round.
    pairs = [(i, m) for i in range(mu) for m in range(len(micro))]
    with torch.no_grad(), loop.amp:
        old = {(i, m): algorithm.log_probs(wrapped, micro_batch(i, m)) for i, m in pairs if i >= 1}
        ref = {} if reference is None else {key: algorithm.log_probs(reference, micro_batch(*key)) for key in pairs}
    sums = dict.fromkeys(("loss", "kl", "clip_fraction", "ratio_mean", "grad_norm"), 0.0)

    def accumulate(i: int) -> None:
        for m in range(len(micro)):
            batch = dataclasses.replace(micro_batch(i, m), old_logp=old.get((i, m)), ref_logp=ref.get((i, m)))
            with loop.strategy.sync_gradients(wrapped, m == len(micro) - 1):
                with loop.amp:
                    loss, stats = algorithm.loss(wrapped, batch)
                weight = stats["tokens"] / total_tokens
                (loss * weight).backward()
            sums["loss"] += float(loss.detach()) * weight / mu
            sums["kl"] += stats["kl_mean"] * weight / mu
            sums["clip_fraction"] += stats["clip_fraction"] * weight / mu
            sums["ratio_mean"] += stats["ratio_mean"] * weight / mu

    for i in range(mu):
        sums["grad_norm"] += float(loop.update(functools.partial(accumulate, i))) / mu
        if reference is not None and config.ref_sync_every and loop.done % config.ref_sync_every == 0:
            mix_into(reference, loop.strategy.unwrap(wrapped), config.ref_mixup)
    return {
        **sums,
        "completion_tokens": float(through_end.sum(1).float().mean()),
        "nonzero_adv": float((rnd.advantages != 0).float().mean()),
    }


LOG_COLUMNS = (
    "reward_mean",
    "pass_rate",
    "format_mean",
    "loss",
    "kl",
    "clip_fraction",
    "ratio_mean",
    "grad_norm",
    "nfe_mean",
    "completion_tokens",
    "nonzero_adv",
    "informative_groups",
    "round_s",
    "rollout_s",
)
"""The columns of grpo_log.csv after ``lr`` (then ``elapsed_s``), means over the processes."""


def _log_row(loop: UpdateLoop, values: dict[str, float]) -> dict[str, float]:
    row = {"lr": loop.lr, **reduce_metrics({k: values[k] for k in LOG_COLUMNS}, loop.info), "elapsed_s": loop.elapsed()}
    loop.bar.set_postfix(
        reward=f"{row['reward_mean']:.3f}", pass_=f"{row['pass_rate']:.2f}", kl=f"{row['kl']:.4f}", refresh=False
    )
    return row


# ---------------------------------------------------------------------- helpers
def _micro_slices(n: int, size: int | None) -> list[slice]:
    size = n if size is None else size
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


def _extra_state(config: GRPOConfig, reference: nn.Module | None, n_tasks: int, done: int) -> dict[str, Any]:
    """What a GRPO checkpoint holds beside the SFT loop's: the task count, the round, the
    GRPO settings and the reference model's weights."""
    from demask.config import to_dict

    return {
        "data": {"n_tasks": n_tasks, "round": done // config.inner_iterations},
        "grpo": to_dict(config),
        "reference": (
            {k: v.detach().cpu() for k, v in reference.state_dict().items()} if reference is not None else None
        ),
    }


def _check_resumable(saved: dict[str, Any], train: TrainConfig, config: GRPOConfig, n_tasks: int) -> None:
    """Refuse a resume that would replay different prompts, rollouts or masks."""
    require_unchanged(saved["config"], train, ("seed", "max_steps"), prefix="train.")
    require_unchanged(
        saved.get("grpo", {}),
        config,
        ("group_size", "prompts_per_step", "inner_iterations", "estimator", "oversample", "filter_groups"),
        prefix="grpo.",
    )
    if saved["data"]["n_tasks"] != n_tasks:
        raise ValueError(
            f"cannot resume: the checkpoint saw {saved['data']['n_tasks']} tasks, this run "
            f"has {n_tasks}; the prompt order would differ"
        )
