"""Rollouts for GRPO: G completions per prompt from the decoding engine, in the estimators' layout.

A round's rollouts are a :class:`RolloutBatch`: ``N = prompts x G`` rows of
``[left-padded prompt | completion]`` with the attention mask (False on prompt padding
only), each group of G rows contiguous, so that :mod:`demask.training.rl.advantages` and
:mod:`demask.training.rl.estimators` read it as it is.

:class:`DecodingRollouts` samples with :func:`demask.decoding.generate` and any
``DecodeConfig`` (the paper: entropy policy, temperature 1.2, top-p 0.95; a causal model
decodes autoregressively through the same call, so AR GRPO uses the same trainer). The
completion is normalised to the layout the model was fine-tuned on: every position after
the first end token (EOS or pad) becomes the pad token. Those positions are never counted
by the loss (the token mask stops at the first end token, inclusive) but they are context
for the partially masked copies of the estimators, and this makes the context the SFT
layout (answer, end, pad ...) whatever the decoder left there.

With ``greedy_per_group = 1`` the first row of each group is the decoder's argmax output
(the same ``DecodeConfig`` at temperature 0: what a greedy evaluation with that decoder
writes) and the other G - 1 rows are sampled. The group's advantages then compare the
samples with the model's own greedy answer (ReMax, arXiv 2310.10505, uses the greedy
completion as the baseline; here it is also trained on as a group member), so a failing
greedy answer is pushed down where a sample passes.

Under torchrun each process takes its share of the round's prompts
(:func:`rank_slice`: contiguous, whole groups) and scores its own rollouts: groups never
straddle processes, so advantages need no communication.

Not covered: chat templates (prompts are encoded as written), rollouts from a model other
than the policy (off-policy buffers), re-using rollouts across rounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
from torch import nn

from demask.tasks.base import Task

if TYPE_CHECKING:
    from demask.decoding.config import DecodeConfig
    from demask.model.config import ModelConfig


@dataclass
class RolloutBatch:
    """One process's rollouts of a round (N = prompts x G rows, groups contiguous).

    input_ids: (N, P + L) long, [left-padded prompt | completion].
    attention_mask: (N, P + L) bool, False on prompt padding only.
    prompt_length: P, the column where every completion starts.
    completions: the N completion texts (cut before the first end token), for the rewards.
    nfe: forward passes each row took part in while decoding.
    traces: per-row decoding records (what a trainer of the decoding itself reads, e.g. the
        learned unmasking policy's actions), or None when the rollouts keep none.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_length: int
    completions: list[str]
    nfe: list[int]
    traces: list[Any] | None = None

    def __post_init__(self) -> None:
        n = self.input_ids.shape[0]
        if self.attention_mask.shape != self.input_ids.shape:
            raise ValueError(
                f"attention_mask {tuple(self.attention_mask.shape)} must match input_ids {tuple(self.input_ids.shape)}"
            )
        if len(self.completions) != n or len(self.nfe) != n:
            raise ValueError(
                f"{n} rows but {len(self.completions)} completions and {len(self.nfe)} "
                "NFE counts; give one of each per row"
            )
        if self.traces is not None and len(self.traces) != n:
            raise ValueError(f"{n} rows but {len(self.traces)} traces; give one per row or None")
        if not 0 < self.prompt_length < self.input_ids.shape[1]:
            raise ValueError(
                f"prompt_length {self.prompt_length} must lie in (0, "
                f"{self.input_ids.shape[1]}): a prompt token and a completion each"
            )

    @property
    def completion_ids(self) -> torch.Tensor:
        """(N, L): the completion columns."""
        return self.input_ids[:, self.prompt_length :]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: Sequence[int]) -> RolloutBatch:
        """The rows ``rows``, in that order (prompt_length unchanged)."""
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.input_ids.device)
        return RolloutBatch(
            self.input_ids[idx],
            self.attention_mask[idx],
            self.prompt_length,
            [self.completions[i] for i in rows],
            [self.nfe[i] for i in rows],
            None if self.traces is None else [self.traces[i] for i in rows],
        )

    def to(self, device: torch.device | str) -> RolloutBatch:
        """The batch with its tensors on ``device``."""
        return dataclasses.replace(
            self, input_ids=self.input_ids.to(device), attention_mask=self.attention_mask.to(device)
        )


class RolloutFn(Protocol):
    """What the trainer calls for a round's rollouts: ``G`` completions for each task, rows
    ``[task 0] * G + [task 1] * G + ...``; all randomness from ``generator``."""

    def __call__(
        self, model: nn.Module, tasks: Sequence[Task], group_size: int, generator: torch.Generator
    ) -> RolloutBatch: ...


