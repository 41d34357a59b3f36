"""Traces: what each decoding step committed, kept only when ``DecodeConfig.trace`` is set.

The loop appends one batched :class:`TraceStep` per forward pass (tensors of the rows that
took part, restricted to the block); :meth:`Trace.row` turns them into a per-row
:class:`RowTrace` of plain lists on demand, which is what analysis (AR-ness) reads.
Positions are completion indices (0 = first completion token). Positions filled by the
early stop are committed by no step: ``RowTrace.stopped_at`` says where the row ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TraceStep:
    """One forward pass of the batch."""

    rows: torch.Tensor
    """(A,) long: batch rows (indices into the prompts) that took part."""
    nfe: torch.Tensor
    """(A,) long: each row's forward-pass count, this one included."""
    offset: int
    """Completion index of column 0 of the tensors below (the block start)."""
    commit: torch.Tensor
    """(A, S) bool: committed at this step."""
    tokens: torch.Tensor
    """(A, S) long: the token of each position (meaningful where committed)."""
    scores: torch.Tensor
    """(A, S) float: the policy's score."""
    confidence: torch.Tensor
    """(A, S) float: probability of the chosen token."""
    info: dict[str, torch.Tensor] = field(default_factory=dict)
    """Policy extras (the learned policy's action log-probs), rows as in ``rows``."""


@dataclass
class RowStep:
    nfe: int
    positions: list[int]
    """Committed completion positions, ascending."""
    tokens: list[int]
    scores: list[float]
    confidences: list[float]


@dataclass
class RowTrace:
    gen_length: int
    steps: list[RowStep]
    stopped_at: int | None = None
    """Completion index of the end token at which the row stopped early (None: decoded to
    the end). Positions after it were filled, not committed by a step."""

    def order(self) -> list[int]:
        """Committed positions in commit order; the tokens of one step left to right."""
        return [p for step in self.steps for p in step.positions]

    def step_groups(self) -> list[list[int]]:
        return [list(step.positions) for step in self.steps]

    def commit_steps(self) -> list[int]:
        """Per completion position, the index of the step that committed it (-1: never)."""
        out = [-1] * self.gen_length
        for i, step in enumerate(self.steps):
            for p in step.positions:
                out[p] = i
        return out


class Trace:
    """Every step of one generate() call."""

    def __init__(self, batch_size: int, gen_length: int) -> None:
        self.batch_size, self.gen_length = batch_size, gen_length
        self.steps: list[TraceStep] = []
        self.stopped_at: dict[int, int] = {}
        self._rows: list[RowTrace] | None = None

    def record(self, step: TraceStep) -> None:
        self.steps.append(step)
        self._rows = None

    def record_stop(self, rows: list[int], positions: list[int]) -> None:
        self.stopped_at.update(zip(rows, positions))
        self._rows = None

    def row(self, i: int) -> RowTrace:
        return self.rows()[i]

    def rows(self) -> list[RowTrace]:
        """Per-row traces (built once: one host transfer per step)."""
        if self._rows is None:
            per_row: list[list[RowStep]] = [[] for _ in range(self.batch_size)]
            for st in self.steps:
                rows, nfe = st.rows.tolist(), st.nfe.tolist()
                commit = st.commit.cpu()
                tokens, scores, conf = st.tokens.cpu(), st.scores.float().cpu(), st.confidence.float().cpu()
                for j, r in enumerate(rows):
                    cols = commit[j].nonzero().flatten()
                    per_row[r].append(
                        RowStep(
                            nfe=nfe[j],
                            positions=(cols + st.offset).tolist(),
                            tokens=tokens[j, cols].tolist(),
                            scores=scores[j, cols].tolist(),
                            confidences=conf[j, cols].tolist(),
                        )
                    )
            self._rows = [RowTrace(self.gen_length, steps, self.stopped_at.get(r)) for r, steps in enumerate(per_row)]
        return self._rows

    def policy_info(self, key: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(rows, values) of one policy extra for every step that recorded it."""
        return [(st.rows, st.info[key]) for st in self.steps if key in st.info]
