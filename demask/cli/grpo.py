"""`demask grpo`: post-train a model with coupled-GRPO (or a baseline estimator) from a recipe.

    demask grpo --recipe recipes/tinycode/coupled_grpo.yaml [--out DIR] [--max-steps N]
                [--estimator NAME] [--seed S] [--max-seconds T] [--resume]
                [--set grpo.advantage=loo_positive --set train.lr=1e-4 ...]
    torchrun --nproc_per_node 2 -m demask.cli.main grpo --recipe ...

Every simple field of the recipe's ``grpo:`` and ``train:`` blocks (and its top level) is an
option (``--estimator``, ``--group-size``, ``--lr``, ``--seed``, ``--max-seconds`` ...); where
both blocks have a field (micro_batch_size) the option is grpo's and ``--set
train.micro_batch_size=N`` reaches the other. A new ``--estimator`` clears the recipe's
estimator options. The command only parses and prints: the work is
:func:`demask.training.rl.grpo.run_grpo_recipe`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from demask.cli.options import command, config_flags, gather
from demask.cli.train import run_options, shutdown_distributed
from demask.training.rl.grpo_recipe import GRPORecipe

FLAGS = config_flags(GRPORecipe, flatten=["grpo", "train"], skip=["out_dir"], from_file=True)


def grpo_command(
    given: dict[tuple[str, ...], Any], settings: list[str], recipe: Path, out: str | None, resume: bool, plot: bool
) -> None:
    """Post-train a checkpoint with GRPO and test-execution rewards (see docs/grpo.md)."""
    from demask.config import from_dict, to_dict
    from demask.training.logs import plot_log
    from demask.training.rl.grpo_recipe import load_grpo_recipe, override_grpo_recipe, run_grpo_recipe

    estimator = given.pop(("grpo", "estimator"), None)  # a new estimator clears its options
    train = {path[-1]: value for path, value in given.items() if path[0] == "train"}
    named = {path: value for path, value in given.items() if path[0] != "train"}
    raw = gather(GRPORecipe, named, [], to_dict(load_grpo_recipe(recipe, settings)))
    loaded = override_grpo_recipe(from_dict(GRPORecipe, raw), estimator=estimator, out_dir=out, **train)
    try:
        result = run_grpo_recipe(loaded, resume=resume, log=typer.echo)
    finally:
        shutdown_distributed()
    m = result.metrics
    typer.echo(
        f"done: {result.step} updates in {result.seconds:.0f} s; last round: reward "
        f"{m.get('reward_mean', float('nan')):.3f}, pass rate {m.get('pass_rate', float('nan')):.3f}, "
        f"kl {m.get('kl', float('nan')):.4f}"
    )
    for key, value in result.eval_metrics.items():
        typer.echo(f"  {key} = {value:.4f}")
    if result.checkpoint is not None:
        typer.echo(f"checkpoint: {result.checkpoint}")
    if plot and result.log_path is not None:
        cols = ("reward_mean", "pass_rate", "loss", "kl", "clip_fraction", "nfe_mean")
        typer.echo(f"plot: {plot_log(result.log_path, result.log_path.with_suffix('.png'), cols)}")


def register(app: typer.Typer) -> None:
    app.command("grpo")(
        command(grpo_command, FLAGS, run_options("GRPO", "grpo_log.csv"), set_example="grpo.advantage=loo_positive")
    )
