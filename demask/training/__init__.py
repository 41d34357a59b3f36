"""Training: objectives (masked-diffusion ELBO, next token), the one training loop
(distributed, checkpoints, resume), data, recipes. ``rl/`` holds the RL algorithms.

Names are imported on first use (PEP 562), so ``import demask.training.config`` (the CLI
reads its fields for ``--help``) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "lr_at": "config",
    "Batch": "data",
    "SFTData": "data",
    "SFTExample": "data",
    "TokenChunks": "data",
    "chunk_documents": "data",
    "make_sft_example": "data",
    "autoregressive_log_likelihood": "likelihood",
    "elbo_log_likelihood": "likelihood",
    "MetricsLog": "logs",
    "plot_log": "logs",
    "read_log": "logs",
    "Callback": "loop",
    "TrainResult": "loop",
    "train": "loop",
    "OBJECTIVES": "objectives",
    "LossOutput": "objectives",
    "Objective": "objectives",
    "autoregressive_loss": "objectives",
    "build_objective": "objectives",
    "masked_diffusion_loss": "objectives",
    "HeldOutLoss": "callbacks",
    "PassAtKEval": "callbacks",
    "TrainRecipe": "recipe",
    "load_recipe": "recipe",
    "dump_recipe": "recipe",
    "run_recipe": "run",
    "prepare": "run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'demask.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"demask.training.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
