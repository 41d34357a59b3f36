"""The decoding engine: one denoising loop, unmasking policies, schedules, caches, traces.

    from demask.decoding import DecodeConfig, generate
    out = generate(model, [prompt_ids], DecodeConfig(gen_length=64, policy="threshold"))
    out.completions, out.nfe

Imports only demask.model (and not even that at import time).
"""

from demask.decoding.config import CACHE_MODES, DecodeConfig
from demask.decoding.loop import generate
from demask.decoding.output import DecodeOutput
from demask.decoding.policies import (
    POLICIES,
    AdaptivePolicy,
    LearnedPolicy,
    PolicyFeatures,
    ScoredPolicy,
    Selection,
    StepState,
    UnmaskingPolicy,
    make_policy,
    policy_class,
    policy_names,
)
from demask.decoding.sampling import choose_tokens, filter_logits
from demask.decoding.schedules import SCHEDULES, llada_split
from demask.decoding.trace import RowTrace, Trace, TraceStep

__all__ = [
    "CACHE_MODES",
    "POLICIES",
    "SCHEDULES",
    "AdaptivePolicy",
    "DecodeConfig",
    "DecodeOutput",
    "LearnedPolicy",
    "PolicyFeatures",
    "RowTrace",
    "ScoredPolicy",
    "Selection",
    "StepState",
    "Trace",
    "TraceStep",
    "UnmaskingPolicy",
    "choose_tokens",
    "filter_logits",
    "generate",
    "llada_split",
    "make_policy",
    "policy_class",
    "policy_names",
]
