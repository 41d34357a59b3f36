"""What one decoding run is asked to do: :class:`DecodeConfig`.

Every knob of the denoising loop lives here, validated once, so the loop itself never
checks options. The same dataclass drives the library call, the CLI and YAML recipes.
A policy's own knobs are not fields: they are ``policy_options``, checked against the
policy's arguments (``policy="threshold", policy_options={"threshold": 0.8}``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from demask.decoding.policies import UnmaskingPolicy, make_policy, policy_class
from demask.decoding.schedules import schedule_class

LEGACY_POLICY_KEYS = ("threshold", "factor", "gamma", "alg_temp")
"""Former DecodeConfig fields, now policy options; :meth:`DecodeConfig.from_dict` still
reads them (with a deprecation warning) until the next release."""

CACHE_MODES = ("none", "prefix", "dual")


@dataclass
class DecodeConfig:
    """Settings of :func:`demask.decoding.generate`.

    Field docstrings are the CLI's ``--help`` text. For a causal (autoregressive) model only
    ``gen_length``, the token-choice fields, ``cache`` ("none" recomputes the whole sequence
    every step, anything else uses the KV cache), ``early_stop``, ``trace`` and ``seed``
    apply: it always commits one token per step, left to right.
    """

    gen_length: int = 128
    """Completion length L: the number of masked positions appended to each prompt."""
    steps: int | None = None
    """Forward passes for the whole completion, split over the blocks (fixed-budget
    policies). None = gen_length (one token per step). Adaptive policies (threshold, factor,
    entropy-bound, learned) choose how many to commit themselves: leave it None for them."""
    block_length: int | None = None
    """Semi-autoregressive block length BL; must divide gen_length. None = gen_length
    (full diffusion)."""
    policy: str | UnmaskingPolicy = "confidence"
    """Unmasking policy: a registered name (random, confidence, margin, entropy,
    left-to-right, threshold, left-to-right-threshold, factor, entropy-bound), a
    'module.path:Class' reference, or a policy instance (learned)."""
    policy_options: dict[str, Any] = field(default_factory=dict)
    """The policy's own options, e.g. threshold (threshold), factor (factor), gamma
    (entropy-bound), alg_temp (the fixed-budget policies: sample positions from
    softmax(score / alg_temp))."""
    schedule: str = "llada"
    """How a fixed budget is spread over a block's steps: "llada" (equal split) or "dream"
    (linspace timesteps)."""
    temperature: float = 0.0
    """Token temperature; 0 = argmax. With sampling the confidence scores are computed on
    the tempered distribution too, so temperature also changes the order (Dream)."""
    top_p: float = 1.0
    """Nucleus filter applied to the tempered distribution (1 = off)."""
    top_k: int | None = None
    """Keep only the k most likely tokens (None = off)."""
    cache: str = "none"
    """KV caching for block decoding: "none", "prefix" or "dual" (Fast-dLLM), refreshed by
    one full forward at the start of every block. On a block-causal model (block diffusion)
    "prefix" and "dual" are the exact block cache (the same output as "none", faster)."""
    early_stop: bool = True
    """Stop a row once an end token (EOS or pad) is committed with everything before it
    committed; the rest is filled with that end token. The cut completion is unchanged."""
    trace: bool = False
    """Record, per step, the positions committed, their tokens and scores."""
    seed: int | None = None
    """Seed of the generator used when generate() is given none. None: draw a seed from
    torch's global generator (so torch.manual_seed makes a run repeatable)."""

    def __post_init__(self) -> None:
        for name in ("gen_length", "steps", "block_length", "top_k"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        if self.gen_length <= 0:
            raise ValueError(f"gen_length must be positive, got {self.gen_length}")
        if self.block_length is not None and (self.block_length <= 0 or self.gen_length % self.block_length):
            raise ValueError(
                f"block_length={self.block_length} must be positive and divide gen_length="
                f"{self.gen_length}; pick a divisor or leave it unset for full diffusion"
            )
        cls = self.policy_type
        if cls.adaptive:
            if self.steps is not None:
                raise ValueError(
                    f"policy {self.policy_name!r} chooses how many tokens to commit per step, so "
                    f"steps={self.steps} would be ignored; leave steps unset (None)"
                )
        else:
            n_blocks = self.n_blocks
            steps = self.gen_length if self.steps is None else self.steps
            if not n_blocks <= steps <= self.gen_length:
                raise ValueError(
                    f"steps={self.steps} must lie between the number of blocks ({n_blocks}) and "
                    f"gen_length ({self.gen_length}): every block needs a step and a step with "
                    "nothing left to commit is a wasted forward pass"
                )
        schedule_class(self.schedule)  # unknown name -> "did you mean" error
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = argmax), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1] (1 = off), got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None (off), got {self.top_k}")
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache={self.cache!r} is not one of {CACHE_MODES}")
        self.make_policy()  # a policy that cannot be built from these settings says why now

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DecodeConfig:
        """A config from a mapping (a recipe's ``decode:`` block, command-line settings):
        unknown keys are named with the closest field, values of the wrong type refused."""
        from demask.config import from_dict

        return from_dict(cls, values)

    @staticmethod
    def upgrade_keys(values: dict[str, Any], where: str = "") -> dict[str, Any]:
        """Read the former fields threshold, factor, gamma and alg_temp as policy options
        (with a deprecation warning); :func:`demask.config.from_dict` calls this."""
        legacy = {k: values.pop(k) for k in LEGACY_POLICY_KEYS if k in values}
        if legacy:
            spelled = ", ".join(f"{k}: {v}" for k, v in legacy.items())
            warnings.warn(
                f"{where + ': ' if where else ''}decoding option(s) {', '.join(legacy)} are "
                f"policy options now: write policy_options: {{{spelled}}} (the old "
                "spelling goes in the next release)",
                DeprecationWarning,
                stacklevel=3,
            )
            values["policy_options"] = {**legacy, **dict(values.get("policy_options") or {})}
        return values

    def make_policy(self) -> UnmaskingPolicy:
        """The policy instance this config asks for."""
        return make_policy(self.policy, **self.policy_options)

    @property
    def policy_type(self) -> type[UnmaskingPolicy]:
        if isinstance(self.policy, UnmaskingPolicy):
            return type(self.policy)
        return policy_class(self.policy)

    @property
    def policy_name(self) -> str:
        return self.policy if isinstance(self.policy, str) else type(self.policy).name

    @property
    def block_size(self) -> int:
        """The block length in use (gen_length when block_length is None)."""
        return self.gen_length if self.block_length is None else self.block_length

    @property
    def n_blocks(self) -> int:
        return self.gen_length // self.block_size

    def block_steps(self) -> list[int] | None:
        """Steps of each block for fixed-budget policies (None for adaptive ones).

        ``steps // n_blocks`` each, the remainder one each to the first blocks (LLaDA
        requires divisibility; where it holds this is LLaDA's split).
        """
        if self.policy_type.adaptive:
            return None
        steps = self.gen_length if self.steps is None else self.steps
        q, r = divmod(steps, self.n_blocks)
        return [q + (i < r) for i in range(self.n_blocks)]

    def replace(self, **changes: Any) -> DecodeConfig:
        return dataclasses.replace(self, **changes)
