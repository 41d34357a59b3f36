"""Evaluation callbacks for the training loop.

- :class:`HeldOutLoss`: the training objective on held-out rows with fixed noise (the same
  rows and noise at every evaluation, so the curve is comparable across steps); needs
  nothing but the model.
- :class:`PassAtKEval`: decode held-out tasks with :func:`demask.decoding.generate`, run them
  in the sandbox and report pass@1 and the mean test pass rate through
  :func:`demask.evaluation.evaluate`; each evaluation's samples go to
  ``<out_dir>/step-NNNNNNN/`` (resumable and inspectable like any evaluation).

Not covered: evaluating under FSDP with PassAtKEval (it decodes on the main process only,
while a sharded forward needs every process), early stopping on a metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from demask.model import ModelConfig, Tokenizer
from demask.tasks.base import Task
from demask.training.data import ExampleData
from demask.training.distributed import DistInfo
from demask.training.loop import Callback
from demask.training.objectives import build_objective
from demask.training.order import step_generator


class HeldOutLoss(Callback):
    """Mean loss of ``objective`` over the first ``max_rows`` rows of ``data``."""

    def __init__(
        self,
        data: ExampleData,
        objective: str,
        *,
        mask_eps: float = 1e-3,
        max_rows: int | None = None,
        batch_size: int = 64,
        seed: int = 0,
        name: str = "heldout_loss",
        objective_options: dict[str, Any] | None = None,
    ) -> None:
        self.data, self.objective, self.mask_eps = data, objective, mask_eps
        self.objective_options = dict(objective_options or {})
        self.rows = min(len(data), max_rows or len(data))
        self.batch_size, self.seed, self.name = batch_size, seed, name

    def on_evaluate(self, step: int, model: nn.Module, info: DistInfo) -> dict[str, float]:
        config = cast(ModelConfig, model.config)  # nn.Module types attributes as Tensor | Module
        objective = build_objective(self.objective, config, self.mask_eps, **self.objective_options)
        objective.at_step(step)
        noise = objective.draw_noise(self.rows, self.data.width, step_generator(self.seed, 0))
        device = next(model.parameters()).device
        total = 0.0
        for start in range(0, self.rows, self.batch_size):
            sl = slice(start, min(self.rows, start + self.batch_size))
            batch = self.data.batch(torch.arange(sl.start, sl.stop)).to(device)
            out = objective(model, batch, {k: v[sl] for k, v in noise.items()})
            total += float(out.per_row.sum())
        return {self.name: total / self.rows}


class PassAtKEval(Callback):
    """pass@1 (and the mean pass rate) of ``tasks`` decoded with ``decode_config``."""

    def __init__(
        self,
        tasks: Sequence[Task],
        tokenizer: Tokenizer,
        decode_config: Any,
        out_dir: str | Path,
        *,
        n_samples: int = 1,
        batch_size: int = 32,
        seed: int = 0,
        timeout_s: float = 3.0,
        workers: int | None = None,
        name: str = "pass",
    ) -> None:
        if not tasks:
            raise ValueError("PassAtKEval needs at least one task")
        self.tasks, self.tokenizer, self.decode_config = list(tasks), tokenizer, decode_config
        self.out_dir = Path(out_dir)
        self.n_samples, self.batch_size, self.seed = n_samples, batch_size, seed
        self.timeout_s, self.workers, self.name = timeout_s, workers, name
        self._sandbox = None

    def _sandbox_pool(self):
        if self._sandbox is None:
            from demask.execution import Sandbox, SandboxConfig

            self._sandbox = Sandbox(SandboxConfig.pool(self.timeout_s, self.workers))
        return self._sandbox

    def on_evaluate(self, step: int, model: nn.Module, info: DistInfo) -> dict[str, float]:
        if not info.is_main:
            return {}
        if type(model).__name__.startswith("FSDP"):
            raise ValueError(
                "PassAtKEval cannot decode a sharded (FSDP) model on one process; "
                "disable eval (eval.enabled: false) and evaluate the saved checkpoint"
            )
        from dataclasses import asdict

        from demask.evaluation import evaluate
        from demask.evaluation.sampler import decoding_sampler

        sampler = decoding_sampler(model, self.tokenizer, self.decode_config)
        results = evaluate(
            self.tasks,
            sampler,
            self.n_samples,
            self.out_dir / f"step-{step:07d}",
            self._sandbox_pool(),
            seed=self.seed,
            batch_size=self.batch_size,
            timeout_s=self.timeout_s,
            ks=(1,),
            progress=False,
            run_info={"step": step, "decode": _jsonable(asdict(self.decode_config))},
        )
        out = {f"{self.name}@1": float(results["pass_at_k"].get("pass@1", float("nan")))}
        if results.get("pass_rate_mean") is not None:
            out[f"{self.name}_rate"] = float(results["pass_rate_mean"])
        return out

    def on_train_end(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