def pad_after_first_end(completion_ids: torch.Tensor, end_ids: Sequence[int], pad_id: int) -> torch.Tensor:
    """(N, L) -> a copy with every position after the first end token set to ``pad_id``.

    >>> pad_after_first_end(torch.tensor([[5, 0, 7, 0], [5, 6, 7, 8]]), [0, 2], 2).tolist()
    [[5, 0, 2, 2], [5, 6, 7, 8]]
    """
    ends = torch.as_tensor(list(end_ids), dtype=completion_ids.dtype, device=completion_ids.device)
    is_end = torch.isin(completion_ids, ends).long()
    after = (is_end.cumsum(dim=1) - is_end) > 0  # an end token strictly before
    return completion_ids.masked_fill(after, pad_id)


@dataclass
class DecodingRollouts:
    """Rollouts with :func:`demask.decoding.generate` and ``decode_config``.

    tokenizer: encodes prompts and decodes completions (a demask Tokenizer).
    decode_config: a ``DecodeConfig`` (the policy, temperature, top-p, gen_length, steps).
    greedy_per_group: 0, or 1 to make each group's first row the argmax decode.
    """

    tokenizer: Any
    decode_config: DecodeConfig
    greedy_per_group: int = 0

    def __post_init__(self) -> None:
        if self.greedy_per_group not in (0, 1):
            raise ValueError(
                f"greedy_per_group must be 0 or 1 (a greedy decode is deterministic: a "
                f"second one repeats the first), got {self.greedy_per_group}"
            )

    def __call__(
        self, model: nn.Module, tasks: Sequence[Task], group_size: int, generator: torch.Generator
    ) -> RolloutBatch:
        from demask.decoding import generate
        from demask.decoding.output import end_token_ids

        if group_size < 1 + self.greedy_per_group:
            raise ValueError(
                f"group_size must be >= {1 + self.greedy_per_group} (greedy_per_group "
                f"{self.greedy_per_group} plus a sample), got {group_size}"
            )
        prompts = [self.tokenizer.encode(t.prompt) for t in tasks]
        repeated = [p for p in prompts for _ in range(group_size)]  # groups contiguous
        was_training = model.training
        model.eval()
        try:
            if self.greedy_per_group:
                greedy = generate(
                    model, prompts, dataclasses.replace(self.decode_config, temperature=0.0), generator=generator
                )
                sampled = generate(
                    model, [p for p in prompts for _ in range(group_size - 1)], self.decode_config, generator=generator
                )
                # both calls left-pad the same prompts, so they share prompt_length
                assert greedy.prompt_length == sampled.prompt_length, "prompt layouts differ"
                # rows of [greedy | sampled] in group order: greedy i, then its G - 1 samples
                n, k = len(prompts), group_size - 1
                order = [i if j == 0 else n + i * k + j - 1 for i in range(n) for j in range(group_size)]
                tokens = torch.cat([greedy.tokens, sampled.tokens])[order]
                both_texts, both_nfe = greedy.completions + sampled.completions, greedy.nfe + sampled.nfe
                completions = [both_texts[r] for r in order]
                nfe = [both_nfe[r] for r in order]
                p = greedy.prompt_length
            else:
                out = generate(model, repeated, self.decode_config, generator=generator)
                tokens, completions, nfe, p = out.tokens, out.completions, out.nfe, out.prompt_length
        finally:
            model.train(was_training)
        mcfg = cast("ModelConfig", model.config)  # nn.Module types attributes as Tensor | Module
        ids = tokens.clone()  # (N, P + L)
        ends = end_token_ids(mcfg)
        if ends:
            pad = mcfg.pad_token_id if mcfg.pad_token_id is not None else ends[0]
            ids[:, p:] = pad_after_first_end(ids[:, p:], ends, pad)
        lengths = torch.tensor([len(r) for r in repeated], device=ids.device)
        cols = torch.arange(ids.shape[1], device=ids.device)
        attention = cols[None, :] >= (p - lengths)[:, None]  # False on left padding
        texts = [self.tokenizer.decode(list(c)) for c in completions]
        return RolloutBatch(ids, attention, p, texts, [int(n) for n in nfe])


def rank_slice(n_prompts: int, rank: int, world_size: int) -> slice:
    """The prompts (of a round's ``n_prompts``) that process ``rank`` rolls out and scores.

    >>> rank_slice(8, 1, 2)
    slice(4, 8, None)
    """
    if n_prompts % world_size:
        raise ValueError(
            f"{n_prompts} prompts per step do not split over {world_size} processes; use a multiple of {world_size}"
        )
    share = n_prompts // world_size
    return slice(rank * share, (rank + 1) * share)
