"""Training a learned unmasking policy with RL under a compute penalty (arXiv 2512.09106).

The dLLM is frozen and greedy in its token choices; the policy network
(:class:`~demask.decoding.policy_net.PolicyNet`) decides, at each denoising step, which masked
positions of the current block to commit (independent Bernoullis; an empty action is allowed
in training and still costs an NFE; the loop caps each block at its length in steps)::

    round     = collect_round: G policy rollouts per prompt (+ E expert rollouts: expert steering)
    reward    = 1[correct] * ((L - min(NFE, L) + 1) / L) ** alpha        (``correct_nfe``)
    advantage = r - group mean                                           (no std)
    per step s of row b: logprob_s = sum over the block's masked positions of
                         log Bernoulli(action | p = sigmoid(logit / tau))
    loss      = mean over steps of -min(ratio_s * A_b, clip(ratio_s, 1 - eps, 1 + eps) * A_b)
                ratio_s = exp(logprob_s - logprob_s at the rollouts); mu updates per round

Expert steering scores an expert step with the mixture ``log(G/(G+E) * pi(a) + 1/(G+E))``
(the expert is a point mass on its action), so the ratio stays bounded. A round whose
advantages are all zero skips the backward pass (the update then moves nothing).
``UnmaskingGRPO`` is the registered algorithm (``unmasking-grpo``);
:func:`train_unmasking_policy` the trainer on the shared update skeleton.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
from torch import nn

from demask.decoding.config import DecodeConfig
from demask.decoding.policies import LearnedPolicy, PolicyFeatures
from demask.decoding.policy_net import PolicyNet, PolicyNetConfig, load_policy, save_policy
from demask.model.config import ModelConfig
from demask.tasks.base import Task
from demask.training.config import TrainConfig
from demask.training.loop import Callback
from demask.training.order import _mix, global_batch_indices
from demask.training.posttrain.algorithm import Algorithm, check_requirements
from demask.training.posttrain.rounds import Round, collect_round
from demask.training.rl.rewards import RewardFn
from demask.training.rl.rollouts import RolloutBatch, pad_after_first_end
from demask.training.updates import UpdateLoop, reduce_metrics

LOG_FILE = "policy_log.csv"
_ROLLOUT_STREAM = 0x9071_C1E5


# ---------------------------------------------------------------------- steps
@dataclass
class PolicySteps:
    """Every step of a set of rollouts where the policy decided, flattened (N steps).

    masked, confidence (N, L): the features the policy saw; time (N,); block (N, L) bool: the
    current block; action (N, L) bool: the positions it chose (within block and masked);
    row (N,) long: the rollout the step belongs to; expert (N,) bool: an expert's step.
    """

    masked: torch.Tensor
    confidence: torch.Tensor
    time: torch.Tensor
    block: torch.Tensor
    action: torch.Tensor
    row: torch.Tensor
    expert: torch.Tensor

    def __len__(self) -> int:
        return self.row.shape[0]

    @staticmethod
    def cat(parts: Sequence[PolicySteps]) -> PolicySteps:
        fields = [f.name for f in dataclasses.fields(PolicySteps)]
        return PolicySteps(**{k: torch.cat([getattr(p, k) for p in parts]) for k in fields})

    def to(self, device: torch.device | str) -> PolicySteps:
        return PolicySteps(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})


def steps_from_trace(trace: Any, row_offset: int, expert: bool, policy_block: int | None = None) -> PolicySteps:
    """The learned policy's steps in a decoding trace; rows numbered from ``row_offset``.

    A policy step keeps the action it sampled; a step at a block's step cap (where the loop
    commits everything left, whatever the action) is dropped: its action changed nothing.
    An expert step's action is what the expert committed, scored over the block the *policy*
    would have acted on (``policy_block`` tokens; None: the expert's own block), so that its
    log-probability is the policy's probability of doing what the expert did."""
    parts = []
    for st in trace.steps:
        if "masked" not in st.info:
            continue
        masked = st.info["masked"].cpu()
        a, length = masked.shape
        width = st.commit.shape[1]
        lo, hi = st.offset, st.offset + width
        if expert and policy_block is not None:
            lo = (st.offset // policy_block) * policy_block
            hi = min(lo + policy_block, length)
        cols = torch.arange(length)
        block = ((cols >= lo) & (cols < hi))[None, :].expand(a, length)
        keep = torch.ones(a, dtype=torch.bool)
        if expert:  # what the expert committed (its forced position included)
            action = torch.zeros(a, length, dtype=torch.bool)
            action[:, st.offset : st.offset + width] = st.commit.cpu()
        else:
            action = st.info["action"].cpu()
            keep = ~st.info["capped"].cpu()
        parts.append(
            PolicySteps(
                masked[keep],
                st.info["confidence"].float().cpu()[keep],
                st.info["time"].float().cpu()[keep],
                block[keep].clone(),
                (action & masked & block)[keep],
                st.rows.cpu()[keep] + row_offset,
                torch.full((int(keep.sum()),), expert),
            )
        )
    if not parts:
        raise ValueError("the trace holds no learned-policy step: decode with DecodeConfig(trace=True)")
    return PolicySteps.cat(parts)


def step_logprobs(net: PolicyNet, steps: PolicySteps) -> torch.Tensor:
    """(N,) log-probability of each step's action under ``net``: the sum of Bernoulli
    log-likelihoods over the block's masked positions (with gradients into ``net``)."""
    p = net.probabilities(steps.masked, steps.confidence, steps.time)
    eps = 1e-6
    ll = torch.where(steps.action, (p + eps).log(), (1 - p + eps).log())
    return torch.where(steps.masked & steps.block, ll, 0.0).sum(-1)


def mixture_logprob(logprob: torch.Tensor, group_size: int, experts: int) -> torch.Tensor:
    """Expert steering: ``log(G/(G+E) * exp(logprob) + 1/(G+E))`` for an expert's step.

    >>> round(float(mixture_logprob(torch.tensor(math.log(0.5)), 8, 2)), 6) == round(math.log(0.8 * 0.5 + 0.1), 6)
    True
    """
    n = group_size + experts
    return torch.logaddexp(logprob + math.log(group_size / n), torch.full_like(logprob, math.log(1.0 / n)))


# ---------------------------------------------------------------------- reward
def nfe_reward(correct: bool, nfe: int, length: int, alpha: float) -> float:
    """``1[correct] * ((L - min(NFE, L) + 1) / L) ** alpha`` (the paper's multiplicative penalty).

    >>> nfe_reward(True, 12, 48, 1.0), nfe_reward(True, 60, 48, 1.0), nfe_reward(False, 1, 48, 1.0)
    (0.7708333333333334, 0.020833333333333332, 0.0)
    """
    if not correct:
        return 0.0
    return ((length - min(nfe, length) + 1) / length) ** alpha


# ---------------------------------------------------------------------- the algorithm
@dataclass
class UnmaskingBatch:
    steps: PolicySteps
    advantages: torch.Tensor
    """(rows,) one per rollout."""
    old_logprob: torch.Tensor
    """(N,) the steps' log-probs under the policy as it was at the rollouts (mixture for experts)."""


class UnmaskingGRPO(Algorithm):
    """GRPO over denoising steps with a PPO clip per step (module docstring)."""

    requires: ClassVar[frozenset[str]] = frozenset({"rollouts", "reward"})

    def __init__(self, epsilon: float = 0.5, group_size: int = 8, experts: int = 0) -> None:
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {epsilon} (the paper uses 0.5)")
        self.epsilon, self.group_size, self.experts = epsilon, group_size, experts

    def logprobs(self, net: PolicyNet, steps: PolicySteps) -> torch.Tensor:
        lp = step_logprobs(net, steps)
        if self.experts:
            lp = torch.where(steps.expert, mixture_logprob(lp, self.group_size, self.experts), lp)
        return lp

    def loss(self, model: nn.Module, batch: UnmaskingBatch, **context: Any) -> tuple[torch.Tensor, dict[str, float]]:
        net = cast(PolicyNet, model)
        lp = self.logprobs(net, batch.steps)
        ratio = torch.exp(lp - batch.old_logprob.detach())
        adv = batch.advantages.detach()[batch.steps.row]
        eps = self.epsilon
        per_step = -torch.min(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)
        loss = per_step.mean()
        with torch.no_grad():
            clipped = ((ratio > 1 + eps) & (adv > 0)) | ((ratio < 1 - eps) & (adv < 0))
            metrics = {
                "loss": float(loss),
                "ratio_mean": float(ratio.mean()),
                "clip_fraction": float(clipped.float().mean()),
            }
        return loss, metrics


# ---------------------------------------------------------------------- rollouts
def threshold_expert(threshold: float) -> Callable[[PolicyFeatures], torch.Tensor]:
    """The threshold heuristic as probabilities for a deterministic LearnedPolicy: p >= 0.5
    exactly where confidence >= threshold, and the highest p is the highest confidence (the
    position forced when nothing passes)."""
    if not 0.5 <= threshold <= 1.0:
        raise ValueError(f"the expert's threshold must lie in [0.5, 1], got {threshold}")

    def fn(features: PolicyFeatures) -> torch.Tensor:
        c = features.confidence.float()
        return torch.where(c >= threshold, c, c * 0.49)

    return fn


@dataclass
class PolicyRollouts:
    """G policy rollouts (then E expert rollouts) per task with the frozen dLLM.

    ``__call__(net, tasks, group_size, generator)``: group_size = G + E; rows are groups
    of [G policy rows, E expert rows], groups contiguous.
    """

    dllm: nn.Module
    tokenizer: Any
    decode: DecodeConfig
    experts: int = 0
    expert_threshold: float = 0.9
    expert_block_length: int | None = None

    def __call__(
        self, model: nn.Module, tasks: Sequence[Task], group_size: int, generator: torch.Generator
    ) -> RolloutBatch:
        from demask.decoding import generate
        from demask.decoding.output import end_token_ids

        net = cast(PolicyNet, model)
        g = group_size - self.experts
        if g < 1:
            raise ValueError(f"group_size {group_size} leaves no policy rollout beside {self.experts} experts")
        prompts = [self.tokenizer.encode(t.prompt) for t in tasks]

        def fn(features: PolicyFeatures) -> torch.Tensor:
            return net.probabilities(features.masked, features.confidence, features.time)

        config = self.decode.replace(
            policy=LearnedPolicy(fn, force_nonempty=False), policy_options={}, temperature=0.0, trace=True
        )
        runs = [(generate(self.dllm, [p for p in prompts for _ in range(g)], config, generator=generator), g, False)]
        if self.experts:
            expert = LearnedPolicy(threshold_expert(self.expert_threshold), deterministic=True)
            ecfg = config.replace(policy=expert, block_length=self.expert_block_length or self.decode.block_length)
            eout = generate(self.dllm, [p for p in prompts for _ in range(self.experts)], ecfg, generator=generator)
            runs.append((eout, self.experts, True))
        policy_block = self.decode.block_length or self.decode.gen_length
        if len({(o.prompt_length, o.tokens.shape[1]) for o, _, _ in runs}) != 1:
            raise RuntimeError("policy and expert rollouts were laid out differently")  # same prompts: never
        per_run = [
            split_rows(steps_from_trace(o.trace, 0, expert=e, policy_block=policy_block), o.tokens.shape[0])
            for o, _, e in runs
        ]
        # groups [G policy rows, E expert rows], contiguous per task
        order = [(r, i * k + j) for i in range(len(tasks)) for r, (_, k, _) in enumerate(runs) for j in range(k)]
        ids = torch.stack([runs[r][0].tokens[j] for r, j in order]).cpu()
        p = runs[0][0].prompt_length
        lengths = torch.tensor([len(prompts[j // runs[r][1]]) for r, j in order])
        attention = torch.arange(ids.shape[1])[None, :] >= (p - lengths)[:, None]
        mcfg = cast(ModelConfig, self.dllm.config)
        ends = end_token_ids(mcfg)
        if ends:  # as DecodingRollouts: the completion is its text up to the first end token
            pad = mcfg.pad_token_id if mcfg.pad_token_id is not None else ends[0]
            ids[:, p:] = pad_after_first_end(ids[:, p:], ends, pad)
        texts = [self.tokenizer.decode(list(runs[r][0].completions[j])) for r, j in order]
        nfe = [int(runs[r][0].nfe[j]) for r, j in order]
        return RolloutBatch(ids, attention, p, texts, nfe, traces=[per_run[r][j] for r, j in order])


def split_rows(steps: PolicySteps, n_rows: int) -> list[PolicySteps]:
    """Per rollout row, its own steps (row field kept)."""
    return [PolicySteps(**{f.name: getattr(steps, f.name)[steps.row == i] for f in dataclasses.fields(steps)})
            for i in range(n_rows)]  # fmt: skip


# ---------------------------------------------------------------------- warm start
def expert_steps(
    dllm: nn.Module, tokenizer: Any, tasks: Sequence[Task], decode: DecodeConfig, threshold: float, batch: int = 64
) -> PolicySteps:
    """The threshold heuristic's decisions on ``tasks`` (greedy tokens), as policy steps: the
    features it saw and the positions it committed (its forced position included)."""
    from demask.decoding import generate

    policy_block = decode.block_length or decode.gen_length
    expert = LearnedPolicy(threshold_expert(threshold), deterministic=True)
    config = decode.replace(policy=expert, policy_options={}, temperature=0.0, trace=True)
    parts = []
    for lo in range(0, len(tasks), batch):
        prompts = [tokenizer.encode(t.prompt) for t in tasks[lo : lo + batch]]
        out = generate(dllm, prompts, config, generator=torch.Generator().manual_seed(lo))
        parts.append(steps_from_trace(out.trace, lo, expert=True, policy_block=policy_block))
    return PolicySteps.cat(parts)


def imitate(net: PolicyNet, steps: PolicySteps, updates: int, lr: float = 1e-3, seed: int = 0,
            batch: int = 512) -> list[float]:  # fmt: skip
    """Behaviour cloning: fit ``net``'s commit probabilities to the expert's actions (binary
    cross-entropy over each step's masked positions of the block). Returns the losses."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    net.train()
    for _ in range(updates):
        idx = torch.randint(0, len(steps), (min(batch, len(steps)),), generator=gen)
        p = net.probabilities(steps.masked[idx], steps.confidence[idx], steps.time[idx]).clamp(1e-6, 1 - 1e-6)
        where = steps.masked[idx] & steps.block[idx]
        target = steps.action[idx].float()
        loss = torch.nn.functional.binary_cross_entropy(p[where], target[where])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    net.eval()
    return losses


# ---------------------------------------------------------------------- the trainer
@dataclass
class UnmaskingConfig:
    """Settings of :func:`train_unmasking_policy` beyond the optimizer's."""

    group_size: int = 8
    """G: policy rollouts per prompt (paper: 8)."""
    experts: int = 0
    """E: expert (threshold-heuristic) rollouts per prompt (expert steering; 0 = off)."""
    expert_threshold: float = 0.9
    expert_block_length: int | None = None
    prompts_per_step: int = 16
    inner_iterations: int = 2
    """mu (paper: 2)."""
    epsilon: float = 0.5
    alpha: float = 1.0
    """The compute penalty's exponent (paper: 10, 3, 1, 0.3, 0)."""
    tau: float = 1.0
    decode: dict[str, Any] = field(default_factory=lambda: {"gen_length": 48, "block_length": 8, "cache": "dual"})
    """The dLLM's decoder for the rollouts (DecodeConfig fields; the policy and greedy tokens are set)."""
    timeout_s: float = 3.0
    sandbox_workers: int | None = None
    max_seconds: float | None = None
    """Stop after the first round that ends past this many seconds (the schedule still spans train.max_steps)."""
    max_updates: int | None = None
    """Stop after the first round that ends at or past this many updates (the schedule still
    spans train.max_steps): a budget that does not depend on the machine's load."""
    imitate_threshold: float | None = None
    """Warm start (demask's addition; the paper starts from p = 0.12 everywhere): before RL,
    fit the network to the threshold heuristic's decisions at this threshold (behaviour
    cloning on its traces over ``imitate_prompts`` training prompts, ``imitate_steps``
    updates); None: no warm start."""
    imitate_prompts: int = 256
    imitate_steps: int = 300

    def __post_init__(self) -> None:
        for name in ("group_size", "prompts_per_step", "inner_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"policy.{name} must be at least 1, got {getattr(self, name)}")
        if self.experts < 0:
            raise ValueError(f"policy.experts must be >= 0, got {self.experts}")
        if self.alpha < 0:
            raise ValueError(f"policy.alpha must be >= 0, got {self.alpha}")

    def decode_config(self) -> DecodeConfig:
        return DecodeConfig.from_dict({**self.decode, "policy": "confidence", "steps": None})


@dataclass
class CorrectNFE(RewardFn):
    """``nfe_reward`` on the sandbox's verdict and each rollout's NFE."""

    requires: ClassVar[frozenset[str]] = frozenset({"sandbox", "nfe"})
    alpha: float = 1.0
    gen_length: int = 48
    timeout_s: float | None = None

    def __call__(self, completions, tasks, sandbox=None):
        raise ValueError("the correct_nfe reward needs each completion's NFE: call score_round (collect_round does)")

    def score_round(self, completions, tasks, sandbox, nfe):
        from demask.training.rl.rewards import RewardBreakdown, compute_rewards

        base = compute_rewards(
            completions, tasks, sandbox, w_code=1.0, w_format=0.0, code_requires_format=False, timeout_s=self.timeout_s
        )
        return [
            RewardBreakdown(nfe_reward(b.code >= 1.0, int(n), self.gen_length, self.alpha), b.code, b.format, b.result)
            for b, n in zip(base, nfe)
        ]


@dataclass
class PolicyWeights:
    """A policy network in and out of a checkpoint folder (config.json + model.safetensors),
    so that every checkpoint of a run is itself a usable policy (``policy_options.path``)."""

    config: PolicyNetConfig

    def write(self, path: Path, state: dict[str, torch.Tensor]) -> None:
        net = PolicyNet(self.config)
        net.load_state_dict(state)
        save_policy(net, path)

    def load(self, path: Path, model: nn.Module) -> None:
        model.load_state_dict(load_policy(path).state_dict())


def train_unmasking_policy(
    config: UnmaskingConfig,
    train: TrainConfig,
    net: PolicyNet,
    dllm: nn.Module,
    tokenizer: Any,
    tasks: Sequence[Task],
    *,
    sandbox: Any = None,
    reward_fn: RewardFn | None = None,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    log: Callable[[str], None] | None = None,
) -> UpdateLoop:
    """Train ``net`` to unmask for the frozen ``dllm`` on ``tasks`` (module docstring)."""
    mu = config.inner_iterations
    if train.max_steps % mu:
        raise ValueError(f"train.max_steps={train.max_steps} is not a multiple of policy.inner_iterations={mu}")
    if len(tasks) < config.prompts_per_step:
        raise ValueError(f"{len(tasks)} tasks, fewer than policy.prompts_per_step={config.prompts_per_step}")
    decode = config.decode_config()
    algorithm = UnmaskingGRPO(config.epsilon, config.group_size, config.experts)
    check_requirements(algorithm, {"rollouts", "reward"})
    reward = reward_fn or CorrectNFE(config.alpha, decode.gen_length, config.timeout_s)
    dllm.eval().requires_grad_(False)
    rollouts = PolicyRollouts(
        dllm, tokenizer, decode, config.experts, config.expert_threshold, config.expert_block_length
    )
    group = config.group_size + config.experts
    loop = UpdateLoop(
        train,
        net,
        log_name=LOG_FILE,
        callbacks=callbacks,
        resume=resume,
        refuse_fsdp="the policy trainer runs on one process",
        max_seconds=config.max_seconds,
        max_updates=config.max_updates,
        desc="policy",
        weights=PolicyWeights(net.config),
    )
    dllm.to(loop.device)  # the policy went to train.device with the loop; the dLLM decodes beside it
    own = None
    if sandbox is None and "sandbox" in reward.requirements:
        from demask.execution import Sandbox, SandboxConfig

        sandbox = own = Sandbox(SandboxConfig.pool(config.timeout_s, config.sandbox_workers))
    try:
        with loop:
            for round_index in range(loop.start // mu, train.max_steps // mu):
                t0 = time.perf_counter()
                picked = global_batch_indices(len(tasks), config.prompts_per_step, train.seed, round_index)
                gen = torch.Generator(device=loop.device).manual_seed(_mix(train.seed ^ _ROLLOUT_STREAM, round_index))
                with torch.no_grad():
                    rnd = collect_round(
                        net, [tasks[int(i)] for i in picked], rollouts, reward, sandbox, gen,
                        group_size=group, advantage="mean",
                    )  # fmt: skip
                prev = loop.done
                stats = _train_on_round(loop, algorithm, rnd, mu)
                row = {**rnd.metrics, **stats, "round_s": time.perf_counter() - t0}
                loop.end_unit(prev, functools.partial(_log_row, loop, row), log_line=log)
                if loop.stopping:
                    break
    finally:
        if own is not None:
            own.close()
    return loop


def _train_on_round(loop: UpdateLoop, algorithm: UnmaskingGRPO, rnd: Round, mu: int) -> dict[str, float]:
    traces = rnd.batch.traces
    assert traces is not None, "policy rollouts carry their steps"
    steps = PolicySteps.cat([dataclasses.replace(t, row=torch.full_like(t.row, i)) for i, t in enumerate(traces)]).to(
        loop.device
    )
    net = cast(PolicyNet, loop.wrapped)
    with torch.no_grad():
        old = algorithm.logprobs(net, steps)
    batch = UnmaskingBatch(steps, rnd.advantages.to(loop.device), old)
    informative = bool((rnd.advantages != 0).any())
    sums = dict.fromkeys(("loss", "ratio_mean", "clip_fraction", "grad_norm"), 0.0)

    def accumulate() -> None:
        if not informative:  # every advantage is zero: no backward, the update moves nothing
            return
        loss, m = algorithm.loss(net, batch)
        loss.backward()
        for key in ("loss", "ratio_mean", "clip_fraction"):
            sums[key] += m[key] / mu

    for _ in range(mu):
        sums["grad_norm"] += float(loop.update(accumulate)) / mu
    with torch.no_grad():
        p = net.probabilities(steps.masked, steps.confidence, steps.time)
        p_mean = float(p[steps.masked & steps.block].mean())
    expert = steps.expert
    return {**sums, "steps": float(len(steps)), "p_mean": p_mean, "expert_steps": float(expert.float().mean())}


POLICY_LOG_COLUMNS = (
    "reward_mean", "pass_rate", "nfe_mean", "loss", "ratio_mean", "clip_fraction", "grad_norm", "p_mean",
    "steps", "informative_groups", "round_s", "rollout_s",
)  # fmt: skip


def _log_row(loop: UpdateLoop, values: dict[str, float]) -> dict[str, float]:
    row = {"lr": loop.lr, **reduce_metrics({k: values[k] for k in POLICY_LOG_COLUMNS}, loop.info)}
    row["elapsed_s"] = loop.elapsed()
    loop.bar.set_postfix(reward=f"{row['reward_mean']:.3f}", nfe=f"{row['nfe_mean']:.1f}", refresh=False)
    return row


# ---------------------------------------------------------------------- evaluation, recipes
def semi_ar_block(decode: DecodeConfig) -> int | None:
    """The block length a policy trained with ``decode`` records: None for full diffusion."""
    block = decode.block_length
    return block if block is not None and block < decode.gen_length else None


def policy_callback(
    dllm: nn.Module, tasks: Sequence[Task], tokenizer: Any, decode: DecodeConfig, out_dir: Path, **kw: Any
):
    """A callback scoring the policy being trained: pass@1 and NFE of the frozen dLLM decoding
    ``tasks`` with it ("bernoulli-argmax": sampled actions, the highest-probability position
    forced when a step would commit nothing; a fixed seed)."""
    from demask.training.callbacks import PassAtKEval

    class PolicyEval(PassAtKEval):
        def on_evaluate(self, step: int, model: nn.Module, info: Any) -> dict[str, float]:
            net = cast(PolicyNet, model)

            def fn(features: PolicyFeatures) -> torch.Tensor:
                return net.probabilities(features.masked, features.confidence, features.time)

            self.decode_config = decode.replace(policy=LearnedPolicy(fn), policy_options={}, temperature=0.0)
            out = super().on_evaluate(step, dllm, info)
            results = self.out_dir / f"step-{step:07d}" / "results.json"
            if results.is_file():
                import json

                gen = json.loads(results.read_text()).get("generation") or {}
                if gen.get("mean_nfe") is not None:
                    out["nfe_mean"] = float(gen["mean_nfe"])
            return out

    return PolicyEval(tasks, tokenizer, decode, out_dir, name="pass", **kw)


@dataclass
class PolicyEvalRecipe:
    tasks: str = "tinycode:validation"
    max_tasks: int | None = 168
    batch_size: int = 64
    seed: int = 0


@dataclass
class PolicyRecipe:
    """A learned-policy run as YAML (``demask policy-train --recipe``)."""

    dllm: str = "tinycode-mdm"
    """The frozen diffusion model the policy decodes for (a checkpoint, a shipped name or a hub id)."""
    dtype: str | None = "float32"
    tasks: str = "tinycode:train"
    task_options: dict[str, Any] = field(default_factory=dict)
    max_tasks: int | None = None
    network: dict[str, Any] = field(default_factory=dict)
    """PolicyNetConfig fields (hidden_size, tau, ...); block_length and gen_length come from
    ``policy.decode``."""
    init_from: str | None = None
    """Start from a trained policy folder instead of a fresh network."""
    policy: UnmaskingConfig = field(default_factory=UnmaskingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: PolicyEvalRecipe | None = field(default_factory=PolicyEvalRecipe)


def load_policy_recipe(path: str | Path, settings: Sequence[str] = ()) -> PolicyRecipe:
    """Read a learned-policy recipe and apply ``KEY=VALUE`` settings (unknown keys named)."""
    from demask.training.recipe import read_recipe

    return read_recipe(
        PolicyRecipe,
        path,
        settings,
        blocks="dllm, tasks, network, policy, train, eval",
        example="policy.alpha=3 or train.lr=1e-4",
    )


def run_policy_recipe(recipe: PolicyRecipe, *, resume: bool = False, log: Callable[[str], None] = print) -> UpdateLoop:
    """Load the dLLM and the tasks, build the network and train it."""
    from demask.model import load_pretrained
    from demask.tasks import load_tasks

    dllm, tokenizer = load_pretrained(recipe.dllm, dtype=recipe.dtype)
    tasks = load_tasks(recipe.tasks, **recipe.task_options)
    if recipe.max_tasks is not None:
        tasks = tasks[: recipe.max_tasks]
    decode = recipe.policy.decode_config()
    if recipe.init_from is not None:
        net = load_policy(recipe.init_from)
    else:
        fields = {
            **recipe.network,
            "block_length": semi_ar_block(decode),
            "gen_length": decode.gen_length,
        }
        net = PolicyNet(PolicyNetConfig(**fields, trained_on=recipe.dllm))
    callbacks: list[Callback] = []
    if recipe.eval is not None:
        e = recipe.eval
        eval_tasks = load_tasks(e.tasks)[: e.max_tasks] if e.max_tasks else load_tasks(e.tasks)
        out = Path(recipe.train.out_dir or "runs/policy") / "eval"
        callbacks.append(
            policy_callback(dllm, eval_tasks, tokenizer, decode, out, batch_size=e.batch_size, seed=e.seed)
        )
    p = recipe.policy
    if p.imitate_threshold is not None and not resume:
        picked = global_batch_indices(len(tasks), min(p.imitate_prompts, len(tasks)), recipe.train.seed, 10**6)
        steps = expert_steps(dllm, tokenizer, [tasks[int(i)] for i in picked], decode, p.imitate_threshold)
        losses = imitate(net, steps, p.imitate_steps, seed=recipe.train.seed)
        log(f"warm start: imitated threshold {p.imitate_threshold} on {len(steps)} steps of {len(picked)} prompts; "
            f"BCE {losses[0]:.3f} -> {sum(losses[-20:]) / len(losses[-20:]):.3f}")  # fmt: skip
    log(
        f"policy: {net.num_parameters() / 1e3:.0f}K parameters for {recipe.dllm}; {len(tasks)} prompts from "
        f"{recipe.tasks}; G={p.group_size} (+{p.experts} experts), {p.prompts_per_step} prompts/round, "
        f"alpha={p.alpha}, blocks of {decode.block_length or decode.gen_length} in {decode.gen_length}"
    )
    return train_unmasking_policy(
        p, recipe.train, net, dllm, tokenizer, tasks, callbacks=callbacks, resume=resume, log=log
    )
