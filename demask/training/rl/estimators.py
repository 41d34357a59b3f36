"""Per-token log-probability estimators for RL on masked-diffusion (and causal) models.

A masked-diffusion model has no exact per-token log-likelihood of a completion; GRPO needs
one per token for the ratio ``exp(logp - logp_old)``. Each estimator here builds C noisy
copies of every sequence (completion positions replaced by the mask token according to a
random plan; the prompt stays clean except in ``d1``), runs them through the model in one
batch of ``C * B`` rows, and combines the copies' token log-probs with per-token weights::

    logp_k = sum_c weights[c, k] * log p_theta(x_k | copy c)

Estimators (``get_estimator(name)``), with forward passes per sequence:

- ``coupled`` (3; DiffuCoder coupled-GRPO, arXiv 2506.20639): one ``t ~ U(0.2, 0.8)`` for
  the batch, ``u ~ U(0, 1)`` per completion token; copy 0 masks every completion token,
  copy 1 masks where ``u < t``, copy 2 where ``u >= t`` (the complement), and
  ``logp_k = 1/2 * [logp0_k + (logp1_k / t if u_k < t else logp2_k / (1 - t))]``
  (lambda = 1: one complementary pair plus the fully masked pass).
- ``decoupled`` (3; the paper's ablation): the same, but copy 2 is masked where
  ``u2_k >= t`` with ``u2`` drawn independently of ``u``. Each copy's mask has the same
  distribution as in ``coupled`` and the weights are the same functions of (mask, t), so the
  two estimators have the same expectation; a token may now be scored in both partial
  copies or in neither (then only the fully masked term remains).
- ``full_mask`` (1): copy 0 only, ``logp_k = logp0_k``. Deterministic.
- ``d1`` (1; d1 / diffu-GRPO): every completion token masked plus each real prompt token
  masked with probability ``p_mask_prompt = 0.15``; ``logp_k`` is that copy's log-prob.
- ``autoregressive`` (1): exact ``log p(x_k | x_<k)`` of a causal, shifted model from one
  clean forward.

Reading of the paper's formula (as in the released reference code): the 1/t and 1/(1 - t)
factors multiply *log*-probabilities. Over the draw of u, token k lands in copy 1 with
probability t and in copy 2 with probability 1 - t, so the partial term is an unbiased
estimate of ``logp1_k + logp2_k`` and ``E[logp_k] = 1/2 logp0_k + 1/2 (logp1_k + logp2_k)``:
about 1.5 times a log-prob when the context matters little (docs/grpo.md shows -301 against
-200 for the fully masked estimate). We implement the formula as written. The boundary
``u == t`` goes to copy 2 (the note's ``u >= t``; the reference code masks copy 2 where
``u > t`` but still weights such a token with copy 2, where it is visible; probability 0).

Randomness: every draw comes from the ``seed`` (an int, or a ``torch.Generator`` used as
is) on the generator's device (CPU for an int seed), in a fixed order (t, then u, then u2 or
the prompt draw), so the same seed rebuilds the same masks for the current, old and
reference log-probs of one update; use a new seed per inner iteration. Draws depend on the
batch shape: call with one seed per micro-batch (e.g. ``base_seed + micro_batch_index``).

Layout: ``input_ids`` is (B, L) = [left-padded prompt | completion], the completion being
the last ``L - P`` columns for every row; ``attention_mask`` (B, L) is always passed to the
model, so padded prompts keep their true positions. Output: (B, L - P) float32, token k of
the completion at column P + k. Shifted models (Dream, DiffuCoder: logits at i-1 predict
token i) are realigned with :func:`demask.model.token_logits`.

Not covered: the LLaDA Monte-Carlo ELBO with stratified l (a sequence-level estimator, not a
per-token one), TraceRL's trajectory-aware per-step scoring, slicing the lm_head to
completion columns (the model computes logits for the prompt too).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from demask.model.transformer import token_logits
from demask.registry import Registry

Seed = int | torch.Generator


# ---------------------------------------------------------------------- plans (pure)
@dataclass(frozen=True)
class MaskPlan:
    """The copies an estimator runs and how it combines them.

    masks: (C, B, L) bool, True where copy c replaces the token with the mask token.
    weights: (C, B, Lc) float32; ``logp_k = sum_c weights[c, :, k] * logp^(c)_k``.
    t: the batch's mask ratio, for estimators that draw one.
    """

    masks: torch.Tensor
    weights: torch.Tensor
    t: float | None = None

    @property
    def copies(self) -> int:
        return self.masks.shape[0]


def _completion_columns(batch: int, seq_len: int, prompt_len: int, device) -> torch.Tensor:
    """(B, L) bool, True on the completion columns [prompt_len, L)."""
    cols = torch.arange(seq_len, device=device) >= prompt_len
    return cols.expand(batch, seq_len)


def _with_prompt(completion_mask: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """(..., B, Lc) completion mask -> (..., B, L) with the prompt columns False."""
    pad = completion_mask.new_zeros(*completion_mask.shape[:-1], prompt_len)
    return torch.cat([pad, completion_mask], dim=-1)


def coupled_plan(t: float, u: torch.Tensor, prompt_len: int) -> MaskPlan:
    """The complementary pair plus the fully masked copy, from one t and u (B, Lc).

    weights: copy 0: 1/2; copy 1: 1/(2t) where u < t; copy 2: 1/(2(1-t)) where u >= t.
    """
    low = u < t  # (B, Lc): masked in copy 1
    high = ~low  # masked in copy 2
    full = torch.ones_like(low)
    masks = _with_prompt(torch.stack([full, low, high]), prompt_len)
    weights = torch.stack(
        [
            torch.full(u.shape, 0.5, dtype=torch.float32, device=u.device),
            low.float() * (0.5 / t),
            high.float() * (0.5 / (1.0 - t)),
        ]
    )
    return MaskPlan(masks, weights, t)


def decoupled_plan(t: float, u: torch.Tensor, u2: torch.Tensor, prompt_len: int) -> MaskPlan:
    """As :func:`coupled_plan` but copy 2 is masked where ``u2 >= t``, u2 independent of u."""
    low = u < t
    high = u2 >= t
    full = torch.ones_like(low)
    masks = _with_prompt(torch.stack([full, low, high]), prompt_len)
    weights = torch.stack(
        [
            torch.full(u.shape, 0.5, dtype=torch.float32, device=u.device),
            low.float() * (0.5 / t),
            high.float() * (0.5 / (1.0 - t)),
        ]
    )
    return MaskPlan(masks, weights, t)


def full_mask_plan(batch: int, seq_len: int, prompt_len: int, device=None) -> MaskPlan:
    """One copy, every completion token masked, weight 1."""
    masks = _completion_columns(batch, seq_len, prompt_len, device)[None].clone()
    weights = torch.ones(1, batch, seq_len - prompt_len, device=device)
    return MaskPlan(masks, weights)


def d1_plan(prompt_u: torch.Tensor, p_mask_prompt: float, attention_mask: torch.Tensor, seq_len: int) -> MaskPlan:
    """One copy: every completion token masked, plus real prompt tokens where prompt_u < p.

    prompt_u: (B, P) uniforms; attention_mask: (B, L), padding is never masked.
    """
    batch, prompt_len = prompt_u.shape
    masks = _completion_columns(batch, seq_len, prompt_len, prompt_u.device).clone()
    masks[:, :prompt_len] = (prompt_u < p_mask_prompt) & attention_mask[:, :prompt_len].bool()
    weights = torch.ones(1, batch, seq_len - prompt_len, device=prompt_u.device)
    return MaskPlan(masks[None], weights)


def clean_plan(batch: int, seq_len: int, prompt_len: int, device=None) -> MaskPlan:
    """One clean copy, weight 1 (exact log-probs of a causal model)."""
    masks = torch.zeros(1, batch, seq_len, dtype=torch.bool, device=device)
    weights = torch.ones(1, batch, seq_len - prompt_len, device=device)
    return MaskPlan(masks, weights)


# ---------------------------------------------------------------------- helpers
def make_generator(seed: Seed) -> torch.Generator:
    """An int seed -> a fresh CPU generator; a generator is used as is (and advanced)."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator(device="cpu").manual_seed(seed)


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen, device=gen.device)


