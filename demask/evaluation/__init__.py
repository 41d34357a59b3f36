"""Generate -> execute -> pass@k, with resumable sample files (see runner.py)."""

from demask.evaluation.check import check_samples
from demask.evaluation.passk import mean_pass_at_k, pass_at_k, pass_at_k_totals
from demask.evaluation.results import summarize
from demask.evaluation.runner import EvalConfig, evaluate
from demask.evaluation.samples import SampleOutput, Sampler, sample_seed

__all__ = [
    "EvalConfig",
    "SampleOutput",
    "Sampler",
    "check_samples",
    "evaluate",
    "mean_pass_at_k",
    "pass_at_k",
    "pass_at_k_totals",
    "sample_seed",
    "summarize",
]
