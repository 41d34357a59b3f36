"""The update skeleton every trainer shares: :class:`UpdateLoop`.

SFT (:func:`demask.training.loop.train`), GRPO (:func:`demask.training.rl.grpo.train_grpo`)
and the offline ranking trainers (:func:`demask.training.posttrain.train_ranked`) differ in
what one update computes; everything around it lives here, once:

- the start of a run (:func:`start_run`): the process group and strategy, torch threads,
  the output folder, a fresh start over an old run refused;
- resume: the newest checkpoint's weights, optimizer state and global RNG state (the
  trainer checks the saved settings first, through ``check_resume``, and reads its own
  extra state from :attr:`UpdateLoop.saved`);
- the DDP/FSDP wrap, the optimizer (:func:`make_optimizer`), bf16 autocast (:attr:`amp`);
- one update (:meth:`UpdateLoop.update`): the learning rate from the schedule (a function
  of the update count), the trainer's forward/backward passes, gradient clipping, the
  optimizer step, the progress bar;
- the cadence (:meth:`UpdateLoop.end_unit`), after each *unit* of updates (a step for SFT,
  a round of ``mu`` updates for GRPO): a CSV row when a multiple of ``log_every`` is crossed,
  then a checkpoint (``save_every``), then the evaluation callbacks (``eval_every``); the
  save comes before the evaluation, so an evaluation cut short loses no training;
- stopping: Ctrl-C (one process) finishes the unit, saves it and stops
  (:attr:`UpdateLoop.interrupted`); ``max_seconds`` stops after the first unit that ends
  past the budget, logged, saved and evaluated as a last unit (every process stops after the
  same unit).

A trainer is then a loop over its units::

    with UpdateLoop(train, model, log_name="x_log.csv", ...) as loop:
        for unit in range(loop.start // k, train.max_steps // k):
            prev = loop.done
            for _ in range(k):
                loop.update(lambda: backward_passes(loop.wrapped))
            loop.end_unit(prev, metrics=lambda: {...}, extra_state=lambda: {...})
            if loop.stopping:
                break

Not covered: learning-rate schedules other than warm-up + cosine, optimizers other than
AdamW, early stopping on a metric.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from demask.training.checkpointing import (
    latest_checkpoint,
    load_trainer_state,
    seed_everything,
    set_rng_state,
)
from demask.training.config import TrainConfig, lr_at
from demask.training.distributed import DistInfo, all_reduce_mean, build_strategy, init_distributed
from demask.training.interrupt import Interrupt
from demask.training.logs import MetricsLog


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


def crossed(prev: int, done: int, every: int, last: int) -> bool:
    """Whether updates (prev, done] reach ``last`` or a multiple of ``every`` (0: only the end).

    >>> crossed(3, 5, 4, 100), crossed(4, 6, 4, 100), crossed(4, 6, 0, 6)
    (True, False, True)
    """
    return done == last or (every > 0 and done // every > prev // every)


def reduce_metrics(values: Mapping[str, float], info: DistInfo) -> dict[str, float]:
    """The mean of each named value over the processes (one collective call, in key order)."""
    if info.world_size == 1:
        return {k: float(v) for k, v in values.items()}
    keys = list(values)
    local = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=info.device)
    return dict(zip(keys, all_reduce_mean(local, info).cpu().tolist()))


class _NoBar:
    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, **kw: Any) -> None: ...

    def close(self) -> None: ...


def progress(config: TrainConfig, info: DistInfo, start: int, desc: str = "train"):
    """A tqdm bar over ``config.max_steps`` updates on the main process (a no-op otherwise)."""
    if not (config.progress and info.is_main):
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=config.max_steps, initial=start, desc=desc, unit="step", dynamic_ncols=True, mininterval=0.5)


class WeightsIO(Protocol):
    """How a model that is not a Transformer goes into and out of a checkpoint folder."""

    def write(self, path: Path, state: dict[str, torch.Tensor]) -> None:
        """Write ``state`` (and a config.json) into the checkpoint folder ``path``."""

    def load(self, path: Path, model: nn.Module) -> None:
        """Load the weights of checkpoint ``path`` into ``model``."""


class UpdateLoop:
    """The shared skeleton (module docstring). Use as a context manager: leaving it closes the
    progress bar and the Ctrl-C handler and calls every callback's ``on_train_end``.

    train: the optimizer, schedule, seed, cadence, output folder and precision.
    model: the model to update (a Transformer or any module with ``.config``).
    log_name: the CSV log's file name inside ``train.out_dir``.
    tokenizer, extra_files: written into every checkpoint.
    check_resume: called with the saved trainer state before anything is loaded; raises when
        the run cannot continue it (another seed, data set, batch size ...).
    max_seconds: stop after the first unit that ends past this many seconds of this call.
    max_updates: stop after the first unit that ends at or past this many updates (the
        learning-rate schedule still spans ``train.max_steps``): a budget in updates that,
        unlike ``max_seconds``, does not depend on how busy the machine is.
    weights: checkpoint reading and writing for a model that is not a Transformer.
    """

    def __init__(
        self,
        train: TrainConfig,
        model: nn.Module,
        *,
        log_name: str,
        tokenizer: Any = None,
        callbacks: Sequence[Any] = (),
        resume: bool = False,
        extra_files: dict[str, str] | None = None,
        refuse_fsdp: str | None = None,
        check_resume: Callable[[dict[str, Any]], None] | None = None,
        max_seconds: float | None = None,
        max_updates: int | None = None,
        desc: str = "train",
        weights: WeightsIO | None = None,
    ) -> None:
        if getattr(model, "quantized", None):
            raise ValueError(
                f"the model was loaded as {model.quantized} for inference; its quantized layers cannot be trained: "
                "load it in float32 or bfloat16 (dtype in the recipe)"
            )
        self.train, self.model, self.tokenizer = train, model, tokenizer
        self.callbacks, self.extra_files, self.max_seconds = list(callbacks), extra_files, max_seconds
        self.weights, self.max_updates = weights, max_updates
        self.info, self.strategy, self.out, checkpoint = start_run(train, resume, refuse_fsdp=refuse_fsdp)
        seed_everything(train.seed)
        self.saved: dict[str, Any] | None = None
        """The trainer state of the checkpoint resumed from (None: a fresh start)."""
        self.start = 0
        """Updates done before this call."""
        if checkpoint is not None:
            from demask.model import load_model

            self.saved = load_trainer_state(checkpoint)
            if check_resume is not None:
                check_resume(self.saved)
            if weights is not None:
                weights.load(checkpoint, model)
            else:
                dtype = next(model.parameters()).dtype
                model.load_state_dict(load_model(checkpoint, dtype=dtype).state_dict())
            self.start = int(self.saved["step"])
        model.to(self.info.device)
        model.train()
        self.wrapped = self.strategy.wrap(model, self.info)
        if self.wrapped is not model:
            self.wrapped.config = model.config  # log-prob estimators read the model's config
        self.optimizer = make_optimizer(self.strategy.unwrap(self.wrapped), train)
        if self.saved is not None:
            self.strategy.load_optimizer_state(self.wrapped, self.optimizer, self.saved["optimizer"])
            set_rng_state(self.saved["rng"])
        main = self.out is not None and self.info.is_main
        self.log = MetricsLog(
            self.out / log_name if main and self.out is not None else None,
            resume_step=self.start if checkpoint is not None else None,
        )
        self.amp = (
            torch.autocast(self.info.device.type, dtype=torch.bfloat16)
            if train.precision == "bf16"
            else contextlib.nullcontext()
        )
        self.bar: Any = _NoBar()  # the real bar, the Ctrl-C handler: on entering the context
        self._desc = desc
        self.done = self.start
        """Updates done so far."""
        self.lr = train.lr
        """The learning rate of the last update."""
        self.last_checkpoint: Path | None = checkpoint
        self.last_row: dict[str, float] = {}
        self.eval_metrics: dict[str, float] = {}
        self.stopping = False
        """True after the unit that must be the last (Ctrl-C or the time budget)."""
        self.stopped_on_time = False
        self.run_t0 = time.perf_counter()
        self.window_t0, self.window_updates, self.paused_s = self.run_t0, 0, 0.0
        self.first_update_t: float | None = None
        self._interrupt = Interrupt()
        self._handler = contextlib.ExitStack()

    # ------------------------------------------------------------------ context
    def __enter__(self) -> UpdateLoop:
        """Start the progress bar and handle Ctrl-C as a stop request (until the context ends)."""
        self.bar = progress(self.train, self.info, self.start, self._desc)
        self._handler.enter_context(self._interrupt.installed(enabled=self.info.world_size == 1))
        self.run_t0 = self.window_t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._handler.close()
        self.bar.close()
        callbacks, self.callbacks = self.callbacks, []
        for cb in callbacks:
            cb.on_train_end()

    @property
    def interrupted(self) -> bool:
        return self._interrupt.requested

    @property
    def device(self) -> torch.device:
        return self.info.device

    def elapsed(self) -> float:
        """Seconds since the loop started."""
        return time.perf_counter() - self.run_t0

    def window_seconds(self) -> float:
        """Seconds of updates since the last log row (saving and evaluation excluded)."""
        return max(time.perf_counter() - self.window_t0 - self.paused_s, 1e-9)

    # ------------------------------------------------------------------ one update
    def update(self, accumulate: Callable[[], Any]) -> torch.Tensor:
        """One optimizer update numbered :attr:`done`: set the learning rate from the schedule,
        run ``accumulate()`` (the forward/backward passes, under ``strategy.sync_gradients``
        for the last micro-batch), clip, step, zero the gradients. Returns the gradient norm
        before clipping."""
        t = self.train
        self.lr = lr_at(
            self.done, lr=t.lr, warmup_steps=t.warmup_steps, max_steps=t.max_steps, min_lr_ratio=t.min_lr_ratio
        )
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        accumulate()
        grad_norm = self.strategy.clip_grad_norm(self.wrapped, t.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.done += 1
        self.window_updates += 1
        if self.first_update_t is None:
            self.first_update_t = time.perf_counter()
        self.bar.update(1)
        return grad_norm

    def steps_per_s(self) -> float:
        """Updates per second over this call, the first update excluded (warm-up)."""
        timed = self.done - self.start - 1
        seconds = time.perf_counter() - (self.first_update_t or self.run_t0)
        return timed / seconds if timed > 0 and seconds > 0 else 0.0

    def _save(self, extra_state: Callable[[], dict[str, Any]] | None) -> None:
        from demask.training.loop import save_train_state

        assert self.out is not None
        self.last_checkpoint = save_train_state(
            self.out,
            self.done,
            self.train,
            self.wrapped,
            self.strategy,
            self.optimizer,
            self.tokenizer,
            self.extra_files,
            self.info,
            extra_state() if extra_state is not None else {},
            write_weights=self.weights.write if self.weights is not None else None,
        )

    # ------------------------------------------------------------------ cadence
    def end_unit(
        self,
        prev: int,
        metrics: Callable[[], dict[str, float]] | None = None,
        extra_state: Callable[[], dict[str, Any]] | None = None,
        log_line: Callable[[str], None] | None = None,
    ) -> dict[str, float]:
        """After updates (prev, done]: decide whether this is the last unit, then log
        (``metrics()`` is called, on every process, only when a row is due), save (with
        ``extra_state()`` in the trainer state), evaluate, and call each callback's
        ``on_step_end``. Returns the row written (log and evaluation columns; often empty)."""
        t, info = self.train, self.info
        over = self.max_seconds is not None and self.elapsed() > self.max_seconds
        if info.world_size > 1 and self.max_seconds is not None:  # every process stops after the same unit
            over = bool(all_reduce_mean(torch.tensor([float(over)], device=info.device), info)[0] > 0)
        self.stopped_on_time = over
        enough = self.max_updates is not None and self.done >= self.max_updates
        stopping = over or enough or self._interrupt.requested
        last = self.done if stopping else t.max_steps
        row: dict[str, float] = {}
        if metrics is not None and crossed(prev, self.done, t.log_every, last):
            row = metrics()
            self.log.write(self.done, row)
            self.last_row = row
            self.window_t0, self.window_updates, self.paused_s = time.perf_counter(), 0, 0.0
        t_pause = time.perf_counter()
        saved_now = self.out is not None and crossed(prev, self.done, t.save_every, last)
        if saved_now:
            self._save(extra_state)
        if self.callbacks and crossed(prev, self.done, t.eval_every, last) and not self._interrupt.requested:
            from demask.training.loop import _evaluate

            abortable = self._interrupt.abortable() if saved_now or self.out is None else contextlib.nullcontext()
            with abortable:
                self.eval_metrics = _evaluate(self.callbacks, self.done, self.wrapped, self.strategy, info)
                self.log.write(self.done, self.eval_metrics)
                row = {**row, **self.eval_metrics}
                if log_line is not None and info.is_main:
                    log_line(f"step {self.done}: " + ", ".join(f"{k} {v:.4f}" for k, v in self.eval_metrics.items()))
        if self._interrupt.requested and not saved_now and self.out is not None:
            # Ctrl-C came during the log, the save or an evaluation: this unit is saved all the same
            self._save(extra_state)
        self.paused_s += time.perf_counter() - t_pause
        for cb in self.callbacks:
            cb.on_step_end(self.done, row)
        self.stopping = stopping or self._interrupt.requested
        if over and log_line is not None and info.is_main:
            log_line(f"stopping after {self.done} updates: max_seconds={self.max_seconds} reached")
        elif enough and log_line is not None and info.is_main:
            log_line(f"stopping after {self.done} updates: max_updates={self.max_updates} reached")
        return row
