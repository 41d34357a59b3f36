"""What one training run is asked to do: :class:`TrainConfig`.

Field docstrings are the ``demask train`` options' help text; a recipe's ``train:`` block is
this dataclass in YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """Settings of :func:`demask.training.train` (the one loop for every objective)."""

    objective: str = "masked-diffusion"
    """Loss, by registered name: masked-diffusion (ELBO) or autoregressive."""
    objective_options: dict[str, Any] = field(default_factory=dict)
    """The objective's own options, by name (block-diffusion: ``complementary``)."""
    mask_eps: float = 1e-3
    """Smallest mask rate t of the masked-diffusion objective (t ~ U(eps, 1])."""
    max_steps: int = 1000
    """Optimizer updates in the whole run (the cosine schedule ends here)."""
    global_batch_size: int = 32
    """Rows per optimizer update, summed over processes and accumulation micro-batches."""
    micro_batch_size: int | None = None
    """Rows per forward pass on one process; None = the whole per-process batch (no
    accumulation). global_batch_size must be a multiple of micro_batch_size x processes."""
    lr: float = 3e-4
    """Peak learning rate (AdamW)."""
    min_lr_ratio: float = 0.1
    """The cosine decays to lr x min_lr_ratio at max_steps."""
    warmup_steps: int = 100
    """Linear warm-up from 0 to lr over this many steps."""
    weight_decay: float = 0.1
    """AdamW weight decay, applied to matrices only (not norms, biases)."""
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip: float | None = 1.0
    """Clip the global gradient norm to this value; None = no clipping (norm still logged)."""
    precision: str = "fp32"
    """fp32, or bf16 (autocast; weights and optimizer state stay fp32)."""
    seed: int = 0
    """Seeds the data order, the noise of every step and torch's global generator."""
    log_every: int = 10
    """Write a CSV row (and refresh the progress bar) every this many steps."""
    eval_every: int = 0
    """Run the evaluation callbacks every this many steps (0 = only at the end)."""
    save_every: int = 0
    """Write a resumable checkpoint every this many steps (0 = only at the end)."""
    keep_checkpoints: int = 1
    """Checkpoints kept on disk (the newest ones)."""
    out_dir: str | None = None
    """Where checkpoints and train_log.csv go; None = write nothing."""
    distributed: str = "auto"
    """none, ddp, fsdp, or auto (ddp when launched by torchrun with several processes)."""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (the local GPU under torchrun, else cuda if present, else cpu)."""
    num_threads: int | None = None
    """torch intra-op threads on the CPU; None = torch's default."""
    progress: bool = True
    """Show a progress bar on the console (main process only)."""

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.global_batch_size < 1:
            raise ValueError(f"global_batch_size must be at least 1, got {self.global_batch_size}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be at least 1 or null, got {self.micro_batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must lie in [0, max_steps={self.max_steps}]")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or null (off), got {self.grad_clip}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {PRECISIONS}")
        for name in ("log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("eval_every", "save_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = only at the end), got {getattr(self, name)}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be at least 1 or null, got {self.num_threads}")
        # Imported here: the registries import torch-heavy modules.
        from demask.training.distributed import STRATEGIES
        from demask.training.objectives import OBJECTIVES

        OBJECTIVES.get(self.objective)
        anneal = self.objective_options.get("anneal_steps", 0)
        if isinstance(anneal, int) and anneal > self.max_steps:
            raise ValueError(
                f"objective_options.anneal_steps={anneal} is longer than the run (max_steps={self.max_steps}): "
                "attention would never reach the target mask; anneal over fewer steps or raise max_steps"
            )
        if self.distributed != "auto":
            STRATEGIES.get(self.distributed)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def override(self, **changes: Any) -> TrainConfig:
        """A copy with the given fields replaced, None values ignored (command-line options
        that were not given). A shorter max_steps than the warm-up (a short run of a long
        recipe) also shortens the warm-up to a tenth of the run unless it is given too."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        max_steps = changes.get("max_steps", self.max_steps)
        if "warmup_steps" not in changes and self.warmup_steps > max_steps:
            changes["warmup_steps"] = max_steps // 10
        return dataclasses.replace(self, **changes)

    def micro_batches(self, world_size: int) -> tuple[int, int]:
        """(rows per micro-batch, micro-batches per step) on each of ``world_size`` processes."""
        if self.global_batch_size % world_size:
            raise ValueError(
                f"global_batch_size={self.global_batch_size} is not divisible by the "
                f"{world_size} processes; pick a multiple of {world_size}"
            )
        local = self.global_batch_size // world_size
        micro = self.micro_batch_size or local
        if local % micro:
            raise ValueError(
                f"each of {world_size} processes gets {local} rows per step, not a multiple of "
                f"micro_batch_size={micro}; pick a divisor of {local}"
            )
        return micro, local // micro


def lr_at(step: int, *, lr: float, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Learning rate of update ``step`` (0-based): linear warm-up, then cosine to lr x min_lr_ratio.

    >>> lr_at(0, lr=1.0, warmup_steps=4, max_steps=10, min_lr_ratio=0.0)
    0.25
    >>> lr_at(9, lr=1.0, warmup_steps=0, max_steps=10, min_lr_ratio=0.1)
    0.1
    """
    import math

    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, max_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)
