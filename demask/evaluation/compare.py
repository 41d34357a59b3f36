"""Paired comparison of evaluation results: which model is better on the same tasks, and by
how much beyond noise (see demask.evaluation.stats for the interval).

A per-task score is read from a results JSON (``demask eval`` / ``check-samples``): ``pass@1``
(the task's c/n), any ``pass@k`` the task has, or ``pass_rate_mean`` (the fraction of its
tests passed, averaged over samples).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from demask.evaluation.stats import PairedDifference, paired_difference


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """A results JSON, given as the file or as the run directory that holds results.json."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no results file at {path}; pass a results.json or the output directory of `demask eval`"
        )
    results = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(results, dict) or not isinstance(results.get("tasks"), dict):
        raise ValueError(f"{path} has no per-task results ('tasks'); is it a demask results JSON?")
    return results


def task_scores(results: dict[str, Any], metric: str = "pass@1") -> dict[str, float]:
    """Each task's ``metric``; a task without it (too few samples for pass@k) is an error."""
    scores: dict[str, float] = {}
    for task_id, entry in results["tasks"].items():
        value = entry.get(metric)
        if value is None:
            have = sorted(k for k, v in entry.items() if k.startswith("pass") and v is not None)
            raise ValueError(
                f"task {task_id!r} has no {metric!r} (it has {', '.join(have) or 'none'}; "
                f"{entry.get('n', 0)} samples); pick one of those with --metric"
            )
        scores[task_id] = float(value)
    return scores


def compare_results(base: dict[str, Any], other: dict[str, Any], metric: str = "pass@1") -> PairedDifference:
    return paired_difference(task_scores(base, metric), task_scores(other, metric))
