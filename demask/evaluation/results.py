"""Scored samples -> the results JSON (per task and totals). Pure: no files, no processes.

Shape::

    {"num_tasks", "num_samples", "samples_per_task": {"min", "max"},
     "pass_at_k": {"pass@1": ..},          # only k <= the fewest samples any task has
     "pass_rate_mean",                     # mean over tasks of each task's mean pass rate
     "verdicts": {"passed": .., ...},      # over all samples
     "generation": {"nfe_per_token", "tokens_per_second", "mean_nfe", "mean_tokens"},  # if known
     "missing_tasks": [...],               # tasks without any sample
     "benchmarks": {name: version},        # from the tasks' meta, where known
     "tasks": {task_id: {"n", "c", "verdicts", "pass_rate_mean", "pass@k"...}},
     "samples": [{"task_id", "sample_index", "passed", "verdict", "pass_rate", "error"}]}
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from demask.evaluation.passk import pass_at_k, pass_at_k_totals
from demask.execution.types import Verdict
from demask.tasks.base import Task

DEFAULT_KS = (1, 10, 100)


def _verdict_counts(verdicts: Iterable[str]) -> dict[str, int]:
    counts = Counter(verdicts)
    out = {v.value: counts.pop(v.value, 0) for v in Verdict}
    out.update(sorted(counts.items()))  # verdicts this version does not know, kept as they are
    return out


def summarize(
    tasks: Sequence[Task], records: Iterable[dict[str, Any]], *, ks: Iterable[int] = DEFAULT_KS
) -> dict[str, Any]:
    """Aggregate scored sample records (each with task_id, sample_index, passed, verdict,
    pass_rate, and optionally nfe, num_tokens, seconds) over ``tasks``.

    Records of task ids not in ``tasks`` raise ValueError (they would silently skew totals).
    """
    ks = tuple(ks)
    by_task: dict[str, list[dict[str, Any]]] = {t.task_id: [] for t in tasks}
    for rec in records:
        task_id = rec["task_id"]
        if task_id not in by_task:
            raise ValueError(
                f"a sample names task {task_id!r}, which is not among the "
                f"{len(by_task)} tasks being scored; score it with the right tasks"
            )
        by_task[task_id].append(rec)

    per_task: dict[str, dict[str, Any]] = {}
    samples: list[dict[str, Any]] = []
    for task_id, recs in by_task.items():
        recs.sort(key=lambda r: r["sample_index"])
        n = len(recs)
        c = sum(1 for r in recs if r["passed"])
        entry: dict[str, Any] = {
            "n": n,
            "c": c,
            "verdicts": _verdict_counts(r["verdict"] for r in recs),
            "pass_rate_mean": math.fsum(r["pass_rate"] for r in recs) / n if n else None,
        }
        entry.update({f"pass@{k}": pass_at_k(n, c, k) for k in ks if n >= k})
        per_task[task_id] = entry
        samples.extend(
            {
                "task_id": task_id,
                "sample_index": r["sample_index"],
                "passed": r["passed"],
                "verdict": r["verdict"],
                "pass_rate": r["pass_rate"],
                "error": r.get("error"),
            }
            for r in recs
        )

    counts = [(e["n"], e["c"]) for e in per_task.values()]
    rates = [e["pass_rate_mean"] for e in per_task.values() if e["pass_rate_mean"] is not None]
    ns = [n for n, _ in counts]
    benchmarks = {t.meta["benchmark"]: t.meta.get("version") for t in tasks if "benchmark" in t.meta}
    return {
        "num_tasks": len(per_task),
        "num_samples": len(samples),
        "samples_per_task": {"min": min(ns, default=0), "max": max(ns, default=0)},
        "pass_at_k": pass_at_k_totals(counts, ks),
        "pass_rate_mean": math.fsum(rates) / len(rates) if rates else None,
        "verdicts": _verdict_counts(s["verdict"] for s in samples),
        "generation": _generation_stats(r for recs in by_task.values() for r in recs),
        "missing_tasks": [tid for tid, e in per_task.items() if e["n"] == 0],
        "benchmarks": benchmarks,
        "tasks": per_task,
        "samples": samples,
    }


def _generation_stats(records: Iterable[dict[str, Any]]) -> dict[str, float | None] | None:
    """NFE per token and tokens per second over all samples that carry them."""
    nfe = tokens = 0
    seconds = 0.0
    count = 0
    for r in records:
        if "nfe" not in r or "num_tokens" not in r:
            continue
        count += 1
        nfe += int(r["nfe"])
        tokens += int(r["num_tokens"])
        seconds += float(r.get("seconds", 0.0))
    if not count:
        return None
    return {
        "samples": count,
        "mean_nfe": nfe / count,
        "mean_tokens": tokens / count,
        "nfe_per_token": nfe / tokens if tokens else None,
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
    }
