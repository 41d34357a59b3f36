"""Length-normalised sequence scores ``p_i`` of responses, for ranking losses (RRTF, RRHF).

A batch holds B *items*, each with K responses to the same prompt (K = 2 for a ranked pair,
1 for an SFT target). For every response the scorer returns ``S`` (a log-likelihood sum) and
``n`` (its counted tokens); ``p = S / n``.

- **Causal student** (exact): ``S = sum_t log P(y_t | x, y_<t)`` over the answer and its end
  token (PanGu-Coder2's ``p_i``); ``n`` = those tokens. One forward per response.
- **Masked-diffusion student** (our adaptation, facts from VRPO): the response is the model's
  whole completion canvas (answer, end token, then the pad fill a diffusion model writes after
  it, as in its SFT), and ``S`` is a Monte-Carlo ELBO with ``n_draws`` draws, one mask per draw
  (VRPO's n_time = n, n_mask = 1)::

      t_j = eps + (1 - eps) * (j + U) / n          j = 0..n-1, one U per item (stratified)
      masked_jk = u_jk < t_j                        u_jk ~ U(0, 1) per canvas position k
      S = 1/n * sum_j 1/t_j * sum_{k masked} log p(y_k | x, y with the masked tokens hidden)

  ``n`` is the canvas length. With ``shared=True`` (antithetic, VRPO) the K responses of an
  item use the same U and u: the same t and the same masked positions, so the noise of the
  draws largely cancels in ``p_a - p_b``; ``shared=False`` draws them per response (the
  control for the variance measurement in docs/rrtf.md). Both cost the same forwards.
  ``form="l"`` draws LLaDA's way instead: exactly ``l_j`` positions masked, l stratified over
  1..L, weight ``L / l_j`` (:func:`count_draws`).

Not covered: block-diffusion students (their ELBO is per block with a clean context stream;
refused with a clear error), per-token (rather than per-sequence) scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from demask.model import ModelConfig, token_logits
from demask.training.objectives import token_cross_entropy


@dataclass
class ScoreBatch:
    """B items of K responses in the fixed layout.

    prompt_ids: (B, P) left-padded prompts; prompt_mask (B, P) True on real tokens.
    completion_ids: (B, K, L) the responses' canvases (answer, end token, pad fill).
    content: (B, K) answer tokens plus the end token of each response.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    content: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        b, k, length = self.completion_ids.shape
        return b, k, length

    def to(self, device: torch.device | str) -> ScoreBatch:
        return ScoreBatch(
            *(t.to(device) for t in (self.prompt_ids, self.prompt_mask, self.completion_ids, self.content))
        )


