"""How autoregressive is a decoding order? AR-ness (DiffuCoder, appendix A.2) and the
first-step confidence profile (the "entropy sink").

A trace is read as its steps, each the list of completion positions (0 = first completion
token) committed at that step. The commit order p_0, p_1, ..., p_{T-1} lists the steps in
turn and, **when a step commits several tokens, orders that step's tokens left to right**
(the paper defines AR-ness for one token per step; this is our generalisation).

- local AR-ness@k = (1/T) sum_t 1[p_{t-i} = p_t - i for i = 1..k]: the fraction of commits
  that extend a run of k consecutive next-token commits. The prompt counts as committed
  left to right before the completion: p_{-j} = -j (so position 0 committed first extends
  the prompt, and autoregressive decoding scores exactly 1).
- global AR-ness@k = (1/T) sum_t 1[p_t is among the k leftmost positions still masked
  just before it is committed].

Both are 1 for left-to-right decoding. T counts committed tokens only: positions filled by
an early stop (trace.stopped_at) are not commits and do not count; they stay "masked" for
the global measure. Not covered: averaging conventions across rows other than the mean.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import cast

import torch

from demask.decoding.trace import RowTrace, Trace


def commit_order(steps: Sequence[Sequence[int]]) -> list[int]:
    """Flatten per-step positions into one order, each step left to right."""
    order = [int(p) for step in steps for p in sorted(step)]
    if len(set(order)) != len(order):
        raise ValueError("a position is committed twice in this trace; committed tokens never change")
    if order and min(order) < 0:
        raise ValueError(f"positions are completion indices (>= 0), got {min(order)}")
    return order


def local_arness(steps: Sequence[Sequence[int]], k: int = 1) -> float:
    """Local AR-ness@k of one trace (see module docstring)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = commit_order(steps)
    if not order:
        raise ValueError("empty trace: no committed position to score")

    def at(j: int) -> int:  # the prompt: virtual positions -1, -2, ... committed in order
        return order[j] if j >= 0 else j

    hits = sum(all(at(t - i) == order[t] - i for i in range(1, k + 1)) for t in range(len(order)))
    return hits / len(order)


def global_arness(steps: Sequence[Sequence[int]], k: int = 1) -> float:
    """Global AR-ness@k of one trace (see module docstring)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = commit_order(steps)
    if not order:
        raise ValueError("empty trace: no committed position to score")
    done: list[int] = []  # committed positions, sorted
    hits = 0
    for p in order:
        still_masked_left = p - bisect.bisect_left(done, p)  # masked positions left of p
        hits += still_masked_left < k
        bisect.insort(done, p)
    return hits / len(order)


def _row_steps(row: RowTrace | Sequence[Sequence[int]]) -> Sequence[Sequence[int]]:
    return row.step_groups() if isinstance(row, RowTrace) else row


def trace_arness(trace: Trace, k: int = 1) -> dict[str, list[float]]:
    """Per-row local and global AR-ness@k of a decoding trace (rows with no commit: nan)."""
    local, glob = [], []
    for row in trace.rows():
        steps = _row_steps(row)
        if not any(steps):
            local.append(math.nan)
            glob.append(math.nan)
            continue
        local.append(local_arness(steps, k))
        glob.append(global_arness(steps, k))
    return {"local": local, "global": glob}


def position_profile(logits: torch.Tensor, valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Mean top-1 probability and entropy per completion position.

    logits: (B, L, V) aligned with the completion positions they predict; valid: optional
    (B,) bool of rows to average. Returns {"confidence": (L,), "entropy": (L,)} in float32.
    """
    probs = logits.float().softmax(-1)  # (B, L, V)
    conf = probs.amax(-1)
    ent = -torch.special.xlogy(probs, probs).sum(-1)
    if valid is not None:
        conf, ent = conf[valid], ent[valid]
    return {"confidence": conf.mean(0), "entropy": ent.mean(0)}


@torch.no_grad()
def first_step_profile(
    model: torch.nn.Module, prompts: Sequence[Sequence[int]], gen_length: int
) -> dict[str, torch.Tensor]:
    """The entropy sink: confidence/entropy per position at the first step (all masked).

    One forward of the masked-diffusion ``model`` over every prompt followed by
    ``gen_length`` mask tokens; the mean over prompts of :func:`first_step_rows`. A
    confidence-based decoder commits where this profile is high first (for most models:
    right after the prompt).
    """
    rows = first_step_rows(model, prompts, gen_length)
    return {"confidence": rows["confidence"].mean(0), "entropy": rows["entropy"].mean(0)}


@torch.no_grad()
def first_step_rows(
    model: torch.nn.Module, prompts: Sequence[Sequence[int]], gen_length: int
) -> dict[str, torch.Tensor]:
    """Per prompt, the top-1 probability and the entropy at every completion position of the
    first step: {"confidence": (B, L), "entropy": (B, L)} in float32."""
    from demask.decoding.batch import build_batch
    from demask.model.config import ModelConfig
    from demask.model.transformer import token_logits

    cfg = cast(ModelConfig, model.config)  # nn.Module types attributes as Tensor | Module
    if cfg.causal or cfg.mask_token_id is None:
        raise ValueError("first_step_profile needs a masked-diffusion model with a mask token id")
    device = next(model.parameters()).device
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else cfg.mask_token_id
    batch = build_batch(prompts, gen_length, cfg.mask_token_id, pad, device, cfg.max_position_embeddings)
    logits = model(
        batch.tokens, attention_mask=batch.attention if batch.has_padding else None, position_ids=batch.positions
    )
    probs = token_logits(logits, cfg.shift_logits)[:, batch.prompt_length :].float().softmax(-1)
    return {"confidence": probs.amax(-1), "entropy": -torch.special.xlogy(probs, probs).sum(-1)}
