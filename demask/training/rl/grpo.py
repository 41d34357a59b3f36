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
``autoregressive`` for a causal model, which makes AR GRPO this same trainer). The pieces of
the SFT loop are reused: the optimizer (:func:`~demask.training.loop.make_optimizer`), the
schedule (:func:`~demask.training.config.lr_at`), distributed strategies, checkpoints (the
policy in the Hugging Face layout, the reference model's weights inside trainer_state.pt),
the CSV log and the evaluation callbacks.

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

import contextlib
import copy
import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
from torch import nn

from demask.decoding.config import DecodeConfig
from demask.model.config import ModelConfig
from demask.tasks.base import Task
from demask.training.checkpointing import (
    load_trainer_state,
    require_unchanged,
    seed_everything,
    set_rng_state,
)
from demask.training.config import TrainConfig, lr_at
from demask.training.distributed import all_reduce_mean
from demask.training.logs import MetricsLog
from demask.training.loop import (
    Callback,
    _evaluate,
    _progress,
    make_optimizer,
    save_train_state,
    start_run,
)
from demask.training.order import _mix, global_batch_indices
from demask.training.recipe import EvalRecipe
from demask.training.rl.advantages import ADVANTAGES, compute_advantages, select_groups, varied_groups
from demask.training.rl.estimators import ESTIMATORS, LogProbEstimator, get_estimator
from demask.training.rl.grpo_loss import GRPOLossConfig, grpo_loss, tokens_through_first_end
from demask.training.rl.rewards import REWARDS, RewardFn, get_reward
from demask.training.rl.rollouts import DecodingRollouts, RolloutBatch, RolloutFn, rank_slice

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
    reward_fn: Callable | None = None,
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
    sandbox: runs the programs (default: one is started when the reward needs it).
    rollout_fn, reward_fn, estimator: override the ones ``config`` names (tests, experiments).
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
    info, strategy, out, ckpt = start_run(
        train, resume, refuse_fsdp="GRPO runs ddp or none: rollouts and the reference need a whole model per process"
    )
    seed_everything(train.seed)
    est = estimator if estimator is not None else config.build_estimator()
    reward = reward_fn if reward_fn is not None else config.build_reward()
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

    policy.to(info.device)
    if config.beta > 0 and reference is None:
        reference = copy.deepcopy(policy)
    if config.beta == 0:
        reference = None
    start = 0
    saved = None
    if ckpt is not None:
        from demask.model import load_model

        saved = load_trainer_state(ckpt)
        _check_resumable(saved, train, config, len(tasks))
        policy.load_state_dict(load_model(ckpt, dtype=next(policy.parameters()).dtype).state_dict())
        if reference is not None and saved.get("reference") is not None:
            reference.load_state_dict(saved["reference"])
        start = int(saved["step"])
    if reference is not None:
        reference.to(info.device).eval()
        reference.requires_grad_(False)
    policy.train()
    wrapped = strategy.wrap(policy, info)
    if wrapped is not policy:
        wrapped.config = policy.config  # the estimators read the model's config
    optimizer = make_optimizer(strategy.unwrap(wrapped), train)
    if saved is not None:
        strategy.load_optimizer_state(wrapped, optimizer, saved["optimizer"])
        set_rng_state(saved["rng"])

    own_sandbox = None
    if sandbox is None and getattr(reward, "needs_sandbox", False):
        from demask.execution import Sandbox, SandboxConfig

        sandbox = own_sandbox = Sandbox(SandboxConfig.pool(config.timeout_s, config.sandbox_workers))

    log_file = MetricsLog(
        out / LOG_FILE if out is not None and info.is_main else None, resume_step=start if ckpt is not None else None
    )
    amp = (
        torch.autocast(info.device.type, dtype=torch.bfloat16)
        if train.precision == "bf16"
        else contextlib.nullcontext()
    )
    bar = _progress(train, info, start)
    n_rolled = config.prompts_per_step * config.oversample
    share = rank_slice(n_rolled, info.rank, info.world_size)
    keep = config.prompts_per_step // info.world_size
    loss_cfg = config.loss_config
    done, last_ckpt, last_row, eval_metrics = start, ckpt, {}, {}
    run_t0 = time.perf_counter()
    try:
        for round_index in range(start // mu, train.max_steps // mu):
            r_t0 = time.perf_counter()
            picked = global_batch_indices(len(tasks), n_rolled, train.seed, round_index)
            round_tasks = [tasks[int(i)] for i in picked[share]]
            gen = torch.Generator(device=info.device).manual_seed(rollout_seed(train.seed, round_index, info.rank))
            with torch.no_grad(), amp:  # bf16 runs decode their rollouts in bf16 too
                batch = rollouts(strategy.unwrap(wrapped), round_tasks, G, gen)
            batch = _to(batch, info.device)
            t_roll = time.perf_counter() - r_t0
            group_tasks = [t for t in round_tasks for _ in range(G)]
            scored = reward(batch.completions, group_tasks, sandbox)
            rewards = torch.tensor([s.total for s in scored], dtype=torch.float32)
            # the round's figures cover every rollout; the loss, the groups kept below
            rolled = {
                "reward_mean": float(rewards.mean()),
                "nfe_mean": _mean(batch.nfe),
                "informative": float(varied_groups(rewards, G).float().mean()),
            }
            if keep < len(round_tasks) or config.filter_groups:
                groups = select_groups(rewards, G, keep, informative_first=config.filter_groups)
                rows = [g * G + j for g in groups for j in range(G)]
                batch, rewards = batch.select(rows), rewards[rows]
            advantages = compute_advantages(rewards, G, config.advantage).to(info.device)
            through_end = tokens_through_first_end(batch.completion_ids, end_ids)  # (N, L)
            token_mask = through_end if config.loss_tokens == "through_end" else torch.ones_like(through_end)
            micro = _micro_slices(len(batch), config.micro_batch_size)
            total_tokens = float(token_mask.sum())
            seeds = [
                [mask_seed(train.seed, round_index, i, info.rank, m) for m in range(len(micro))] for i in range(mu)
            ]

            def estimate(model: nn.Module, i: int, m: int, micro=micro, batch=batch, seeds=seeds) -> torch.Tensor:
                sl = micro[m]
                with amp:
                    return est.log_probs(
                        model, batch.input_ids[sl], batch.attention_mask[sl], batch.prompt_length, seeds[i][m]
                    )

            # Old (i >= 1) and reference log-probs, all before the first update of the round.
            with torch.no_grad():
                old = {(i, m): estimate(wrapped, i, m) for i in range(1, mu) for m in range(len(micro))}
                ref = (
                    {(i, m): estimate(reference, i, m) for i in range(mu) for m in range(len(micro))}
                    if reference is not None
                    else {}
                )
            sums = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "ratio": 0.0, "grad_norm": 0.0}
            lr = train.lr
            for i in range(mu):
                step = round_index * mu + i
                lr = lr_at(
                    step,
                    lr=train.lr,
                    warmup_steps=train.warmup_steps,
                    max_steps=train.max_steps,
                    min_lr_ratio=train.min_lr_ratio,
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
                for m, sl in enumerate(micro):
                    with strategy.sync_gradients(wrapped, m == len(micro) - 1):
                        logp = estimate(wrapped, i, m)
                        old_logp = logp.detach() if i == 0 else old[(i, m)]
                        loss, stats = grpo_loss(
                            logp, old_logp, advantages[sl], token_mask[sl], ref.get((i, m)), loss_cfg
                        )
                        weight = stats["tokens"] / max(total_tokens, 1.0)
                        (loss * weight).backward()
                    sums["loss"] += float(loss.detach()) * weight / mu
                    sums["kl"] += stats["kl_mean"] * weight / mu
                    sums["clip_fraction"] += stats["clip_fraction"] * weight / mu
                    sums["ratio"] += stats["ratio_mean"] * weight / mu
                grad_norm = strategy.clip_grad_norm(wrapped, train.grad_clip)
                sums["grad_norm"] += float(grad_norm) / mu
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                done = step + 1
                if reference is not None and config.ref_sync_every and done % config.ref_sync_every == 0:
                    mix_into(reference, strategy.unwrap(wrapped), config.ref_mixup)
                bar.update(1)

            prev = done - mu
            over = config.max_seconds is not None and time.perf_counter() - run_t0 > config.max_seconds
            if info.world_size > 1:  # every process stops after the same round
                over = bool(all_reduce_mean(torch.tensor([float(over)], device=info.device), info)[0] > 0)
            last = train.max_steps if not over else done  # a stop on time is a last round
            row: dict[str, float] = {}
            if _crossed(prev, done, train.log_every, last):
                local = torch.tensor(
                    [
                        rolled["reward_mean"],
                        _pass_rate(scored),
                        _mean(s.format for s in scored),
                        sums["loss"],
                        sums["kl"],
                        sums["clip_fraction"],
                        sums["ratio"],
                        sums["grad_norm"],
                        rolled["nfe_mean"],
                        float(through_end.sum(1).float().mean()),
                        float((advantages != 0).float().mean()),
                        rolled["informative"],
                        time.perf_counter() - r_t0,
                        t_roll,
                    ],
                    dtype=torch.float64,
                )
                means = all_reduce_mean(local.to(info.device), info).cpu().tolist()
                keys = (
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
                row = {"lr": lr, **dict(zip(keys, means)), "elapsed_s": time.perf_counter() - run_t0}
                log_file.write(done, row)
                last_row = row
                bar.set_postfix(
                    reward=f"{row['reward_mean']:.3f}",
                    pass_=f"{row['pass_rate']:.2f}",
                    kl=f"{row['kl']:.4f}",
                    refresh=False,
                )
            if callbacks and _crossed(prev, done, train.eval_every, last):
                eval_metrics = _evaluate(callbacks, done, wrapped, strategy, info)
                log_file.write(done, eval_metrics)
                row = {**row, **eval_metrics}
                if log is not None and info.is_main:
                    log(f"step {done}: " + ", ".join(f"{k} {v:.4f}" for k, v in eval_metrics.items()))
            if out is not None and _crossed(prev, done, train.save_every, last):
                last_ckpt = _save(
                    out,
                    done,
                    train,
                    config,
                    wrapped,
                    strategy,
                    optimizer,
                    reference,
                    tokenizer,
                    extra_files,
                    info,
                    len(tasks),
                )
            for cb in callbacks:
                cb.on_step_end(done, row)
            if over:
                if log is not None and info.is_main:
                    log(f"stopping after {done} updates: grpo.max_seconds={config.max_seconds} reached")
                break
    finally:
        bar.close()
        for cb in callbacks:
            cb.on_train_end()
        if own_sandbox is not None:
            own_sandbox.close()
    return GRPOResult(
        step=done,
        checkpoint=last_ckpt,
        log_path=log_file.path,
        metrics=last_row,
        eval_metrics=eval_metrics,
        seconds=time.perf_counter() - t0,
    )


# ---------------------------------------------------------------------- helpers
def _crossed(prev: int, done: int, every: int, max_steps: int) -> bool:
    """Whether updates (prev, done] reach the end or a multiple of ``every`` (0: only the end)."""
    return done == max_steps or (every > 0 and done // every > prev // every)


def _micro_slices(n: int, size: int | None) -> list[slice]:
    size = n if size is None else size
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def _pass_rate(scored) -> float:
    """Completions that pass every test (code term 1.0)."""
    return _mean(1.0 if s.code >= 1.0 else 0.0 for s in scored)


def _to(batch: RolloutBatch, device: torch.device) -> RolloutBatch:
    if batch.input_ids.device == device:
        return batch
    return dataclasses.replace(
        batch, input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)
    )


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


def _save(
    out: Path,
    step: int,
    train: TrainConfig,
    config: GRPOConfig,
    wrapped: nn.Module,
    strategy,
    optimizer: torch.optim.Optimizer,
    reference: nn.Module | None,
    tokenizer: Any,
    extra_files: dict[str, str] | None,
    info,
    n_tasks: int,
) -> Path:
    from demask.training.recipe import to_dict

    extra = {
        "data": {"n_tasks": n_tasks, "round": step // config.inner_iterations},
        "grpo": to_dict(config),
        "reference": (
            {k: v.detach().cpu() for k, v in reference.state_dict().items()} if reference is not None else None
        ),
    }
    return save_train_state(out, step, train, wrapped, strategy, optimizer, tokenizer, extra_files, info, extra)


# ---------------------------------------------------------------------- recipes


@dataclass
class GRPORecipe:
    """A GRPO run as YAML (``demask grpo --recipe``); each block is a dataclass.

    policy: the checkpoint to post-train (config.json + safetensors + tokenizer.json).
    tasks / task_options: the prompts, a benchmark spec for ``demask.tasks.load_tasks`` and
        its keyword arguments (tinycode: TinyCodeConfig fields).
    grpo: :class:`GRPOConfig`; train: the optimizer, schedule, seed, cadence and output
        (:class:`~demask.training.config.TrainConfig`); eval: the periodic held-out pass@k
        (:class:`~demask.training.recipe.EvalRecipe`, ``tasks`` defaults to ``tinycode:validation``).
    """

    policy: str = "tinycode-mdm"
    """The model to post-train (the SFT model): a checkpoint directory, a shipped model's name or a
    Hugging Face hub id."""
    dtype: str | None = "float32"
    """Weights dtype to load the policy in (training keeps fp32 weights; use train.precision:
    bf16 for autocast)."""
    tasks: str = "tinycode:train"
    """Benchmark spec of the training prompts (their tests give the rewards)."""
    task_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of load_tasks (tinycode: TinyCodeConfig fields)."""
    max_tasks: int | None = None
    """Use only the first this many tasks (None = all)."""
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    """The optimizer, schedule, seed, cadence and output (the ``train:`` block of an SFT recipe)."""
    eval: EvalRecipe | None = None
    """The periodic held-out evaluation (EvalRecipe fields); null = none."""

    def __post_init__(self) -> None:
        if self.max_tasks is not None and self.max_tasks < 1:
            raise ValueError(f"max_tasks must be positive or null (all), got {self.max_tasks}")

    renamed_keys: ClassVar[dict[str, str]] = {"training": "train"}
    """Former block names (read with a deprecation warning, in recipes and ``--set``)."""

    @staticmethod
    def upgrade_keys(raw: dict[str, Any], where: str = "") -> dict[str, Any]:
        """Read the former block name ``training:`` as ``train:`` (with a deprecation warning)."""
        if "training" in raw:
            if "train" in raw:
                raise ValueError("a GRPO recipe has both 'training:' and 'train:' blocks; keep 'train:'")
            warnings.warn(
                "the GRPO recipe block 'training:' is called 'train:' now, as in SFT recipes; "
                "the old name goes in the next release",
                DeprecationWarning,
                stacklevel=3,
            )
            raw["train"] = raw.pop("training")
        return raw


def load_grpo_recipe(path: str | Path, settings: Sequence[str] = ()) -> GRPORecipe:
    """Read a GRPO recipe, then apply ``KEY=VALUE`` settings (see :func:`set_recipe_fields`);
    unknown keys are named with the closest known one."""
    import yaml

    from demask.config import apply_settings, from_dict
    from demask.training.recipe import resolve_recipe

    path = resolve_recipe(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a GRPO recipe is a mapping with blocks policy, tasks, grpo, train, eval")
    try:
        raw = GRPORecipe.upgrade_keys(raw)
        apply_settings(raw, settings, GRPORecipe, example="grpo.advantage=loo or train.lr=1e-4")
        return from_dict(GRPORecipe, raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def dump_grpo_recipe(recipe: GRPORecipe) -> str:
    """The recipe as YAML (every field); load(dump(r)) == r."""
    import yaml

    from demask.config import to_dict

    return yaml.safe_dump(to_dict(recipe), sort_keys=False, default_flow_style=None)


def override_grpo_recipe(
    recipe: GRPORecipe, *, estimator: str | None = None, max_seconds: float | None = None, **train_fields: Any
) -> GRPORecipe:
    """A copy with these overrides applied (None values are ignored): ``train_fields`` go to
    the train block (out_dir, max_steps, seed, lr ...; a shorter max_steps keeps the warm-up
    within it); a new estimator clears the recipe's estimator options."""
    grpo = recipe.grpo if estimator is None else recipe.grpo.replace(estimator=estimator, estimator_options={})
    if max_seconds is not None:
        grpo = grpo.replace(max_seconds=max_seconds)
    return dataclasses.replace(recipe, train=recipe.train.override(**train_fields), grpo=grpo)


def set_recipe_fields(recipe: GRPORecipe, settings: Sequence[str]) -> GRPORecipe:
    """A copy with ``KEY=VALUE`` settings applied, KEY a dotted path into the recipe
    (``grpo.advantage=loo_positive``, ``train.lr=1e-4``, ``grpo.rollout.policy=confidence``)
    and VALUE read as YAML (``null``, numbers, ``{a: 1}``). The result is checked like a loaded
    recipe: a misspelt key is named with the closest known one."""
    from demask.config import apply_settings, from_dict, to_dict

    try:
        raw = apply_settings(to_dict(recipe), settings, GRPORecipe, example="grpo.advantage=loo or train.lr=1e-4")
        return from_dict(GRPORecipe, raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"settings {list(settings)}: {exc}") from None


def eval_callbacks(recipe: GRPORecipe, tokenizer: Any, gen_length: int) -> list[Callback]:
    """The periodic held-out pass@k of ``recipe.eval`` (``tasks`` default: tinycode:validation), or none."""
    spec = recipe.eval
    if spec is None or not spec.enabled:
        return []
    from demask.tasks import load_tasks

    return spec.callbacks(load_tasks(spec.tasks or "tinycode:validation"), tokenizer, gen_length, recipe.train.out_dir)


def run_grpo_recipe(
    recipe: GRPORecipe, *, resume: bool = False, log: Callable[[str], None] | None = print
) -> GRPOResult:
    """Load the policy and the tasks, then :func:`train_grpo`; ``log`` gets one-line messages."""
    from demask.model import load_pretrained
    from demask.tasks import load_tasks

    say = log or (lambda *_: None)
    model, tokenizer = load_pretrained(recipe.policy, dtype=recipe.dtype)
    tasks = load_tasks(recipe.tasks, **recipe.task_options)
    if recipe.max_tasks is not None:
        tasks = tasks[: recipe.max_tasks]
    g = recipe.grpo
    say(
        f"policy: {recipe.policy} ({model.num_parameters() / 1e6:.2f}M parameters); {len(tasks)} "
        f"prompts from {recipe.tasks}; estimator {g.estimator}, G={g.group_size}, "
        f"{g.prompts_per_step} prompts/round, mu={g.inner_iterations}, {recipe.train.max_steps} updates"
    )
    callbacks = eval_callbacks(recipe, tokenizer, g.rollout.gen_length)
    return train_grpo(
        g,
        recipe.train,
        model,
        tasks,
        tokenizer=tokenizer,
        callbacks=callbacks,
        resume=resume,
        extra_files={"grpo_recipe.yaml": dump_grpo_recipe(recipe)},
        log=say,
    )
