"""Unmasking policies: which masked positions of the current block to commit at a step.

A policy sees one :class:`StepState` (the current block of every row still decoding) and
returns a :class:`Selection`. Two kinds:

- fixed-budget (``adaptive = False``): score every masked position and commit the
  ``state.counts`` best, counts coming from a schedule (see schedules.py); with
  ``alg_temp`` the positions are instead sampled without replacement from
  ``softmax(score / alg_temp)`` (Gumbel-top-k, the same law as Dream's multinomial).
- adaptive (:class:`AdaptivePolicy`): the policy proposes how many (threshold, factor,
  entropy-bound, learned); the base class enforces the two rules every one of them keeps:
  a row that proposes nothing commits its best-scored masked position (unless the policy
  allows empty steps, the learned one during RL rollouts), and everything left is committed
  when ``state.force_all`` (the block's step cap).

A policy's knobs are its constructor's arguments: ``make_policy("threshold", threshold=0.8)``,
``DecodeConfig(policy="threshold", policy_options={"threshold": 0.8})``. A new policy is one
class registered by name (``@POLICIES.register("mine")``, or
``POLICIES.register_lazy("mine", "my_package.module:MyPolicy")``): nothing else to edit.

Names follow the anchors, their names are aliases: ``origin`` -> random,
``low_confidence``/``maskgit_plus`` -> confidence, ``topk_margin`` -> margin.

Departures: ``random`` commits exactly the schedule's count of uniformly chosen positions
(LLaDA's "random" remasking); Dream's ``origin`` draws a Bernoulli(1 - s/t) per position,
which commits the same number on average but not exactly. Ties in a score are broken
towards the left (stable sort).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import torch

from demask.decoding.sampling import gumbel_noise
from demask.registry import Registry


@dataclass(eq=False)
class StepState:
    """One step, restricted to the current block: A rows still decoding, S block positions."""

    tokens: torch.Tensor
    """(A, S) long: the value each position would take (argmax or sampled)."""
    probs: torch.Tensor
    """(A, S, V) float32: the distribution ``tokens`` were drawn from."""
    masked: torch.Tensor
    """(A, S) bool: positions still masked. Policies commit only among these."""
    step: int
    """Index of this step within the block (0-based)."""
    nfe: torch.Tensor
    """(A,) long: forward passes the row has taken part in, this step's included."""
    gen_length: int
    block_start: int
    """Completion index of the block's first position."""
    counts: torch.Tensor | None = None
    """(A,) long: how many to commit (fixed-budget policies; None for adaptive ones)."""
    force_all: bool = False
    """Commit everything still masked (an adaptive policy reached the block's step cap)."""
    generator: torch.Generator | None = None
    completion_masked: torch.Tensor | None = None
    """(A, L) bool over the whole completion (only for policies with ``sees_completion``)."""
    completion_confidence: torch.Tensor | None = None
    """(A, L) float: top-1 probability of the untempered logits, from the latest forward
    that covered each position (only for policies with ``sees_completion``)."""

    @property
    def budget(self) -> torch.Tensor:
        """``counts``, which every fixed-budget policy needs (the loop sets it from the schedule)."""
        if self.counts is None:
            raise ValueError("a fixed-budget policy was called without counts: set StepState.counts from a schedule")
        return self.counts

    @cached_property
    def confidence(self) -> torch.Tensor:
        """(A, S): probability of the chosen token."""
        return self.probs.gather(-1, self.tokens.unsqueeze(-1)).squeeze(-1)

    @cached_property
    def margin(self) -> torch.Tensor:
        """(A, S): p(top-1) - p(top-2)."""
        top2 = self.probs.topk(2, dim=-1).values
        return top2[..., 0] - top2[..., 1]

    @cached_property
    def neg_entropy(self) -> torch.Tensor:
        """(A, S): sum_v p log p (0 log 0 = 0); higher is surer."""
        return torch.special.xlogy(self.probs, self.probs).sum(-1)


@dataclass
class Selection:
    commit: torch.Tensor
    """(A, S) bool: positions to commit now (a subset of ``state.masked``)."""
    scores: torch.Tensor
    """(A, S) float: what the policy ranked by (recorded in traces)."""
    info: dict[str, torch.Tensor] = field(default_factory=dict)
    """Extra per-step tensors for traces (the learned policy's log-probs)."""


