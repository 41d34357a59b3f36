"""Training examples and batches: supervised (prompt -> completion) and pretraining chunks.

Layout of a batch row (the "fixed layout" every objective reads)::

    [pad .. pad | prompt tokens | answer tokens, end token, pad .. pad]
     attention 0  attention 1     attention 1 ------------------------
                                  target ------------------------------
                                                           fill -------

- prompts are left-padded (with the pad token, attention 0) to the longest prompt of the
  batch, so the completion of every row occupies the same last ``completion_length``
  columns; position ids come from the attention mask, so padding shifts nothing;
- the completion is the answer, one end token, then the pad token up to the fixed
  completion length. The fill pads are real targets of the masked-diffusion objective
  (the model learns to write pad after the answer, as DiffuCoder does with
  ``<|dlm_pad|>``) and are attended to; the autoregressive objective stops at the end token.

Pretraining rows are fixed-length chunks of a token stream, every position a target.

Not covered: packing several SFT examples into one row, variable completion lengths in
one data set, streaming data sets larger than memory (everything here is one tensor).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from demask.model.transformer import mask_positions


@dataclass
class Batch:
    """One batch in the fixed layout. All tensors are (B, S).

    attention_mask: True on real tokens, False on the prompt's left padding; None when the
        batch has no padding at all (the model then skips building a mask).
    target_mask: positions an objective may train on (the completion, or every position
        of a pretraining chunk); the prompt is never a target.
    fill_mask: the pad tokens that fill a completion after its end token (a subset of
        target_mask).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    target_mask: torch.Tensor
    fill_mask: torch.Tensor

    def __post_init__(self) -> None:
        shape = tuple(self.input_ids.shape)
        for name in ("attention_mask", "target_mask", "fill_mask"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"Batch.{name} has shape {tuple(value.shape)}, input_ids has {shape}")

    @property
    def width(self) -> int:
        return self.input_ids.shape[1]

    def n_real_tokens(self) -> int:
        """Tokens the model actually reads (left padding excluded)."""
        if self.attention_mask is None:
            return self.input_ids.numel()
        return int(self.attention_mask.sum())

    def to(self, device: torch.device | str) -> Batch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        mask = self.attention_mask
        return Batch(
            move(self.input_ids), None if mask is None else move(mask), move(self.target_mask), move(self.fill_mask)
        )

    def positions(self) -> torch.Tensor:
        """(B, S) rotary positions of the rows (true positions under left padding)."""
        if self.attention_mask is None:
            return torch.arange(self.width, device=self.input_ids.device).expand_as(self.input_ids)
        return mask_positions(self.attention_mask)

    def repeat(self, times: int) -> Batch:
        """The rows ``times`` over, stacked (row i of copy c is row c * B + i)."""
        mask = self.attention_mask
        return Batch(
            self.input_ids.repeat(times, 1),
            None if mask is None else mask.repeat(times, 1),
            self.target_mask.repeat(times, 1),
            self.fill_mask.repeat(times, 1),
        )


class ExampleData(Protocol):
    """What the training loop needs from a data set: a size, a row width and batches."""

    def __len__(self) -> int: ...

    @property
    def width(self) -> int:
        """The widest row a batch can have (noise is drawn at this width)."""

    def batch(self, indices: torch.Tensor) -> Batch: ...


# ---------------------------------------------------------------------------- SFT
@dataclass(frozen=True)
class SFTExample:
    """A prompt and its completion: the answer, one end token, then pad up to a fixed length."""

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    n_content: int
    """Answer tokens plus the end token; the rest of ``completion_ids`` is pad fill."""


def make_sft_example(
    prompt_ids: Sequence[int],
    answer_ids: Sequence[int],
    *,
    completion_length: int,
    end_token_id: int,
    pad_token_id: int,
) -> SFTExample:
    """Append the end token and pad to ``completion_length``.

    >>> make_sft_example([5, 6], [7], completion_length=4, end_token_id=0, pad_token_id=2)
    SFTExample(prompt_ids=(5, 6), completion_ids=(7, 0, 2, 2), n_content=2)
    """
    content = [*answer_ids, end_token_id]
    if len(content) > completion_length:
        raise ValueError(
            f"answer of {len(answer_ids)} tokens plus the end token does not fit the completion "
            f"length {completion_length}; raise completion_length or drop long examples"
        )
    fill = [pad_token_id] * (completion_length - len(content))
    return SFTExample(tuple(int(i) for i in prompt_ids), tuple(int(i) for i in content + fill), len(content))