def prompt_length(prompt: int | torch.Tensor, input_ids: torch.Tensor) -> int:
    """The number of prompt columns P, from an int or a (B, L) completion mask.

    A completion mask must mark the same column suffix [P, L) in every row (the layout of
    left-padded prompts followed by fixed-length completions).
    """
    batch, seq_len = input_ids.shape
    if isinstance(prompt, torch.Tensor):
        mask = prompt.to(torch.bool)
        if mask.shape != (batch, seq_len):
            raise ValueError(f"completion mask has shape {tuple(mask.shape)}, expected {(batch, seq_len)}")
        p = int(seq_len - mask[0].sum())
        expected = _completion_columns(batch, seq_len, p, mask.device)
        if not torch.equal(mask, expected):
            raise ValueError(
                "the completion mask must mark the same last columns [P, L) in every "
                "row; left-pad prompts and right-pad completions to a fixed length"
            )
        prompt = p
    if isinstance(prompt, bool) or not isinstance(prompt, int):
        raise TypeError(f"prompt length must be an int or a (B, L) mask, got {type(prompt).__name__}")
    if not 0 <= prompt < seq_len:
        raise ValueError(
            f"prompt length {prompt} leaves no completion in sequences of {seq_len} tokens; it must be in [0, L)"
        )
    return prompt