class UnmaskingPolicy(ABC):
    """Interface: ``select(state) -> Selection``. Options are ``__init__`` arguments,
    validated there (a wrong value is a ValueError naming the option and its range)."""

    name: ClassVar[str]
    adaptive: ClassVar[bool] = False
    """True: the policy chooses how many to commit (no schedule, no ``steps``)."""
    sees_completion: ClassVar[bool] = False
    """True: the loop fills ``completion_masked`` / ``completion_confidence``."""

    @abstractmethod
    def select(self, state: StepState) -> Selection: ...


POLICIES: Registry[type[UnmaskingPolicy]] = Registry("unmasking policy", base=UnmaskingPolicy)


def commit_top(key: torch.Tensor, counts: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """(A, S) bool: the ``counts[a]`` masked positions of row a with the highest key.

    Unmasked positions never win, whatever their key; ties go to the leftmost position.
    """
    lowest = torch.finfo(key.dtype).min
    key = torch.where(masked, key.clamp(min=lowest), float("-inf"))
    order = key.argsort(dim=-1, descending=True, stable=True)  # (A, S)
    ranks = torch.arange(key.shape[-1], device=key.device)
    take = ranks < counts.unsqueeze(-1)  # (A, S) in sorted order
    return torch.zeros_like(masked).scatter(-1, order, take) & masked


class ScoredPolicy(UnmaskingPolicy):
    """Fixed budget: commit the ``state.counts`` best-scored masked positions."""

    def __init__(self, alg_temp: float | None = None) -> None:
        """alg_temp: Dream's position temperature: sample the positions to commit from
        softmax(score / alg_temp) instead of taking the top scores (None = top scores)."""
        if alg_temp is not None and alg_temp <= 0:
            raise ValueError(f"alg_temp must be > 0 or None (take the top scores), got {alg_temp}")
        self.alg_temp = alg_temp

    @abstractmethod
    def score(self, state: StepState) -> torch.Tensor:
        """(A, S) float: higher = commit sooner."""

    def select(self, state: StepState) -> Selection:
        scores = self.score(state)
        key = scores
        if self.alg_temp is not None:
            # Gumbel-top-k on score / alg_temp samples positions without replacement from
            # softmax(score / alg_temp), Dream's `alg_temp` multinomial.
            key = scores.double() / self.alg_temp + gumbel_noise(scores.shape, state.generator, scores.device)
        return Selection(commit_top(key, state.budget, state.masked), scores)


@POLICIES.register("random", "origin")
class RandomPolicy(ScoredPolicy):
    """Uniformly random positions (the schedule sets how many). ``alg_temp`` is moot."""

    def score(self, state: StepState) -> torch.Tensor:
        gen_device = state.generator.device if state.generator is not None else torch.device("cpu")
        u = torch.rand(state.masked.shape, generator=state.generator, device=gen_device)
        return u.to(state.masked.device)

    def select(self, state: StepState) -> Selection:
        scores = self.score(state)
        return Selection(commit_top(scores, state.budget, state.masked), scores)


@POLICIES.register("confidence", "low-confidence", "maskgit-plus")
class ConfidencePolicy(ScoredPolicy):
    """Probability of the chosen token (LLaDA low_confidence, Dream maskgit_plus)."""

    def score(self, state: StepState) -> torch.Tensor:
        return state.confidence


@POLICIES.register("margin", "topk-margin")
class MarginPolicy(ScoredPolicy):
    """p(top-1) - p(top-2) (Dream topk_margin)."""

    def score(self, state: StepState) -> torch.Tensor:
        return state.margin


@POLICIES.register("entropy", "neg-entropy")
class EntropyPolicy(ScoredPolicy):
    """Negative entropy sum p log p (Dream/DiffuCoder entropy)."""

    def score(self, state: StepState) -> torch.Tensor:
        return state.neg_entropy


@POLICIES.register("left-to-right", "l2r", "ltr", "autoregressive")
class LeftToRightPolicy(ScoredPolicy):
    """The leftmost masked positions first: autoregressive order inside the schedule."""

    def score(self, state: StepState) -> torch.Tensor:
        a, s = state.masked.shape
        return -torch.arange(s, device=state.masked.device, dtype=torch.float32).expand(a, s)


def best_masked(key: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """(A, S) bool: each row's highest-key masked position (none in rows with nothing masked)."""
    lowest = torch.finfo(key.dtype).min
    best = torch.where(masked, key.clamp(min=lowest), float("-inf")).argmax(-1, keepdim=True)
    return torch.zeros_like(masked).scatter(-1, best, True) & masked


class AdaptivePolicy(UnmaskingPolicy):
    """A policy that chooses how many positions to commit: override :meth:`propose`.

    :meth:`select` enforces the rules every adaptive policy keeps: at the block's step cap
    (``state.force_all``) everything still masked is committed; otherwise a row with
    something masked that proposes nothing commits its best-scored position, unless
    :meth:`allows_empty_steps` (the learned policy during RL rollouts).
    """

    adaptive = True

    @abstractmethod
    def propose(self, state: StepState) -> Selection:
        """The commits the policy's own rule makes (may be empty in some rows)."""

    def allows_empty_steps(self) -> bool:
        return False

    def select(self, state: StepState) -> Selection:
        proposal = self.propose(state)
        masked = state.masked
        if state.force_all:
            commit = masked.clone()
        else:
            commit = proposal.commit & masked
            if not self.allows_empty_steps():
                empty = ~commit.any(-1, keepdim=True)  # (A, 1)
                commit = commit | (empty & best_masked(proposal.scores, masked))
        return Selection(commit, proposal.scores, proposal.info)


@POLICIES.register("threshold", "confidence-threshold")
class ThresholdPolicy(AdaptivePolicy):
    """Fast-dLLM: every masked position whose confidence >= threshold (at least the top-1)."""

    def __init__(self, threshold: float = 0.9) -> None:
        """threshold: the confidence tau a position needs to be committed, in (0, 1]."""
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
        self.threshold = threshold

    def propose(self, state: StepState) -> Selection:
        conf = state.confidence
        return Selection(state.masked & (conf >= self.threshold), conf)


@POLICIES.register("left-to-right-threshold", "ltr-threshold", "prefix-threshold")
class LeftToRightThresholdPolicy(AdaptivePolicy):
    """Left to right with parallel acceptance: the leftmost masked position, and each masked
    position after it, in order, while its confidence >= threshold (the acceptance rule of
    Jacobi / speculative decoding applied to the model's own parallel predictions). Keeps
    the autoregressive order, so with threshold 1 it is ``left-to-right`` one token a step."""

    def __init__(self, threshold: float = 0.9) -> None:
        """threshold: the confidence a position after the leftmost needs, in (0, 1]."""
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
        self.threshold = threshold

    def propose(self, state: StepState) -> Selection:
        conf, masked = state.confidence, state.masked
        ok = (conf >= self.threshold) | ~masked
        ok = ok | best_masked(-torch.arange(masked.shape[1], device=masked.device, dtype=torch.float32), masked)
        run = ok.long().cumprod(-1).bool()  # the leading run: unmasked, the leftmost masked, sure ones
        return Selection(masked & run, conf)


def _count_prefix(ok_sorted: torch.Tensor, n_masked: torch.Tensor) -> torch.Tensor:
    """(A,) long: length of the leading run of True in each sorted row, at least 1, at most n."""
    run = ok_sorted.long().cumprod(-1).sum(-1)
    return torch.minimum(run.clamp(min=1), n_masked)


@POLICIES.register("factor", "confidence-factor")
class FactorPolicy(AdaptivePolicy):
    """Fast-dLLM factor rule: sort confidences c_1 >= c_2 >= ...; commit the n-th while
    (n + 1)(1 - c_n) < f; always the top-1. (Fast-dLLM's loop also commits the last
    candidate when only it fails the test; here the rule holds for every n.)"""

    def __init__(self, factor: float = 1.0) -> None:
        """factor: f of the rule, > 0 (larger commits more per step)."""
        if factor <= 0:
            raise ValueError(f"factor must be > 0, got {factor}")
        self.factor = factor

    def propose(self, state: StepState) -> Selection:
        conf = state.confidence
        sorted_conf = torch.where(state.masked, conf, -1.0).sort(-1, descending=True).values
        n = torch.arange(1, conf.shape[-1] + 1, device=conf.device, dtype=conf.dtype)
        ok = (n + 1) * (1 - sorted_conf) < self.factor
        counts = _count_prefix(ok, state.masked.sum(-1))
        return Selection(commit_top(conf, counts, state.masked), conf)


@POLICIES.register("entropy-bound", "eb", "eb-sampler")
class EntropyBoundPolicy(AdaptivePolicy):
    """EB-sampler: sort masked positions by entropy H ascending; commit the k lowest while
    sum(H_1..H_k) - max(H_1..H_k) <= gamma (so at least one)."""

    def __init__(self, gamma: float = 0.1) -> None:
        """gamma: the entropy budget, >= 0 (0 commits one position a step)."""
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma

    def propose(self, state: StepState) -> Selection:
        score = state.neg_entropy  # -H
        h_sorted = torch.where(state.masked, -score, float("inf")).sort(-1).values
        # Sorted ascending, the max of the first k is the k-th; masked-out entries are inf -> fail.
        ok = (h_sorted.cumsum(-1) - h_sorted) <= self.gamma
        counts = _count_prefix(ok, state.masked.sum(-1))
        return Selection(commit_top(score, counts, state.masked), score)


@dataclass
class PolicyFeatures:
    """What a learned unmasking policy sees (arXiv 2512.09106), over the whole completion."""

    masked: torch.Tensor
    """(A, L) bool: still masked."""
    confidence: torch.Tensor
    """(A, L) float: the model's top-1 probability (untempered logits)."""
    time: torch.Tensor
    """(A,) float: t = NFE so far (this step's forward included) / L."""
    position: torch.Tensor
    """(L,) long: completion index of each position."""
    block: torch.Tensor
    """(L,) bool: inside the current block."""


@POLICIES.register("learned")
class LearnedPolicy(AdaptivePolicy):
    """A callable ``fn(PolicyFeatures) -> (A, L) commit probabilities`` decides.

    Each masked position of the current block is committed by an independent Bernoulli of
    probability ``clamp(beta * p)`` (``beta`` is the test-time speed knob of the paper).
    ``deterministic`` commits where p >= 0.5 instead of sampling. With ``force_nonempty``
    (evaluation) a row that selects nothing commits its highest-p masked position; without
    it (RL rollouts) an empty step is allowed and the block's step cap (block length)
    ends the block by committing the rest.

    ``Selection.info`` (kept in traces) carries what a policy-gradient trainer needs:
    ``probs`` (A, L), ``action`` (A, L) the sampled action before forcing, ``logprob``
    (A,) = sum of Bernoulli log-likelihoods of the action over the block's masked
    positions, ``forced`` (A,), ``capped`` (A,) (the block's step cap: the loop commits every
    masked position whatever the action), and the features ``masked``, ``confidence``, ``time``;
    decode with ``DecodeConfig(trace=True)`` and read them with ``trace.policy_info(key)``.
    ``path``: a trained policy folder (:mod:`demask.decoding.policy_net`), usable by name:
    ``--policy learned --set policy_options.path=DIR``; a policy trained on another block
    length is refused when it first decides.
    """

    sees_completion = True

    def __init__(
        self,
        fn: Callable[[PolicyFeatures], torch.Tensor] | None = None,
        beta: float = 1.0,
        force_nonempty: bool = True,
        deterministic: bool = False,
        path: str | None = None,
    ) -> None:
        if (fn is None) == (path is None):
            raise ValueError(
                "the learned policy needs its network, either a trained policy folder "
                "(--policy learned --set policy_options.path=DIR; DecodeConfig(policy='learned', "
                "policy_options={'path': DIR})) or a callable (DecodeConfig(policy=LearnedPolicy(fn))), not both"
                if fn is not None
                else "the learned policy needs its network: --set policy_options.path=DIR (a folder written by "
                "demask policy-train), or DecodeConfig(policy=LearnedPolicy(fn))"
            )
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        self.block_length: int | None = None
        self.network: Any = None
        if path is not None:
            from demask.decoding.policy_net import load_policy

            net = load_policy(path)
            self.network = net
            self.block_length = net.config.block_length

            def fn(features: PolicyFeatures, net=net) -> torch.Tensor:
                if next(net.parameters()).device != features.masked.device:
                    net.to(features.masked.device)
                return net.probabilities(features.masked, features.confidence, features.time)

        assert fn is not None
        self.fn, self.beta = fn, beta
        self.force_nonempty, self.deterministic = force_nonempty, deterministic

    def allows_empty_steps(self) -> bool:
        return not self.force_nonempty

    def propose(self, state: StepState) -> Selection:
        masked_all, confidence = state.completion_masked, state.completion_confidence
        if masked_all is None or confidence is None:
            raise ValueError(
                "the learned policy sees the whole completion: StepState.completion_masked and "
                "completion_confidence must be set (the loop does for sees_completion policies)"
            )
        a, length = masked_all.shape
        s = state.masked.shape[-1]
        if self.network is not None:
            _check_policy_blocks(self.block_length, s, state.gen_length)
        lo, hi = state.block_start, state.block_start + s
        position = torch.arange(length, device=masked_all.device)
        features = PolicyFeatures(
            masked=masked_all,
            confidence=confidence,
            time=state.nfe.float() / state.gen_length,
            position=position,
            block=(position >= lo) & (position < hi),
        )
        with torch.no_grad():
            p_all = self.fn(features).float()
        if p_all.shape != (a, length):
            raise ValueError(f"learned policy returned shape {tuple(p_all.shape)}, expected {(a, length)}")
        p = (p_all[:, lo:hi] * self.beta).clamp(0.0, 1.0)  # (A, S)
        if self.deterministic:
            action = p >= 0.5
        else:
            gen_device = state.generator.device if state.generator is not None else torch.device("cpu")
            u = torch.rand(p.shape, generator=state.generator, device=gen_device).to(p.device)
            action = u < p
        action &= state.masked
        eps = 1e-12
        ll = torch.where(action, (p + eps).log(), (1 - p + eps).log())
        logprob = torch.where(state.masked, ll, 0.0).sum(-1)
        empty = ~(action.any(-1)) & state.masked.any(-1)
        full_action = torch.zeros_like(masked_all)
        full_action[:, lo:hi] = action
        info = {
            "probs": p_all,
            "action": full_action,
            "logprob": logprob,
            "forced": empty if self.force_nonempty else torch.zeros_like(empty),
            "capped": torch.full_like(empty, bool(state.force_all)),  # the step cap commits the rest
            # copies: the loop updates its masked / confidence tensors in place after this step
            "masked": masked_all.clone(),
            "confidence": confidence.clone(),
            "time": features.time,
        }
        return Selection(action, p, info)


def _check_policy_blocks(trained: int | None, block: int, gen_length: int) -> None:
    """A policy decodes the kind of blocks it was trained on: blocks of ``trained`` tokens, or
    (None) the whole completion at once (full diffusion, any length)."""
    if trained is None and block != gen_length:
        raise ValueError(
            f"this learned policy was trained for full diffusion (one block, the whole completion), the decoder "
            f"uses blocks of {block} in {gen_length}; leave block_length unset (or train a semi-AR policy)"
        )
    if trained is not None and block != trained:
        raise ValueError(
            f"this learned policy was trained on blocks of {trained} tokens, the decoder uses blocks of {block}; "
            f"set block_length={trained} (or train a policy for blocks of {block})"
        )


def policy_class(name: str) -> type[UnmaskingPolicy]:
    """The class registered as ``name`` (or named by a ``module:Class`` reference)."""
    return POLICIES.get(name)


def make_policy(policy: str | UnmaskingPolicy, **options: Any) -> UnmaskingPolicy:
    """A policy by name with its options (``make_policy("threshold", threshold=0.8)``),
    checked against the class's arguments; an instance is returned as is."""
    if isinstance(policy, UnmaskingPolicy):
        if options:
            raise ValueError(
                f"policy options {sorted(options)} were given with a policy instance "
                f"({type(policy).__name__}); set them when building the instance"
            )
        return policy
    return POLICIES.create(policy, **options)


def policy_names() -> list[str]:
    return POLICIES.names()
