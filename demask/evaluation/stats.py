"""Intervals for comparing models: a mean over seeds, and a paired difference over tasks.

Two models scored on the same tasks differ far less in their *paired* difference than their
two pass@1 intervals suggest: most tasks are passed (or failed) by both. The paired
difference averages d_t = other_t - base_t over the common tasks; its standard error is
stdev(d) / sqrt(n). Intervals are two-sided 95% Student-t (quantiles from scipy.stats.t).

Not covered: multiple-comparison corrections, or dependence between tasks (the tasks are
treated as independent draws, as pass@k's own intervals do).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def t95(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom.

    >>> round(t95(2), 3), round(t95(30), 3), round(t95(1000), 3)
    (4.303, 2.042, 1.962)
    """
    # imported here: scipy.stats takes about a second to import, which every importer of
    # demask.evaluation would pay otherwise
    from scipy.stats import t as student_t  # type: ignore[import-untyped]  # scipy ships no types

    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}: an interval needs two values")
    return float(student_t.ppf(0.975, df))


@dataclass(frozen=True)
class Interval:
    """A mean and the half-width of its 95% t-interval (0 for a single value)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def mean_interval(values: Iterable[float]) -> Interval:
    """Mean and 95% t-interval of ``values`` (NaNs dropped; NaN mean if none are left)."""
    vals = [float(v) for v in values if not math.isnan(v)]
    if not vals:
        return Interval(float("nan"), float("nan"), 0)
    mean = statistics.fmean(vals)
    if len(vals) < 2:
        return Interval(mean, 0.0, 1)
    se = statistics.stdev(vals) / math.sqrt(len(vals))
    return Interval(mean, t95(len(vals) - 1) * se, len(vals))


@dataclass(frozen=True)
class PairedDifference:
    """other - base over the tasks both were scored on."""

    n: int  # common tasks
    base_mean: float
    other_mean: float
    diff: Interval  # mean of per-task differences, with its 95% t-interval
    se: float  # standard error of diff.mean
    gained: int  # tasks where other scores higher than base
    lost: int  # tasks where other scores lower


def paired_difference(base: Mapping[str, float], other: Mapping[str, float]) -> PairedDifference:
    """Compare per-task scores (e.g. each task's pass@1) of two models on the same tasks.

    The task sets must match: a comparison over a silent intersection would hide tasks one
    model never ran.

    >>> d = paired_difference({"a": 1, "b": 0, "c": 0}, {"a": 1, "b": 1, "c": 0})
    >>> d.diff.mean, d.gained, d.lost
    (0.3333333333333333, 1, 0)
    """
    only_base = sorted(set(base) - set(other))
    only_other = sorted(set(other) - set(base))
    if only_base or only_other:
        parts = []
        if only_base:
            parts.append(f"{len(only_base)} only in the base (first: {only_base[0]})")
        if only_other:
            parts.append(f"{len(only_other)} only in the other (first: {only_other[0]})")
        raise ValueError(
            "the two score sets cover different tasks: " + ", ".join(parts) + "; score both models on the same tasks"
        )
    if not base:
        raise ValueError("no tasks to compare")
    keys = sorted(base)
    deltas = [float(other[k]) - float(base[k]) for k in keys]
    diff = mean_interval(deltas)
    se = statistics.stdev(deltas) / math.sqrt(len(deltas)) if len(deltas) > 1 else 0.0
    return PairedDifference(
        n=len(keys),
        base_mean=statistics.fmean(float(base[k]) for k in keys),
        other_mean=statistics.fmean(float(other[k]) for k in keys),
        diff=diff,
        se=se,
        gained=sum(d > 0 for d in deltas),
        lost=sum(d < 0 for d in deltas),
    )
