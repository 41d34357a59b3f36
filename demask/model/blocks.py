"""Block diffusion's attention geometry: which positions form a block and who sees whom.

A block-causal model (``ModelConfig.block_size = B``) decodes its completion in blocks of B
tokens, left to right: attention is bidirectional inside a block and causal across blocks, so
a finished block's keys/values never change again and can be cached exactly, as in
autoregressive decoding (BD3-LM, Fast-dLLM v2, SDAR). B = 1 is autoregressive; B = L is full
diffusion.

Blocks are counted on rotary positions, so left padding moves nothing. Two kinds:

- the **target block** of a token is ``position // B``: the tokens decoded together;
- the **attention block** of a position is ``(position + shift) // B`` with shift 1 for a
  shifted model (position i - 1 predicts token i) and 0 otherwise: the positions that run
  together. For a shifted model attention block k is [kB - 1, (k + 1)B - 1): the last token of
  the block before (known when block k starts) and the first B - 1 tokens of block k, whose
  logits predict exactly the B tokens of target block k. The last token of a block is an
  input only to the next block, so its own prediction never sees it.

Completions start on a block boundary: :func:`align_positions` adds a per-row offset to the
rotary positions so that the first completion position is a multiple of B. Rotary attention
scores depend only on position differences, so the offset changes no score; it only says where
the blocks fall. Training (:mod:`demask.training.objectives`) and decoding use the same rule.
"""

from __future__ import annotations

import torch

UNWRITTEN = 2**40
"""Position recorded for cache slots nothing has been written to: in a block far beyond any
query's, so block-causal attention never sees them."""


def attention_blocks(positions: torch.Tensor, block_size: int, shifted: bool) -> torch.Tensor:
    """The attention block of each position (same shape)."""
    return torch.div(positions + int(shifted), block_size, rounding_mode="floor")


def align_positions(positions: torch.Tensor, start: int, block_size: int) -> torch.Tensor:
    """``positions`` (B, S) shifted per row so that column ``start`` (the first completion
    position) is a multiple of ``block_size``."""
    offset = torch.remainder(-positions[:, start], block_size)  # (B,)
    return positions + offset[:, None]


def block_causal_keep(q_blocks: torch.Tensor, k_blocks: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, T) bool: query block (B, S) sees key block (B, T) when it is not later."""
    return (k_blocks[:, None, :] <= q_blocks[:, :, None])[:, None]


def two_stream_mask(blocks: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """The attention mask of block diffusion's vectorised training form (BD3-LM).

    The input is the noised sequence followed by the clean one (2W tokens, the same rotary
    positions twice); ``blocks`` (B, W) are the attention blocks of one copy, ``valid`` (B, W)
    False on padding. Returns (B, 1, 2W, 2W) bool, True = attend:

    - a noised query sees the noised keys of its own block,
    - and the clean keys of earlier blocks (the exact cache a decoder holds for it);
    - a clean query sees the clean keys of its own and earlier blocks (block-causal);
    - a clean query never sees a noised key.

    Every query also sees itself, so a padding row never attends to nothing.
    """
    q, k = blocks[:, :, None], blocks[:, None, :]  # (B, W, 1), (B, 1, W)
    top = torch.cat([k == q, k < q], dim=2)  # noised queries: (B, W, 2W)
    bottom = torch.cat([torch.zeros_like(k == q), k <= q], dim=2)  # clean queries
    keep = torch.cat([top, bottom], dim=1)  # (B, 2W, 2W)
    if valid is not None:
        keep = keep & torch.cat([valid, valid], dim=1)[:, None, :]
    width = keep.shape[-1]
    keep = keep | torch.eye(width, dtype=torch.bool, device=keep.device)
    return keep[:, None]
