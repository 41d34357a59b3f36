"""`demask grpo`: post-train a model with coupled-GRPO (or a baseline estimator) from a recipe.

    demask grpo --recipe recipes/tinycode/coupled_grpo.yaml [--out DIR] [--max-steps N]
                [--estimator NAME] [--seed S] [--max-seconds T] [--resume]
                [--set grpo.advantage=loo_positive --set training.lr=1e-4 ...]
    torchrun --nproc_per_node 2 -m demask.cli.main grpo --recipe ...

The command only parses and prints: the work is
:func:`demask.training.rl.grpo.run_grpo_recipe`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def grpo_command(
    recipe: Path = typer.Option(..., "--recipe", exists=True, dir_okay=False,
                                help="The GRPO recipe YAML file."),
    out: Optional[str] = typer.Option(None, "--out", help="Output directory (checkpoints, "
                                      "grpo_log.csv); overrides train.out_dir."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Optimizer updates (a "
                                            "multiple of grpo.inner_iterations); overrides "
                                            "train.max_steps."),
    estimator: Optional[str] = typer.Option(None, "--estimator", help="Log-prob estimator: coupled, "
                                            "decoupled, full_mask, d1, autoregressive; overrides "
                                            "grpo.estimator (and clears its options)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Overrides train.seed (prompts, "
                                       "rollouts, masks)."),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="Stop after the first "
                                                "round past this wall time (saved as a last "
                                                "round); overrides grpo.max_seconds."),
    settings: Optional[list[str]] = typer.Option(None, "--set", help="Any recipe field, "
                                                 "KEY=VALUE with a dotted KEY (repeatable), "
                                                 "e.g. --set grpo.loss_tokens=all --set "
                                                 "training.lr=1e-4; applied before the options "
                                                 "above."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in "
                                "the output directory (a fresh start if none)."),
    plot: bool = typer.Option(False, "--plot", help="Write grpo_log.png at the end (matplotlib)."),
) -> None:
    """Post-train a checkpoint with GRPO and test-execution rewards (see docs/grpo.md)."""
    from demask.training.logs import plot_log
    from demask.training.rl.grpo import (
        load_grpo_recipe,
        override_grpo_recipe,
        run_grpo_recipe,
        set_recipe_fields,
    )

    try:
        loaded = set_recipe_fields(load_grpo_recipe(recipe), settings or [])
        loaded = override_grpo_recipe(loaded, out_dir=out, max_steps=max_steps,
                                      estimator=estimator, seed=seed, max_seconds=max_seconds)
        result = run_grpo_recipe(loaded, resume=resume, log=typer.echo)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        _shutdown()
    m = result.metrics
    typer.echo(f"done: {result.step} updates in {result.seconds:.0f} s; last round: reward "
               f"{m.get('reward_mean', float('nan')):.3f}, pass rate {m.get('pass_rate', float('nan')):.3f}, "
               f"kl {m.get('kl', float('nan')):.4f}")
    for key, value in result.eval_metrics.items():
        typer.echo(f"  {key} = {value:.4f}")
    if result.checkpoint is not None:
        typer.echo(f"checkpoint: {result.checkpoint}")
    if plot and result.log_path is not None:
        cols = ("reward_mean", "pass_rate", "loss", "kl", "clip_fraction", "nfe_mean")
        typer.echo(f"plot: {plot_log(result.log_path, result.log_path.with_suffix('.png'), cols)}")


def _shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def register(app: typer.Typer) -> None:
    app.command("grpo")(grpo_command)
