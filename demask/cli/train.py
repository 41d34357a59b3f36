"""`demask train`: run a training recipe.

    demask train --recipe recipes/tinycode/sft.yaml [--out DIR] [--max-steps N] [--resume]
                 [--set model.config.num_layers=2 --set data.options.n_train=1000 ...]
    torchrun --nproc_per_node 2 -m demask.cli.main train --recipe ... --distributed ddp

Every simple field of the recipe's ``train:`` block (TrainConfig) is also an option (``--lr``,
``--global-batch-size``, ``--precision`` ...) whose help is the field's docstring; ``--set``
reaches any field of the recipe. The command only parses and prints: the work is
:func:`demask.training.run.run_recipe`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from demask.cli.options import command, config_flags
from demask.training.recipe import TrainRecipe

FLAGS = config_flags(TrainRecipe, flatten=["train"], skip=["out_dir"], from_file=True)


def train_command(
    given: dict[tuple[str, ...], Any], settings: list[str], recipe: Path, out: str | None, resume: bool, plot: bool
) -> None:
    """Train a model from a recipe (see docs/training.md)."""
    from demask.training.logs import plot_log
    from demask.training.recipe import load_recipe
    from demask.training.run import apply_overrides, run_recipe

    train_fields = {path[-1]: value for path, value in given.items()}
    loaded = apply_overrides(load_recipe(recipe, settings), out_dir=out, **train_fields)
    try:
        result = run_recipe(loaded, resume=resume, log=typer.echo)
    finally:
        shutdown_distributed()
    typer.echo(
        f"done: {result.step} steps, loss {result.loss if result.loss is not None else 'n/a'}, "
        f"{result.steps_per_s:.2f} steps/s"
    )
    for key, value in result.metrics.items():
        typer.echo(f"  {key} = {value:.4f}")
    if result.checkpoint is not None:
        typer.echo(f"checkpoint: {result.checkpoint}")
    if plot and result.log_path is not None:
        typer.echo(f"plot: {plot_log(result.log_path, result.log_path.with_suffix('.png'))}")
    if result.interrupted:
        where = "; continue with the same command plus --resume" if result.checkpoint is not None else ""
        typer.echo(f"interrupted after step {result.step}{where}", err=True)
        raise typer.Exit(130)


def shutdown_distributed() -> None:
    """Leave torch.distributed's process group, if a run joined one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_options(what: str, log_file: str) -> list[inspect.Parameter]:
    """``--recipe``, ``--out``, ``--resume`` and ``--plot``: the options of a recipe command."""

    def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)

    return [
        option("recipe", Path, typer.Option(..., "--recipe", help=f"The {what} recipe YAML file.")),
        option(
            "out",
            str | None,
            typer.Option(None, "--out", help=f"Output directory (checkpoints, {log_file}); overrides train.out_dir."),
        ),
        option(
            "resume",
            bool,
            typer.Option(
                False,
                "--resume",
                help="Continue from the newest checkpoint in the output directory (a fresh start if none).",
            ),
        ),
        option(
            "plot",
            bool,
            typer.Option(
                False, "--plot", help=f"Write {log_file.replace('.csv', '.png')} at the end (needs matplotlib)."
            ),
        ),
    ]


def register(app: typer.Typer) -> None:
    app.command("train")(
        command(train_command, FLAGS, run_options("training", "train_log.csv"), set_example="train.lr=1e-4")
    )
