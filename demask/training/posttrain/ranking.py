"""RRTF (PanGu-Coder2, arXiv 2307.14936) and its baselines as algorithms on ranked responses.

**Ranking** (:func:`rank_response`): a response's program is compiled, then run on the
task's tests; four levels, low to high, with a score that orders them::

    compile error   0.0     the program does not compile (SyntaxError and the like)
    runtime error   1.0     it compiles but raises, times out or passes no test
    partial         1 + k/n it passes k of its n tests, 0 < k < n
    passed          2.0     it passes every test

**Pairs** (:func:`rrtf_pairs`): every (teacher response, student response) of one prompt with
``score_teacher >= score_student`` (a tie ranks the teacher higher); pairs where the teacher
scores lower are dropped.

**Losses** on length-normalised sequence scores ``p`` (:mod:`.scores`), per batch of items::

    L_rank = mean_items( -w * min(0, p_chosen - p_rejected) )
    L_ft   = - sum_items S(sft) / sum_items n(sft)        (token mean over real tokens)
    L      = rank_weight * L_rank + L_ft

- ``rrtf``: items = the RRTF pairs, chosen = the teacher's response, rejected = the
  student's, w = score_teacher - score_student, SFT on the teacher's response.
- ``rrhf``: items = every pair of a prompt's responses (student and teachers) with
  ``score_i > score_j``, w = 1 (RRHF's unweighted hinge), SFT on the prompt's best response
  (ties: a teacher's first). Without RRHF's public bugs: each score is normalised by its own
  real length, not the padded one, and every row of the batch counts, not row 0.
- ``sft``: the RRTF pairs' teacher responses with L_ft alone (the ablation of L_rank).
- ``rejection-sampling``: the student's own passing responses with L_ft alone.

PanGu-Coder2 sums L_rank over pairs and L_ft over tokens; we average both (over the batch's
items and its real tokens) so the learning rate does not depend on the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from demask.execution.types import ExecutionResult
from demask.tasks.base import Task
from demask.training.posttrain.algorithm import Algorithm
from demask.training.posttrain.scores import ScoreBatch, sequence_scores

LEVELS = ("compile_error", "runtime_error", "partial", "passed")


def compiles(code: str) -> bool:
    """Whether ``code`` compiles (a SyntaxError, IndentationError or a bad literal does not)."""
    try:
        compile(code, "<response>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def rank_response(code: str, result: ExecutionResult | None) -> tuple[str, float]:
    """``(level, score)`` of a response whose program is ``code`` and whose run gave ``result``
    (None when it was not run because it does not compile).

    >>> rank_response("def f(:", None)
    ('compile_error', 0.0)
    """
    if not compiles(code) or result is None:
        return "compile_error", 0.0
    if result.passed:
        return "passed", 2.0
    if result.tests_total > 0 and 0 < result.tests_passed < result.tests_total:
        return "partial", 1.0 + result.tests_passed / result.tests_total
    return "runtime_error", 1.0


@dataclass(frozen=True)
class Response:
    """One ranked response of a prompt (a line of ranked.jsonl holds a prompt's list)."""

    text: str
    source: str
    """The model that wrote it (its name in the recipe)."""
    role: str
    """"student" or "teacher"."""
    score: float
    level: str = ""
    temperature: float | None = None


def rrtf_pairs(responses: Sequence[Response]) -> list[tuple[int, int]]:
    """(teacher index, student index) of every pair with the teacher's score >= the student's.

    >>> rs = [Response("a", "s", "student", 1.0), Response("b", "t", "teacher", 1.0)]
    >>> rrtf_pairs(rs + [Response("c", "t", "teacher", 0.0)])
    [(1, 0)]
    """
    teachers = [i for i, r in enumerate(responses) if r.role == "teacher"]
    students = [j for j, r in enumerate(responses) if r.role == "student"]
    return [(i, j) for i in teachers for j in students if responses[i].score >= responses[j].score]


def best_response(responses: Sequence[Response]) -> int:
    """The index of the highest-scored response; ties go to a teacher, then to the first."""
    return max(range(len(responses)), key=lambda i: (responses[i].score, responses[i].role == "teacher", -i))


@dataclass(frozen=True)
class Item:
    """One training example: an SFT target and, for a ranking term, a (chosen, rejected) pair."""

    task_id: str
    prompt: str
    sft: str
    chosen: str | None = None
    rejected: str | None = None
    weight: float = 0.0


class RankingAlgorithm(Algorithm):
    """The shared loss ``rank_weight * L_rank + L_ft`` (module docstring); subclasses choose
    the items (:meth:`items`) and whether the pair term is weighted by the score gap."""

    requires: ClassVar[frozenset[str]] = frozenset({"ranked"})
    ranks: ClassVar[bool] = True
    """Whether the algorithm has a ranking term."""

    def __init__(
        self, *, rank_weight: float = 1.0, n_draws: int = 2, shared_draws: bool = True, elbo: str = "t"
    ) -> None:
        if rank_weight < 0:
            raise ValueError(f"rank_weight must be >= 0, got {rank_weight}")
        if n_draws < 1:
            raise ValueError(f"n_draws (ELBO draws per response of a diffusion student) must be >= 1, got {n_draws}")
        from demask.training.posttrain.scores import ELBO_FORMS

        if elbo not in ELBO_FORMS:
            raise ValueError(f"elbo={elbo!r} is not one of {ELBO_FORMS} (t: a mask rate; l: a mask count, LLaDA)")
        self.rank_weight, self.n_draws, self.shared_draws, self.elbo = rank_weight, n_draws, shared_draws, elbo

    def items(self, task_id: str, prompt: str, responses: Sequence[Response]) -> list[Item]:
        raise NotImplementedError

    def loss(
        self, model: nn.Module, batch: Any, generator: torch.Generator | None = None, **context: Any
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """batch: a :class:`RankBatch`; generator: the diffusion draws (shared by the K
        responses of an item when ``shared_draws``)."""
        kw: dict[str, Any] = {
            "generator": generator,
            "n_draws": self.n_draws,
            "shared": self.shared_draws,
            "form": self.elbo,
        }
        if not self.ranks or batch.pairs is None:
            s_sft, n_sft = sequence_scores(model, batch.sft, **kw)
            return ranking_loss(s_sft[:, 0], n_sft[:, 0])
        s, n = sequence_scores(model, batch.pairs, **kw)  # (B, 2): chosen, rejected
        if batch.sft_is_chosen:
            s_sft, n_sft = s[:, 0], n[:, 0]
        else:
            s1, n1 = sequence_scores(model, batch.sft, **kw)
            s_sft, n_sft = s1[:, 0], n1[:, 0]
        return ranking_loss(s_sft, n_sft, s / n, batch.weights, self.rank_weight)


def ranking_loss(
    sft_sum: torch.Tensor,
    sft_tokens: torch.Tensor,
    pair_scores: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    rank_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``rank_weight * L_rank + L_ft`` from per-item SFT sums/tokens (B,), length-normalised
    pair scores (B, 2) [chosen, rejected] and pair weights (B,) (module docstring)."""
    ft = -sft_sum.sum() / sft_tokens.sum().clamp(min=1.0)
    metrics = {"ft_loss": float(ft.detach())}
    loss = ft
    if pair_scores is not None and weights is not None:
        margin = pair_scores[:, 0] - pair_scores[:, 1]  # p_chosen - p_rejected
        rank = (-weights.to(margin.dtype) * margin.clamp(max=0.0)).mean()
        loss = loss + rank_weight * rank
        with torch.no_grad():
            metrics.update(
                rank_loss=float(rank),
                margin=float(margin.mean()),
                violated=float((margin < 0).float().mean()),
            )
    metrics["loss"] = float(loss.detach())
    return loss, metrics


class RRTF(RankingAlgorithm):
    """PanGu-Coder2's RRTF: gap-weighted hinge on (teacher, student) pairs + SFT on the teacher."""

    def items(self, task_id: str, prompt: str, responses: Sequence[Response]) -> list[Item]:
        return [
            Item(
                task_id,
                prompt,
                responses[i].text,
                responses[i].text,
                responses[j].text,
                responses[i].score - responses[j].score,
            )
            for i, j in rrtf_pairs(responses)
        ]


class TeacherSFT(RRTF):
    """SFT on the RRTF pairs' teacher responses alone (RRTF without L_rank)."""

    ranks: ClassVar[bool] = False


class RRHF(RankingAlgorithm):
    """RRHF: unweighted hinge over every ranked pair of a prompt + SFT on its best response."""

    def items(self, task_id: str, prompt: str, responses: Sequence[Response]) -> list[Item]:
        if not responses:
            return []
        best = responses[best_response(responses)].text
        return [
            Item(task_id, prompt, best, a.text, b.text, 1.0) for a in responses for b in responses if a.score > b.score
        ]


class RejectionSampling(RankingAlgorithm):
    """SFT on the student's own responses that pass every test."""

    ranks: ClassVar[bool] = False

    def items(self, task_id: str, prompt: str, responses: Sequence[Response]) -> list[Item]:
        return [Item(task_id, prompt, r.text) for r in responses if r.role == "student" and r.level == "passed"]


# ---------------------------------------------------------------------- batches
@dataclass
class RankBatch:
    """Items as tensors: ``pairs`` (K = 2: chosen, rejected) or None; ``sft`` (K = 1);
    ``weights`` (B,) the pair weights; ``sft_is_chosen``: the SFT target is the chosen
    response (RRTF), so its score is taken from ``pairs`` and not computed twice."""

    sft: ScoreBatch
    pairs: ScoreBatch | None
    weights: torch.Tensor
    sft_is_chosen: bool

    def to(self, device: torch.device | str) -> RankBatch:
        return RankBatch(
            self.sft.to(device),
            None if self.pairs is None else self.pairs.to(device),
            self.weights.to(device),
            self.sft_is_chosen,
        )


class Encoder:
    """Texts to the student's fixed layout: prompts left-padded, each response as a canvas of
    ``completion_length`` tokens (answer, end token, pad fill). Responses written by a teacher
    with another tokenizer are re-tokenised here from their text."""

    def __init__(self, tokenizer: Any, completion_length: int, end_token_id: int, pad_token_id: int) -> None:
        self.tokenizer, self.length = tokenizer, completion_length
        self.end, self.pad = end_token_id, pad_token_id
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def for_model(cls, tokenizer: Any, config: Any, completion_length: int) -> Encoder:
        """The encoder of a model: its end token (EOS, else pad) and pad token."""
        end = config.eos_token_id if config.eos_token_id is not None else config.pad_token_id
        pad = config.pad_token_id if config.pad_token_id is not None else end
        if end is None or pad is None:
            raise ValueError("the student's config has no eos_token_id or pad_token_id: responses need an end token")
        return cls(tokenizer, completion_length, end, pad)

    def tokens(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = self._cache[text] = list(self.tokenizer.encode(text))
        return ids

    def fits(self, item: Item) -> bool:
        """Whether every response of ``item`` fits the canvas with its end token."""
        texts = [item.sft] + [t for t in (item.chosen, item.rejected) if t is not None]
        return all(len(self.tokens(t)) + 1 <= self.length for t in texts)

    def score_batch(self, prompts: Sequence[str], responses: Sequence[Sequence[str]]) -> ScoreBatch:
        prompt_ids = [self.tokens(p) for p in prompts]
        width = max(len(p) for p in prompt_ids)
        b, k = len(prompts), len(responses[0])
        ids = torch.full((b, width), self.pad, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.bool)
        for row, p in enumerate(prompt_ids):
            if p:
                ids[row, width - len(p) :] = torch.tensor(p)
                mask[row, width - len(p) :] = True
        canvas = torch.full((b, k, self.length), self.pad, dtype=torch.long)
        content = torch.zeros((b, k), dtype=torch.long)
        for row, texts in enumerate(responses):
            for col, text in enumerate(texts):
                answer = [*self.tokens(text), self.end]
                canvas[row, col, : len(answer)] = torch.tensor(answer)
                content[row, col] = len(answer)
        return ScoreBatch(ids, mask, canvas, content)

    def batch(self, items: Sequence[Item], ranks: bool) -> RankBatch:
        prompts = [it.prompt for it in items]
        has_pairs = ranks and all(it.chosen is not None and it.rejected is not None for it in items)
        pairs = self.score_batch(prompts, [[it.chosen or "", it.rejected or ""] for it in items]) if has_pairs else None
        sft_is_chosen = has_pairs and all(it.sft == it.chosen for it in items)
        sft = self.score_batch(prompts, [[it.sft] for it in items])
        weights = torch.tensor([it.weight for it in items], dtype=torch.float32)
        return RankBatch(sft, pairs, weights, sft_is_chosen)


def task_lookup(tasks: Sequence[Task]) -> dict[str, Task]:
    return {t.task_id: t for t in tasks}
