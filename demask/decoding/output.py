"""What generate() returns, and the end-of-completion rule shared by both decoders."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

import torch

from demask.decoding.trace import Trace

if TYPE_CHECKING:
    from demask.model.config import ModelConfig
    from demask.model.transformer import KVCache


class DecodingModel(Protocol):
    """What the decoding engine needs of a model (demask's Transformer, or a scripted mock)."""

    config: ModelConfig

    def __call__(
        self,
        input_ids: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = ...,
        position_ids: torch.Tensor | None = ...,
        cache: KVCache | None = ...,
        cache_start: int = ...,
    ) -> torch.Tensor: ...

    def new_cache(self, length: int) -> KVCache: ...

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...


def as_decoding_model(model: torch.nn.Module) -> DecodingModel:
    """``model`` typed as what the engine uses (a module's attributes are untyped to mypy)."""
    return cast(DecodingModel, model)


@dataclass
class DecodeOutput:
    completions: list[list[int]]
    """Per prompt, the completion cut before its first end token (EOS or pad)."""
    nfe: list[int]
    """Per prompt, the forward passes it took part in."""
    tokens: torch.Tensor
    """(B, P + L): left-padded prompts and full completions (end-filled after an early stop)."""
    prompt_length: int
    """P: the column where completions start in ``tokens``."""
    trace: Trace | None = None


def end_token_ids(model_config) -> list[int]:
    """The ids that end a completion: EOS and pad, where the model defines them."""
    ids = [model_config.eos_token_id, model_config.pad_token_id]
    return sorted({i for i in ids if i is not None})


def fill_token_id(model_config, ends: Sequence[int]) -> int:
    """The id that pads prompts on the left: the pad token, else the first end token, else 0."""
    if model_config.pad_token_id is not None:
        return model_config.pad_token_id
    return ends[0] if ends else 0


def cut_completions(completions: torch.Tensor, end_ids: Sequence[int]) -> list[list[int]]:
    """(B, L) -> lists cut before the first end token."""
    rows = completions.tolist()
    if not end_ids:
        return rows
    ends = set(end_ids)
    out = []
    for row in rows:
        cut = next((i for i, t in enumerate(row) if t in ends), len(row))
        out.append(row[:cut])
    return out
