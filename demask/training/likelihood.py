"""Sequence log-likelihoods of completions: the Monte-Carlo ELBO for masked-diffusion
models and the exact sum for causal models.

A masked-diffusion model has no closed-form log p(completion | prompt). LLaDA (its
eq. 6 and the evaluation code) estimates a lower bound: draw l ~ U{1..L}, mask exactly l
of the L completion tokens chosen uniformly, and take ``(L / l) * sum_{masked} log p``;
the average over draws is the estimate. Draws are stratified: the l of the draws of one
sequence are ``k, k + L/n, k + 2L/n, ...`` (mod L) from one uniform k, so each draw's l is
still uniform on 1..L (the estimate stays unbiased) while n draws cover the range evenly.
One draw is enough to rank candidates; 128 give accurate values (LLaDA).

Gradients flow through both functions (RRTF and GRPO train through them); wrap calls in
``torch.no_grad()`` when only the value is needed.

Not covered: the variance-reduced estimators of the RL estimators (coupled masks live in
``demask.training.rl``), semi-autoregressive (block) likelihoods.
"""

from __future__ import annotations

import torch

from demask.model import token_logits
from demask.training.objectives import Model, token_cross_entropy


def stratified_mask_counts(lengths: torch.Tensor, n_draws: int, generator: torch.Generator) -> torch.Tensor:
    """(B, n_draws) mask counts in 1..L_b for rows of length ``lengths`` (B,).

    >>> g = torch.Generator().manual_seed(0)
    >>> sorted(stratified_mask_counts(torch.tensor([4]), 4, g)[0].tolist())
    [1, 2, 3, 4]
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be at least 1, got {n_draws}")
    if bool((lengths < 1).any()):
        raise ValueError("every completion needs at least one counted token to have a likelihood")
    lengths = lengths.long()
    u = torch.rand(lengths.shape[0], generator=generator, device=generator.device).to(lengths.device)
    k = (u * lengths).long().clamp(max=lengths - 1)  # (B,) uniform on 0..L-1
    d = torch.arange(n_draws, device=lengths.device)
    offsets = (d[None, :] * lengths[:, None]) // n_draws  # (B, n) floor(d * L / n)
    return (k[:, None] + offsets) % lengths[:, None] + 1


def elbo_log_likelihood(
    model: Model,
    prompt_ids: torch.Tensor,
    completion_ids: torch.Tensor,
    n_draws: int,
    generator: torch.Generator,
    *,
    prompt_mask: torch.Tensor | None = None,
    completion_mask: torch.Tensor | None = None,
    mask_token_id: int | None = None,
    shifted: bool | None = None,
    rows_per_forward: int | None = None,
) -> torch.Tensor:
    """Monte-Carlo ELBO estimate of log p(completion | prompt), one value per sequence (B,).

    prompt_ids: (B, P), left-padded where ``prompt_mask`` (B, P) is 0.
    completion_ids: (B, L); ``completion_mask`` (B, L) marks the tokens that count (default
        all): L_b is their number, only they are masked and scored, the others stay visible.
    mask_token_id / shifted: default to ``model.config``.
    rows_per_forward: split the B * n_draws noisy copies into forwards of at most this many
        rows (memory); the result does not depend on it.
    """
    config = getattr(model, "config", None)
    if config is not None and config.causal:
        raise ValueError(
            "elbo_log_likelihood is for masked-diffusion models; this model is causal: "
            "use autoregressive_log_likelihood (exact)"
        )
    if config is not None:
        mask_token_id = config.mask_token_id if mask_token_id is None else mask_token_id
        shifted = config.shift_logits if shifted is None else shifted
    if mask_token_id is None:
        raise ValueError("no mask token id: pass mask_token_id or set model.config.mask_token_id")
    if shifted is None:
        raise ValueError("no shift_logits: pass shifted for a model without a .config")
    b, p = prompt_ids.shape
    length = completion_ids.shape[1]
    if shifted and p == 0:
        raise ValueError(
            "a shifted model predicts token i from position i-1, so it cannot score "
            "a completion without at least one prompt token"
        )
    device = completion_ids.device
    counted = (
        torch.ones_like(completion_ids, dtype=torch.bool)
        if completion_mask is None
        else completion_mask.to(device=device, dtype=torch.bool)
    )
    lengths = counted.sum(1)  # (B,) L_b
    counts = stratified_mask_counts(lengths, n_draws, generator)  # (B, n)
    r = torch.rand(b, n_draws, length, generator=generator, device=generator.device).to(device)
    r = r.masked_fill(~counted[:, None, :], 2.0)  # never among the l smallest
    rank = r.argsort(-1).argsort(-1)  # (B, n, L): rank of each position's draw
    masked = rank < counts[..., None]  # (B, n, L): exactly l counted positions
    noisy = torch.where(
        masked, torch.full_like(masked, mask_token_id, dtype=torch.long), completion_ids[:, None, :]
    )  # (B, n, L)
    rows = torch.cat([prompt_ids[:, None, :].expand(b, n_draws, p), noisy], dim=2)
    rows = rows.reshape(b * n_draws, p + length)  # (B * n, S): the draws of a row are adjacent
    attention = None
    if prompt_mask is not None:
        full = torch.cat([prompt_mask.to(device=device, dtype=torch.bool), counted.new_ones(b, length)], 1)
        attention = full.repeat_interleave(n_draws, 0)  # (B * n, S)
    targets = completion_ids.repeat_interleave(n_draws, 0)  # (B * n, L)
    where = masked.reshape(b * n_draws, length)
    chunk = rows_per_forward or rows.shape[0]
    sums = []
    for start in range(0, rows.shape[0], chunk):
        sl = slice(start, start + chunk)
        logits = model(rows[sl], None if attention is None else attention[sl])
        logits = token_logits(logits, shifted)[:, p:]  # (rows, L, V)
        sums.append(token_cross_entropy(logits, targets[sl], where[sl]).sum(1))
    neg = torch.cat(sums).view(b, n_draws)  # (B, n): sum of CE over the masked tokens
    weight = lengths[:, None].float() / counts.float()  # L / l
    return -(weight * neg).mean(1)


def autoregressive_log_likelihood(
    model: Model,
    prompt_ids: torch.Tensor,
    completion_ids: torch.Tensor,
    *,
    prompt_mask: torch.Tensor | None = None,
    completion_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact log p(completion | prompt) of a causal (shifted) model, one value per sequence (B,)."""
    b, p = prompt_ids.shape
    length = completion_ids.shape[1]
    if p == 0:
        raise ValueError("a causal model needs at least one prompt token (a BOS) to score the first completion token")
    device = completion_ids.device
    counted = (
        torch.ones_like(completion_ids, dtype=torch.bool)
        if completion_mask is None
        else completion_mask.to(device=device, dtype=torch.bool)
    )
    ids = torch.cat([prompt_ids, completion_ids], 1)
    attention = None
    if prompt_mask is not None:
        attention = torch.cat([prompt_mask.to(device=device, dtype=torch.bool), counted.new_ones(b, length)], 1)
    logits = token_logits(model(ids, attention), True)[:, p:]  # (B, L, V)
    return -token_cross_entropy(logits, completion_ids, counted).sum(1)
