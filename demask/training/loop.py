"""The one training loop, for every objective: :func:`train`.

One step = one AdamW update on ``global_batch_size`` rows, split over processes and
micro-batches (gradient accumulation). Per step the loop:

1. sets the learning rate from the schedule (linear warm-up, cosine decay: a pure
   function of the step, so the "scheduler state" is the step);
2. takes the step's rows and noise, both functions of (seed, step)
   (:mod:`demask.training.order`); each process keeps its slice of the global batch;
3. per micro-batch: forward under autocast when bf16, the objective's loss / number of
   micro-batches, backward (gradients are synchronised only after the last one);
4. clips the global gradient norm, steps the optimizer;
5. every ``log_every`` steps: a CSV row and the progress bar; every ``save_every`` steps
   a checkpoint, then every ``eval_every`` steps the callbacks' ``on_evaluate`` (the save
   comes first, so an evaluation cut short loses no training).

Ctrl-C (one process): the step in progress finishes, a checkpoint is written and the run
ends with ``TrainResult.interrupted`` (demask.training.interrupt).

Resume: the model weights, optimizer state and global RNG states come back from the
newest checkpoint, and since rows and noise are functions of the step, an interrupted
and resumed run ends with the same parameters (bit for bit on the CPU) as an
uninterrupted one.

Not covered: changing the global batch size or the data set on resume (refused),
early stopping on a metric, exponential moving averages of the weights, torch.compile.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from demask.model import ModelConfig, Tokenizer, Transformer
from demask.training.checkpointing import checkpoint_dir, require_unchanged, rng_state, save_checkpoint
from demask.training.config import TrainConfig
from demask.training.data import ExampleData
from demask.training.distributed import DistInfo, Strategy, barrier
from demask.training.objectives import build_objective
from demask.training.order import global_batch_indices, step_generator, steps_per_epoch
from demask.training.updates import UpdateLoop, make_optimizer, reduce_metrics, start_run

__all__ = ["Callback", "TrainResult", "make_optimizer", "save_train_state", "start_run", "train"]

LOG_FILE = "train_log.csv"


class Callback:
    """Hooks into :func:`train`; override the ones you need.

    ``on_evaluate`` runs with the model in eval mode under ``torch.no_grad()`` on every
    process (under FSDP the forward pass is collective); the metrics the main process
    returns are logged as ``eval/<name>`` columns.
    """

    def on_evaluate(self, step: int, model: nn.Module, info: DistInfo) -> dict[str, float]:
        return {}

    def on_step_end(self, step: int, metrics: dict[str, float]) -> None:
        """After step ``step`` (1-based count of updates) is done, logged and saved;
        ``metrics`` holds what was logged at this step (often nothing). Raising here stops
        the run (as a kill would, minus the unsaved steps)."""

    def on_train_end(self) -> None:
        """When :func:`train` returns or raises (release sandboxes, files)."""


@dataclass
class TrainResult:
    step: int
    """Updates done (max_steps unless a callback stopped the run)."""
    loss: float | None
    """Mean loss of the last logged window."""
    checkpoint: Path | None
    """The newest checkpoint written, if any."""
    log_path: Path | None
    steps_per_s: float
    """Updates per second over this call, first step excluded (warm-up)."""
    metrics: dict[str, float]
    """The last evaluation's metrics."""
    interrupted: bool = False
    """Stopped early by Ctrl-C (after saving a checkpoint of the last finished step)."""


def _check_resumable(saved: dict[str, Any], config: TrainConfig, n_examples: int) -> None:
    """Refuse a resume that would replay different data or noise."""
    require_unchanged(saved["config"], config, ("seed", "global_batch_size", "objective"))
    if saved["data"]["n_examples"] != n_examples:
        raise ValueError(
            f"cannot resume: the checkpoint's data set had {saved['data']['n_examples']} "
            f"examples, this one has {n_examples}; the data order would differ"
        )