class SFTData:
    """SFT examples held as tensors; ``batch(indices)`` builds the fixed layout without a
    Python loop over rows."""

    def __init__(self, examples: Sequence[SFTExample], pad_token_id: int) -> None:
        if not examples:
            raise ValueError("SFTData needs at least one example")
        lengths = {len(e.completion_ids) for e in examples}
        if len(lengths) != 1:
            raise ValueError(
                f"every completion must have the same (padded) length, got lengths "
                f"{sorted(lengths)}; build the examples with one completion_length"
            )
        self.completion_length = lengths.pop()
        self.pad_token_id = pad_token_id
        n = len(examples)
        self.max_prompt_length = max(len(e.prompt_ids) for e in examples)
        self.prompts = torch.full((n, self.max_prompt_length), pad_token_id, dtype=torch.long)
        for row, e in enumerate(examples):  # once, at construction
            if e.prompt_ids:
                self.prompts[row, self.max_prompt_length - len(e.prompt_ids) :] = torch.tensor(e.prompt_ids)
        self.prompt_lengths = torch.tensor([len(e.prompt_ids) for e in examples], dtype=torch.long)
        self.completions = torch.tensor([e.completion_ids for e in examples], dtype=torch.long)
        self.n_content = torch.tensor([e.n_content for e in examples], dtype=torch.long)

    def __len__(self) -> int:
        return self.prompts.shape[0]

    @property
    def width(self) -> int:
        return self.max_prompt_length + self.completion_length

    def batch(self, indices: torch.Tensor) -> Batch:
        lens = self.prompt_lengths[indices]  # (B,)
        p = int(lens.max())  # columns of the longest prompt in this batch
        prompts = self.prompts[indices, self.max_prompt_length - p :]  # (B, p), left-padded
        ids = torch.cat([prompts, self.completions[indices]], dim=1)  # (B, p + L)
        b, s = ids.shape
        cols = torch.arange(s)
        attention = None
        if bool((lens < p).any()):
            attention = cols[None, :] >= (p - lens)[:, None]  # (B, S)
        target = (cols >= p)[None, :].expand(b, s)
        fill = cols[None, :] >= (p + self.n_content[indices])[:, None]
        return Batch(ids, attention, target.contiguous(), fill)


# ---------------------------------------------------------------------------- pretraining
class TokenChunks:
    """Fixed-length rows of a token stream; every position is a target."""

    def __init__(self, chunks: torch.Tensor) -> None:
        if chunks.ndim != 2 or chunks.shape[0] == 0:
            raise ValueError(f"TokenChunks needs a non-empty (N, seq_len) tensor, got shape {tuple(chunks.shape)}")
        self.chunks = chunks.long()

    def __len__(self) -> int:
        return self.chunks.shape[0]

    @property
    def width(self) -> int:
        return self.chunks.shape[1]

    def batch(self, indices: torch.Tensor) -> Batch:
        ids = self.chunks[indices]
        ones = torch.ones_like(ids, dtype=torch.bool)
        return Batch(ids, None, ones, torch.zeros_like(ones))


def chunk_documents(documents: Iterable[Sequence[int]], seq_len: int, separator_id: int | None) -> torch.Tensor:
    """Concatenate documents (each followed by ``separator_id``) and cut the stream into
    ``(N, seq_len)`` rows; the incomplete tail is dropped.

    >>> chunk_documents([[1, 2], [3, 4, 5]], 3, 0).tolist()
    [[1, 2, 0], [3, 4, 5]]
    """
    if seq_len <= 0:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    stream: list[int] = []
    for doc in documents:
        stream.extend(doc)
        if separator_id is not None:
            stream.append(separator_id)
    n = len(stream) // seq_len
    if n == 0:
        raise ValueError(
            f"the documents hold {len(stream)} tokens, fewer than one chunk of "
            f"seq_len={seq_len}; add files or lower seq_len"
        )
    return torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)


def source_files(folder: str | Path, patterns: Sequence[str] = ("*.py",), max_files: int | None = None) -> list[Path]:
    """Files under ``folder`` (recursively) matching any pattern, sorted by path so the
    order (and hence the data) is the same on every machine."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder of source files at {folder}")
    files = sorted({p for pattern in patterns for p in folder.rglob(pattern) if p.is_file()})
    if not files:
        raise FileNotFoundError(f"no files matching {list(patterns)} under {folder}")
    return files[:max_files] if max_files is not None else files


def read_texts(files: Iterable[Path]) -> list[str]:
    """File contents as text (undecodable bytes replaced, so any source tree can be read)."""
    return [Path(f).read_text(encoding="utf-8", errors="replace") for f in files]
