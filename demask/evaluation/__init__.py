"""Generate -> execute -> pass@k, with resumable sample files (see runner.py)."""

from demask.evaluation.check import check_samples
from demask.evaluation.compare import compare_results, load_results, task_scores
from demask.evaluation.passk import mean_pass_at_k, pass_at_k, pass_at_k_totals
from demask.evaluation.results import summarize
from demask.evaluation.runner import EvalConfig, evaluate
from demask.evaluation.sampler import decoding_sampler
from demask.evaluation.samples import SampleOutput, Sampler, sample_seed
from demask.evaluation.stats import mean_interval, paired_difference

__all__ = [
    "EvalConfig",
    "SampleOutput",
    "Sampler",
    "check_samples",
    "compare_results",
    "decoding_sampler",
    "evaluate",
    "load_results",
    "mean_interval",
    "mean_pass_at_k",
    "paired_difference",
    "pass_at_k",
    "pass_at_k_totals",
    "sample_seed",
    "summarize",
    "task_scores",
]