def train(
    config: TrainConfig,
    model: Transformer,
    data: ExampleData,
    *,
    tokenizer: Tokenizer | None = None,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    extra_files: dict[str, str] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with ``config.objective``; see the module docstring.

    tokenizer / extra_files: written into every checkpoint (e.g. the recipe as YAML).
    resume: continue from the newest checkpoint in ``config.out_dir`` (a fresh start if
        there is none).
    """
    objective = build_objective(config.objective, model.config, config.mask_eps, **config.objective_options)
    loop = UpdateLoop(
        config,
        model,
        log_name=LOG_FILE,
        tokenizer=tokenizer,
        callbacks=callbacks,
        resume=resume,
        extra_files=extra_files,
        check_resume=lambda saved: _check_resumable(saved, config, len(data)),
    )
    info = loop.info
    micro, accum = config.micro_batches(info.world_size)
    per_epoch = steps_per_epoch(len(data), config.global_batch_size)
    first_row = info.rank * micro * accum
    window_loss = torch.zeros((), device=info.device)
    window_tokens = 0
    last_loss: float | None = None
    with loop:
        for step in range(loop.start, config.max_steps):
            rows = global_batch_indices(len(data), config.global_batch_size, config.seed, step)  # (G,)
            objective.at_step(step)
            noise = objective.draw_noise(config.global_batch_size, data.width, step_generator(config.seed, step))

            def accumulate(rows: torch.Tensor = rows, noise: dict[str, torch.Tensor] = noise) -> None:
                nonlocal window_loss, window_tokens
                for m in range(accum):
                    sl = slice(first_row + m * micro, first_row + (m + 1) * micro)  # this process's rows
                    batch = data.batch(rows[sl]).to(info.device)
                    with loop.strategy.sync_gradients(loop.wrapped, m == accum - 1):
                        with loop.amp:
                            result = objective(loop.wrapped, batch, {k: v[sl] for k, v in noise.items()})
                        (result.loss / accum).backward()
                    window_loss += result.loss.detach() / accum
                    window_tokens += batch.n_real_tokens()

            grad_norm = loop.update(accumulate)

            def metrics(grad_norm: torch.Tensor = grad_norm) -> dict[str, float]:
                nonlocal last_loss, window_tokens
                seconds, updates = loop.window_seconds(), loop.window_updates
                stats = reduce_metrics(
                    {
                        "loss": float(window_loss) / updates,
                        "grad_norm": float(grad_norm),
                        "tokens": float(window_tokens),
                    },
                    info,
                )
                window_loss.zero_()
                window_tokens = 0
                last_loss = stats["loss"]
                loop.bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{loop.lr:.2e}", refresh=False)
                return {
                    "loss": last_loss,
                    "lr": loop.lr,
                    "grad_norm": stats["grad_norm"],
                    "tokens_per_s": stats["tokens"] * info.world_size / seconds,
                    "steps_per_s": updates / seconds,
                    "elapsed_s": loop.elapsed(),
                }

            done = step + 1
            state = {"data": {"n_examples": len(data), "epoch": done // per_epoch, "step_in_epoch": done % per_epoch}}
            loop.end_unit(step, metrics, functools.partial(dict, state))
            if loop.stopping:
                break
    return TrainResult(
        step=loop.done,
        loss=last_loss,
        checkpoint=loop.last_checkpoint,
        log_path=loop.log.path,
        steps_per_s=loop.steps_per_s(),
        metrics=loop.eval_metrics,
        interrupted=loop.interrupted,
    )


def _evaluate(
    callbacks: Sequence[Callback], step: int, wrapped: nn.Module, strategy: Strategy, info: DistInfo
) -> dict[str, float]:
    model = strategy.unwrap(wrapped)
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    with torch.no_grad():
        for cb in callbacks:
            for key, value in cb.on_evaluate(step, model, info).items():
                metrics[key if key.startswith("eval/") else f"eval/{key}"] = float(value)
    model.train(was_training)
    barrier(info)
    return metrics


def save_train_state(
    out: Path,
    step: int,
    config: TrainConfig,
    wrapped: nn.Module,
    strategy: Strategy,
    optimizer: torch.optim.Optimizer,
    tokenizer: Tokenizer | None,
    extra_files: dict[str, str] | None,
    info: DistInfo,
    extra_state: dict[str, Any],
    write_weights: Any = None,
) -> Path:
    """Write checkpoint ``step`` (model, optimizer, schedule, RNG, config) on every rank's
    behalf; ``extra_state`` holds what a trainer needs to resume its data order (and, for
    GRPO, its reference model). Collective: every rank must call it."""
    model_state = strategy.model_state(wrapped)  # collective
    optimizer_state = strategy.optimizer_state(wrapped, optimizer)  # collective
    path = None
    if info.is_main:
        trainer_state = {
            "step": step,
            "optimizer": optimizer_state,
            "scheduler": {
                "kind": "warmup-cosine",
                "lr": config.lr,
                "warmup_steps": config.warmup_steps,
                "max_steps": config.max_steps,
                "min_lr_ratio": config.min_lr_ratio,
            },
            "rng": rng_state(),
            "config": asdict(config),
            "world_size": info.world_size,
            **extra_state,
        }
        model_config = cast(ModelConfig, strategy.unwrap(wrapped).config)  # trainers wrap a Transformer
        path = save_checkpoint(
            out,
            step,
            model_config,
            model_state,
            trainer_state,
            tokenizer,
            extra_files,
            keep=config.keep_checkpoints,
            write_weights=write_weights,
        )
    barrier(info)
    return path or checkpoint_dir(out, step)
