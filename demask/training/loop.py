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

import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from demask.model import ModelConfig, Tokenizer, Transformer, load_model
from demask.training.checkpointing import (
    checkpoint_dir,
    latest_checkpoint,
    load_trainer_state,
    require_unchanged,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from demask.training.config import TrainConfig, lr_at
from demask.training.data import ExampleData
from demask.training.distributed import (
    DistInfo,
    Strategy,
    all_reduce_mean,
    barrier,
    build_strategy,
    init_distributed,
)
from demask.training.interrupt import Interrupt
from demask.training.logs import MetricsLog
from demask.training.objectives import build_objective
from demask.training.order import global_batch_indices, step_generator, steps_per_epoch

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


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (norm weights and biases are not decayed)."""
    decay: list[nn.Parameter] = []
    plain: list[nn.Parameter] = []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else plain).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    # foreach: one kernel per group instead of a Python loop over parameters (also on CPU).
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.adam_eps, foreach=True
    )


def _check_resumable(saved: dict[str, Any], config: TrainConfig, n_examples: int) -> None:
    """Refuse a resume that would replay different data or noise."""
    require_unchanged(saved["config"], config, ("seed", "global_batch_size", "objective"))
    if saved["data"]["n_examples"] != n_examples:
        raise ValueError(
            f"cannot resume: the checkpoint's data set had {saved['data']['n_examples']} "
            f"examples, this one has {n_examples}; the data order would differ"
        )


def start_run(config: TrainConfig, resume: bool, *, refuse_fsdp: str | None = None):
    """What every trainer does first: the process group and strategy, torch threads, and the
    output folder. Returns ``(info, strategy, out, checkpoint)``, the checkpoint to resume
    from (None: a fresh start). A fresh start over an existing run is refused, as is resume
    without an output folder; ``refuse_fsdp``: the error for a trainer that cannot shard."""
    info = init_distributed(config.device)
    if refuse_fsdp is not None and config.distributed == "fsdp":
        raise ValueError(refuse_fsdp)
    strategy = build_strategy(config.distributed, info)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    out = Path(config.out_dir) if config.out_dir else None
    if resume and out is None:
        raise ValueError("resume=True needs train.out_dir (where the checkpoints are)")
    latest = latest_checkpoint(out) if out is not None else None
    if not resume and latest is not None:
        raise ValueError(
            f"{out} already holds checkpoints of a run; resume it (resume=True, --resume) or choose another out_dir"
        )
    return info, strategy, out, latest if resume else None


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
    info, strategy, out, ckpt = start_run(config, resume)
    seed_everything(config.seed)
    objective = build_objective(config.objective, model.config, config.mask_eps, **config.objective_options)
    micro, accum = config.micro_batches(info.world_size)
    per_epoch = steps_per_epoch(len(data), config.global_batch_size)

    start, saved = 0, None
    if ckpt is not None:
        saved = load_trainer_state(ckpt)
        _check_resumable(saved, config, len(data))
        weights = load_model(ckpt, dtype=model.dtype)
        model.load_state_dict(weights.state_dict())
        start = int(saved["step"])
    model.to(info.device)
    model.train()
    wrapped = strategy.wrap(model, info)
    optimizer = make_optimizer(strategy.unwrap(wrapped), config)
    if saved is not None:
        strategy.load_optimizer_state(wrapped, optimizer, saved["optimizer"])
        set_rng_state(saved["rng"])

    log = MetricsLog(
        out / LOG_FILE if out is not None and info.is_main else None, resume_step=start if ckpt is not None else None
    )
    amp = (
        torch.autocast(info.device.type, dtype=torch.bfloat16)
        if config.precision == "bf16"
        else contextlib.nullcontext()
    )
    bar = _progress(config, info, start)
    first_row = info.rank * micro * accum
    window_loss = torch.zeros((), device=info.device)
    window_steps, window_tokens, paused_s = 0, 0, 0.0
    window_t0 = run_t0 = time.perf_counter()
    t_after_first = None
    last_loss, last_ckpt, last_metrics = None, ckpt, {}
    done = start
    interrupt = Interrupt()
    handler = contextlib.ExitStack()
    handler.enter_context(interrupt.installed(enabled=info.world_size == 1))
    try:
        for step in range(start, config.max_steps):
            lr = lr_at(
                step,
                lr=config.lr,
                warmup_steps=config.warmup_steps,
                max_steps=config.max_steps,
                min_lr_ratio=config.min_lr_ratio,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            rows = global_batch_indices(len(data), config.global_batch_size, config.seed, step)  # (G,)
            objective.at_step(step)
            noise = objective.draw_noise(config.global_batch_size, data.width, step_generator(config.seed, step))
            for m in range(accum):
                sl = slice(first_row + m * micro, first_row + (m + 1) * micro)  # this process's rows
                batch = data.batch(rows[sl]).to(info.device)
                with strategy.sync_gradients(wrapped, m == accum - 1):
                    with amp:
                        result = objective(wrapped, batch, {k: v[sl] for k, v in noise.items()})
                    (result.loss / accum).backward()
                window_loss += result.loss.detach() / accum
                window_tokens += batch.n_real_tokens()
            grad_norm = strategy.clip_grad_norm(wrapped, config.grad_clip)  # (), before clipping
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            window_steps += 1
            if t_after_first is None:
                t_after_first = time.perf_counter()

            row: dict[str, float] = {}
            if done % config.log_every == 0 or done == config.max_steps:
                now = time.perf_counter()
                local = torch.stack(
                    [
                        window_loss / window_steps,
                        grad_norm.float().to(info.device),
                        torch.tensor(float(window_tokens), device=info.device),
                    ]
                )
                stats = all_reduce_mean(local, info)  # (loss, grad norm, tokens per process)
                elapsed = now - window_t0 - paused_s  # evaluation and saving excluded
                last_loss = float(stats[0])
                row = {
                    "loss": last_loss,
                    "lr": lr,
                    "grad_norm": float(stats[1]),
                    "tokens_per_s": float(stats[2]) * info.world_size / max(elapsed, 1e-9),
                    "steps_per_s": window_steps / max(elapsed, 1e-9),
                    "elapsed_s": now - run_t0,
                }
                log.write(done, row)
                bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
                window_loss.zero_()
                window_steps, window_tokens, paused_s, window_t0 = 0, 0, 0.0, time.perf_counter()
            t_pause = time.perf_counter()
            stopping = interrupt.requested  # Ctrl-C: save this step, skip the evaluation, stop
            saved_now = out is not None and (_due(done, config.save_every, config.max_steps) or stopping)
            if saved_now:  # before the evaluation, so that an interrupted evaluation loses nothing
                assert out is not None
                data_state = {"n_examples": len(data), "epoch": done // per_epoch, "step_in_epoch": done % per_epoch}
                last_ckpt = save_train_state(
                    out, done, config, wrapped, strategy, optimizer, tokenizer, extra_files, info, {"data": data_state}
                )
            if callbacks and _due(done, config.eval_every, config.max_steps) and not stopping:
                with interrupt.abortable() if saved_now or out is None else contextlib.nullcontext():
                    last_metrics = _evaluate(callbacks, done, wrapped, strategy, info)
                    log.write(done, last_metrics)
                    row = {**row, **last_metrics}
            paused_s += time.perf_counter() - t_pause
            bar.update(1)
            for cb in callbacks:
                cb.on_step_end(done, row)
            if interrupt.requested:
                break
    finally:
        handler.close()
        bar.close()
        for cb in callbacks:
            cb.on_train_end()
    timed = done - start - 1  # steps after the first (which pays for warm-up)
    run_s = time.perf_counter() - (t_after_first or run_t0)
    return TrainResult(
        step=done,
        loss=last_loss,
        checkpoint=last_ckpt,
        log_path=log.path,
        steps_per_s=timed / run_s if timed > 0 and run_s > 0 else 0.0,
        metrics=last_metrics,
        interrupted=interrupt.requested,
    )


def _due(done: int, every: int, max_steps: int) -> bool:
    """Whether a periodic action (every 0 = only at the end) runs after step ``done``."""
    return done == max_steps or (every > 0 and done % every == 0)


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
            out, step, model_config, model_state, trainer_state, tokenizer, extra_files, keep=config.keep_checkpoints
        )
    barrier(info)
    return path or checkpoint_dir(out, step)


class _NoBar:
    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, **kw: Any) -> None: ...

    def close(self) -> None: ...


def _progress(config: TrainConfig, info: DistInfo, start: int):
    if not (config.progress and info.is_main):
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=config.max_steps, initial=start, desc="train", unit="step", dynamic_ncols=True, mininterval=0.5)