def diffusion_draws(
    b: int, k: int, length: int, n_draws: int, generator: torch.Generator, *, shared: bool, eps: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(t, masked)``: t (B, K, n) mask rates and masked (B, K, n, L) bool, shared over the K
    responses of an item when ``shared`` (module docstring).

    >>> t, m = diffusion_draws(2, 2, 5, 3, torch.Generator().manual_seed(0), shared=True)
    >>> bool((t[:, 0] == t[:, 1]).all() and (m[:, 0] == m[:, 1]).all())
    True
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be at least 1, got {n_draws}")
    slots = 1 if shared else k
    u0 = torch.rand(b, slots, 1, generator=generator, device=generator.device)
    j = torch.arange(n_draws, device=generator.device, dtype=torch.float32)
    t = eps + (1 - eps) * (j + u0) / n_draws  # (B, slots, n)
    u = torch.rand(b, slots, n_draws, length, generator=generator, device=generator.device)
    masked = u < t[..., None]
    if shared:
        t, masked = t.expand(b, k, n_draws), masked.expand(b, k, n_draws, length)
    return t, masked


def count_draws(
    b: int, k: int, length: int, n_draws: int, generator: torch.Generator, *, shared: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """LLaDA's form of the draws: ``(rate, masked)`` with exactly l_j of the L positions masked,
    l_j stratified over 1..L (``k0 + j * L / n`` mod L, plus 1, one k0 per item), the positions
    the l_j smallest of one uniform per position; ``rate = l / L``, so the weight 1/rate is at
    most L (the t form's 1/t is unbounded near t = 0). Shared over the K responses when
    ``shared``.

    >>> r, m = count_draws(1, 2, 6, 3, torch.Generator().manual_seed(0), shared=True)
    >>> (m.sum(-1).float() / 6 == r).all().item(), torch.equal(m[:, 0], m[:, 1])
    (True, True)
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be at least 1, got {n_draws}")
    slots = 1 if shared else k
    k0 = (torch.rand(b, slots, 1, generator=generator, device=generator.device) * length).long().clamp(max=length - 1)
    j = torch.arange(n_draws, device=generator.device)
    counts = (k0 + (j * length) // n_draws) % length + 1  # (B, slots, n) in 1..L
    u = torch.rand(b, slots, n_draws, length, generator=generator, device=generator.device)
    masked = u.argsort(-1).argsort(-1) < counts[..., None]
    rate = counts.float() / length
    if shared:
        rate, masked = rate.expand(b, k, n_draws), masked.expand(b, k, n_draws, length)
    return rate, masked


ELBO_FORMS = ("t", "l")
"""How a diffusion score draws its masks: ``t`` (a rate t, each position masked with
probability t, weight 1/t) or ``l`` (exactly l positions masked, weight L/l: LLaDA's form)."""


def sequence_scores(
    model: nn.Module,
    batch: ScoreBatch,
    *,
    generator: torch.Generator | None = None,
    n_draws: int = 1,
    shared: bool = True,
    form: str = "t",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(S, n)``, both (B, K): each response's log-likelihood sum (exact for a causal model,
    the ELBO estimate for a masked-diffusion one) and its counted tokens (module docstring)."""
    config = cast(ModelConfig, model.config)  # nn.Module types attributes as Tensor | Module
    b, k, length = batch.shape
    p = batch.prompt_ids.shape[1]
    device = batch.completion_ids.device
    cols = torch.arange(length, device=device)
    prompts = batch.prompt_ids[:, None, :].expand(b, k, p)
    pmask = batch.prompt_mask[:, None, :].expand(b, k, p).to(torch.bool)
    if getattr(config, "block_size", None):
        raise ValueError(
            "sequence scores of a block-diffusion model are not implemented (its ELBO is per block "
            "with a clean context stream); use a full-attention diffusion or an autoregressive student"
        )
    if config.causal:
        if not config.shift_logits:
            raise ValueError("a causal model must have shifted logits (position i predicts token i + 1) to be scored")
        counted = cols[None, None, :] < batch.content[..., None]  # (B, K, L)
        ids = torch.cat([prompts, batch.completion_ids], 2).reshape(b * k, p + length)
        attention = torch.cat([pmask, torch.ones_like(counted)], 2).reshape(b * k, p + length)
        logits = token_logits(model(ids, attention), True)[:, p:]
        nll = token_cross_entropy(logits, batch.completion_ids.reshape(b * k, length), counted.reshape(b * k, length))
        return -nll.sum(1).view(b, k), counted.sum(2).to(torch.float32)
    if generator is None:
        raise ValueError("a masked-diffusion score draws masks: pass a torch.Generator")
    mask_id = config.mask_token_id
    if mask_id is None:
        raise ValueError("the model's config has no mask_token_id: it cannot be scored as a masked-diffusion model")
    if form not in ELBO_FORMS:
        raise ValueError(f"unknown ELBO form {form!r}; use one of {ELBO_FORMS}")
    draw = diffusion_draws if form == "t" else count_draws
    t, masked = draw(b, k, length, n_draws, generator, shared=shared)
    t, masked = t.to(device), masked.to(device)
    noisy = torch.where(masked, torch.full_like(masked, mask_id, dtype=torch.long), batch.completion_ids[:, :, None, :])
    rows = torch.cat([prompts[:, :, None, :].expand(b, k, n_draws, p), noisy], 3).reshape(-1, p + length)
    attention = torch.cat([pmask[:, :, None, :].expand(b, k, n_draws, p), torch.ones_like(masked)], 3)
    logits = token_logits(model(rows, attention.reshape(-1, p + length)), bool(config.shift_logits))[:, p:]
    targets = batch.completion_ids[:, :, None, :].expand(b, k, n_draws, length).reshape(-1, length)
    nll = token_cross_entropy(logits, targets, masked.reshape(-1, length)).sum(1).view(b, k, n_draws)
    elbo = -(nll / t).mean(2)  # (B, K)
    return elbo, torch.full((b, k), float(length), device=device)