def token_log_probs(
    model: nn.Module,
    inputs: torch.Tensor,
    attention_mask: torch.Tensor,
    targets: torch.Tensor,
    prompt_len: int,
    shifted: bool,
    max_rows: int | None = None,
) -> torch.Tensor:
    """log p(targets_k | inputs) on the completion columns: (R, L) -> (R, L - P) float32.

    ``inputs`` are the (masked) model inputs, ``targets`` the clean tokens; at most
    ``max_rows`` rows go through the model at once.
    """
    rows = inputs.shape[0]
    step = rows if max_rows is None else max_rows
    out = []
    for start in range(0, rows, step):
        sl = slice(start, start + step)
        logits = model(inputs[sl], attention_mask=attention_mask[sl])
        logits = getattr(logits, "logits", logits)  # (r, L, V); HF-style outputs too
        logits = token_logits(logits, shifted)[:, prompt_len:].float()  # (r, Lc, V)
        target = targets[sl, prompt_len:, None]  # (r, Lc, 1)
        out.append(logits.gather(-1, target).squeeze(-1) - torch.logsumexp(logits, dim=-1))
    return torch.cat(out)


# ---------------------------------------------------------------------- interface
class LogProbEstimator(ABC):
    """Per-token completion log-probs ``(B, L - P)`` from C noisy copies per sequence.

    Subclasses define :meth:`plan` (the copies and weights; pure given the generator) and
    ``num_forward_passes`` (C); :meth:`log_probs` runs them.
    """

    name: ClassVar[str] = ""
    causal_model: ClassVar[bool] = False
    """True: needs a causal shifted model (autoregressive). False: needs a mask token and a
    bidirectional model."""
    max_rows: int | None = None

    @property
    @abstractmethod
    def num_forward_passes(self) -> int:
        """Model rows per sequence (copies); the cost of one estimate in forwards."""

    @abstractmethod
    def plan(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int, generator: torch.Generator
    ) -> MaskPlan:
        """The copies for this batch; all randomness from ``generator``."""

    def _check_model(self, model: nn.Module, prompt_len: int) -> tuple[int | None, bool]:
        config = getattr(model, "config", None)
        if config is None:
            raise TypeError(
                "the model needs a .config with causal, shift_logits and mask_token_id (a demask Transformer has one)"
            )
        causal = bool(getattr(config, "causal", False))
        shifted = bool(getattr(config, "shift_logits", False))
        mask_id = getattr(config, "mask_token_id", None)
        if self.causal_model:
            if not (causal and shifted):
                raise ValueError(
                    f"the {self.name!r} estimator needs a causal model with shifted "
                    f"logits (got causal={causal}, shift_logits={shifted}); for a "
                    "masked-diffusion model use 'coupled'"
                )
            if prompt_len == 0:
                raise ValueError(
                    "an autoregressive model cannot score the first token without a "
                    "prompt; pass at least one prompt token (e.g. BOS)"
                )
        else:
            if causal:
                raise ValueError(
                    f"the {self.name!r} estimator is for masked-diffusion models but "
                    "this model is causal; use 'autoregressive'"
                )
            if mask_id is None:
                raise ValueError(
                    f"the {self.name!r} estimator needs model.config.mask_token_id "
                    "(the id of the mask token); set it on the model config"
                )
            if shifted and prompt_len == 0:
                raise ValueError(
                    "a shifted model scores token i from position i-1: the completion "
                    "needs at least one prompt token before it"
                )
        return mask_id, shifted

    def log_probs(
        self,
        model: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        prompt: int | torch.Tensor,
        seed: Seed,
    ) -> torch.Tensor:
        """Per-token log-prob estimates of the completion, (B, L - P) float32.

        Differentiable w.r.t. the model's parameters; wrap in ``torch.no_grad()`` for the old
        and reference log-probs. Pass the same ``seed`` for all three within an update.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, L), got shape {tuple(input_ids.shape)}")
        batch, seq_len = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {tuple(attention_mask.shape)} must match input_ids {tuple(input_ids.shape)}"
            )
        prompt_len = prompt_length(prompt, input_ids)
        mask_id, shifted = self._check_model(model, prompt_len)
        plan = self.plan(input_ids, attention_mask, prompt_len, make_generator(seed))
        copies = plan.copies
        masks = plan.masks.to(input_ids.device)  # (C, B, L)
        clean = input_ids[None].expand(copies, batch, seq_len)
        noisy = torch.where(masks, mask_id, clean) if mask_id is not None else clean.clone()
        logp = token_log_probs(
            model,
            noisy.reshape(copies * batch, seq_len),
            attention_mask[None].expand(copies, batch, seq_len).reshape(copies * batch, seq_len),
            clean.reshape(copies * batch, seq_len),
            prompt_len,
            shifted,
            self.max_rows,
        ).view(copies, batch, seq_len - prompt_len)
        return (plan.weights.to(logp.device) * logp).sum(dim=0)


ESTIMATORS: Registry[type[LogProbEstimator]] = Registry("log-prob estimator", base=LogProbEstimator)
register_estimator = ESTIMATORS.register


def estimator_names() -> list[str]:
    return ESTIMATORS.names()


def get_estimator(name: str, **kwargs) -> LogProbEstimator:
    """Build a registered estimator: ``get_estimator("coupled", t_min=0.2, t_max=0.8)``."""
    return ESTIMATORS.create(name, **kwargs)


def _check_max_rows(owner: Any) -> None:
    """Refuse a non-positive ``owner.max_rows`` (an estimator or likelihood)."""
    max_rows = owner.max_rows
    if max_rows is not None and max_rows <= 0:
        raise ValueError(f"{type(owner).__name__}.max_rows must be > 0 or None (one batch), got {max_rows}")


def _check_t_range(owner: object) -> None:
    lo, hi = owner.t_min, owner.t_max  # type: ignore[attr-defined]
    if not 0 < lo <= hi < 1:
        raise ValueError(
            f"{type(owner).__name__}: need 0 < t_min <= t_max < 1, got t_min={lo}, t_max={hi} (paper: 0.2, 0.8)"
        )


# ---------------------------------------------------------------------- estimators
@register_estimator("coupled")
@dataclass
class CoupledEstimator(LogProbEstimator):
    """DiffuCoder's coupled estimator: fully masked copy + complementary pair (3 passes).

    t_min, t_max: range of the batch's mask ratio t (paper: U(0.2, 0.8)).
    max_rows: rows per model call (None: all 3B copies in one batch).
    """

    t_min: float = 0.2
    t_max: float = 0.8
    max_rows: int | None = None

    def __post_init__(self) -> None:
        _check_t_range(self)
        _check_max_rows(self)

    @property
    def num_forward_passes(self) -> int:
        return 3

    def draw_t(self, generator: torch.Generator) -> float:
        return float(self.t_min + (self.t_max - self.t_min) * _rand(generator, 1))

    def plan(self, input_ids, attention_mask, prompt_len, generator):
        batch, seq_len = input_ids.shape
        t = self.draw_t(generator)
        u = _rand(generator, batch, seq_len - prompt_len)  # (B, Lc)
        return coupled_plan(t, u, prompt_len)


@register_estimator("decoupled")
@dataclass
class DecoupledEstimator(CoupledEstimator):
    """The ablation of coupling: copy 2's mask is drawn independently of copy 1's (3 passes).

    Differs from ``coupled`` in one thing: copy 2 is masked where ``u2 >= t`` for a fresh
    ``u2``, not where ``u >= t``.
    """

    def plan(self, input_ids, attention_mask, prompt_len, generator):
        batch, seq_len = input_ids.shape
        t = self.draw_t(generator)
        u = _rand(generator, batch, seq_len - prompt_len)
        u2 = _rand(generator, batch, seq_len - prompt_len)
        return decoupled_plan(t, u, u2, prompt_len)


@register_estimator("full_mask")
@dataclass
class FullMaskEstimator(LogProbEstimator):
    """Copy 0 only: every completion token masked, one pass; deterministic (ignores seed)."""

    max_rows: int | None = None

    def __post_init__(self) -> None:
        _check_max_rows(self)

    @property
    def num_forward_passes(self) -> int:
        return 1

    def plan(self, input_ids, attention_mask, prompt_len, generator):
        batch, seq_len = input_ids.shape
        return full_mask_plan(batch, seq_len, prompt_len, input_ids.device)


@register_estimator("d1", "diffu-grpo")
@dataclass
class D1Estimator(LogProbEstimator):
    """d1 / diffu-GRPO: completion fully masked plus ``p_mask_prompt`` of the prompt (1 pass).

    Prompt padding (attention_mask 0) is never masked.
    """

    p_mask_prompt: float = 0.15
    max_rows: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.p_mask_prompt < 1:
            raise ValueError(f"D1Estimator.p_mask_prompt must be in [0, 1), got {self.p_mask_prompt} (d1 uses 0.15)")
        _check_max_rows(self)

    @property
    def num_forward_passes(self) -> int:
        return 1

    def plan(self, input_ids, attention_mask, prompt_len, generator):
        batch, seq_len = input_ids.shape
        prompt_u = _rand(generator, batch, prompt_len).to(input_ids.device)
        return d1_plan(prompt_u, self.p_mask_prompt, attention_mask.to(input_ids.device), seq_len)


@register_estimator("autoregressive", "ar")
@dataclass
class AutoregressiveEstimator(LogProbEstimator):
    """Exact ``log p(x_k | x_<k)`` for a causal model with shifted logits (1 clean pass)."""

    causal_model: ClassVar[bool] = True
    max_rows: int | None = None

    def __post_init__(self) -> None:
        _check_max_rows(self)

    @property
    def num_forward_passes(self) -> int:
        return 1

    def plan(self, input_ids, attention_mask, prompt_len, generator):
        batch, seq_len = input_ids.shape
        return clean_plan(batch, seq_len, prompt_len, input_ids.device)
