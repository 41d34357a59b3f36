"""A batch of prompts of different lengths: left padding, attention mask, true positions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from demask.model.transformer import mask_positions


@dataclass
class PromptBatch:
    tokens: torch.Tensor
    """(B, P + L) long: left-padded prompts, then L copies of ``fill_id``."""
    attention: torch.Tensor
    """(B, P + L) bool: False on left padding only."""
    positions: torch.Tensor
    """(B, P + L) long: cumsum(attention) - 1, clamped at 0, so RoPE sees true positions."""
    prompt_length: int
    """P: the longest prompt; completions start at this column."""
    has_padding: bool


def build_batch(
    prompts: Sequence[Sequence[int]],
    gen_length: int,
    fill_id: int,
    pad_id: int,
    device: torch.device | str = "cpu",
    max_length: int | None = None,
    suffixes: Sequence[Sequence[int]] | None = None,
) -> PromptBatch:
    """Left-pad ``prompts`` and append ``gen_length`` positions holding ``fill_id``, then each
    row's suffix (fill-in-the-middle), right-padded to the longest (padding masked out)."""
    if len(prompts) == 0:
        raise ValueError("no prompts given: pass a list of token-id lists")
    lengths = [len(p) for p in prompts]
    if min(lengths) == 0:
        raise ValueError(
            f"prompt {lengths.index(0)} is empty; every prompt needs at least one "
            "token (a shifted model predicts the first completion token from it)"
        )
    p = max(lengths)
    if suffixes is not None and len(suffixes) != len(prompts):
        raise ValueError(f"{len(suffixes)} suffixes for {len(prompts)} prompts: give one per prompt")
    s = max((len(x) for x in suffixes), default=0) if suffixes is not None else 0
    total = p + gen_length + s
    if max_length is not None and total > max_length:
        raise ValueError(
            f"the longest prompt ({p} tokens) plus gen_length ({gen_length})"
            + (f" plus the longest suffix ({s})" if s else "")
            + f" is {total} tokens, more than the model's context of {max_length}; shorten the prompt or gen_length"
        )
    b = len(prompts)
    tokens = torch.full((b, total), fill_id, dtype=torch.long)
    tokens[:, :p] = pad_id
    attention = torch.ones(b, total, dtype=torch.bool)
    for i, prompt in enumerate(prompts):  # building the batch, not the hot path
        tokens[i, p - len(prompt) : p] = torch.as_tensor(list(prompt), dtype=torch.long)
        attention[i, : p - len(prompt)] = False
        if s:
            suffix = list(suffixes[i]) if suffixes is not None else []
            end = p + gen_length + len(suffix)
            tokens[i, p + gen_length : end] = torch.as_tensor(suffix, dtype=torch.long)
            tokens[i, end:] = pad_id
            attention[i, end:] = False
    positions = mask_positions(attention)
    padded = min(lengths) != p or (s > 0 and suffixes is not None and min(len(x) for x in suffixes) != s)
    return PromptBatch(tokens.to(device), attention.to(device), positions.to(device), p, has_padding=padded)


@dataclass
class ActiveRows:
    """The rows of a batch still decoding: every per-row tensor, (A, ...) for A active rows.

    Rows leave the batch together through :meth:`select`, so no tensor is sliced by hand.
    """

    index: torch.Tensor
    """(A,) long: the batch row each active row is."""
    tokens: torch.Tensor
    """(A, P + L) long: prompts and completions so far."""
    positions: torch.Tensor
    """(A, P + L) long: rotary positions."""
    attention: torch.Tensor | None
    """(A, P + L) bool over the keys, or None when no row is padded (SDPA's fast path)."""
    masked: torch.Tensor
    """(A, L) bool: completion positions still masked."""
    confidence: torch.Tensor
    """(A, L) float: latest untempered top-1 probability of each completion position, for
    policies that see the whole completion ((A, 0) for the others)."""

    @classmethod
    def start(cls, batch: PromptBatch, confidence: bool = False, length: int | None = None) -> ActiveRows:
        """Every row of ``batch``, every completion position masked; ``confidence``
        allocates that (A, L) buffer. ``length``: the completion's L when a suffix follows
        it (default: everything after the prompts)."""
        b, total = batch.tokens.shape
        length = total - batch.prompt_length if length is None else length
        device = batch.tokens.device
        return cls(
            index=torch.arange(b, device=device),
            tokens=batch.tokens,
            positions=batch.positions,
            attention=batch.attention if batch.has_padding else None,
            masked=torch.ones(b, length, dtype=torch.bool, device=device),
            confidence=torch.zeros(b, length if confidence else 0, device=device),
        )

    def select(self, keep: torch.Tensor) -> ActiveRows:
        """The rows ``keep`` ((A,) bool or indices) as a new ActiveRows (copies)."""
        return ActiveRows(
            index=self.index[keep],
            tokens=self.tokens[keep],
            positions=self.positions[keep],
            attention=None if self.attention is None else self.attention[keep],
            masked=self.masked[keep],
            confidence=self.confidence[keep],
        )

    def __len__(self) -> int:
        return self.index.numel()
