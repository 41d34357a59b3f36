"""Weight-free stand-ins for a model, to test decoding logic exactly (and policies of your own).

:class:`ScriptedModel` returns whatever logits a Python function gives for the input it
is called on, and records every call (input shape, cache start), so a test can check which
positions each step committed and which rows each forward ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from demask.model.config import ModelConfig
from demask.model.transformer import KVCache


@dataclass
class Call:
    input_ids: torch.Tensor
    cache_start: int
    attention_mask: torch.Tensor | None


LogitsFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
"""(input_ids (B, S), absolute positions (S,), call index) -> raw logits (B, S, V)."""


class ScriptedModel(nn.Module):
    """A model whose raw logits come from ``fn``; shifted or not as ``config`` says.

    ``fn`` sees the input slice and the absolute sequence index of each of its columns
    (so cached slices are scripted like full forwards). It returns *raw* logits: for a
    shifted config, column j predicts the token at absolute index j + 1.
    """

    def __init__(self, config: ModelConfig, fn: LogitsFn) -> None:
        super().__init__()
        self.config, self.fn = config, fn
        self.calls: list[Call] = []
        self._anchor = nn.Parameter(torch.zeros(1), requires_grad=False)  # device / dtype

    def new_cache(self, length: int) -> KVCache:
        return KVCache(1, length)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        cache_start: int = 0,
    ) -> torch.Tensor:
        self.calls.append(
            Call(input_ids.clone(), cache_start, None if attention_mask is None else attention_mask.clone())
        )
        absolute = torch.arange(cache_start, cache_start + input_ids.shape[1])
        out = self.fn(input_ids, absolute, len(self.calls) - 1)
        if out.shape[:2] != input_ids.shape:
            raise ValueError(f"scripted logits have shape {tuple(out.shape)} for input {tuple(input_ids.shape)}")
        return out.float()


def mock_config(
    vocab_size: int = 32,
    shifted: bool = False,
    causal: bool = False,
    mask_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> ModelConfig:
    """A small ModelConfig whose special ids sit at the top of the vocabulary by default."""
    v = vocab_size
    return ModelConfig(
        vocab_size=v,
        hidden_size=8,
        intermediate_size=8,
        num_layers=1,
        num_heads=1,
        num_kv_heads=1,
        causal=causal,
        shift_logits=shifted,
        mask_token_id=v - 1 if mask_token_id is None else mask_token_id,
        eos_token_id=v - 2 if eos_token_id is None else eos_token_id,
        pad_token_id=v - 3 if pad_token_id is None else pad_token_id,
    )


def tiny_transformer(
    vocab_size: int = 48,
    shifted: bool = True,
    causal: bool = False,
    seed: int = 0,
    std: float = 0.5,
    layers: int = 2,
    hidden: int = 32,
):
    """A small random fp32 Transformer (wide init so its choices are far from ties)."""
    from demask.model.transformer import Transformer

    cfg = ModelConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_layers=layers,
        num_heads=2,
        num_kv_heads=1,
        max_position_embeddings=256,
        causal=causal,
        shift_logits=shifted or causal,
        mask_token_id=vocab_size - 1,
        eos_token_id=vocab_size - 2,
        pad_token_id=vocab_size - 3,
    )
    model = Transformer(cfg)
    model.init_weights(std, torch.Generator().manual_seed(seed))
    return model.eval()
