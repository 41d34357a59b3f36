"""`demask policy-train`: train a learned unmasking policy for a frozen diffusion model.

    demask policy-train --recipe tinycode/policy_semi_ar [--out DIR] [--set policy.alpha=3] [--resume]

Every checkpoint the run writes is a policy folder, usable wherever a policy name is:
``demask eval ... --policy learned --set policy_options.path=DIR/checkpoint-000NNNN``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from demask.cli.options import reported_errors


def policy_train_command(
    recipe: Path = typer.Option(..., "--recipe", help="The policy recipe: a YAML file or a shipped name."),
    out: str | None = typer.Option(None, "--out", help="Output directory; overrides train.out_dir."),
    settings: list[str] = typer.Option([], "--set", help="KEY=VALUE into the recipe (policy.alpha=3, train.lr=1e-4)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in the output directory."),
) -> None:
    """Train a learned unmasking policy with RL under a compute penalty (docs/learned_policy.md)."""
    with reported_errors():
        from dataclasses import replace

        from demask.training.posttrain.unmasking import load_policy_recipe, run_policy_recipe

        loaded = load_policy_recipe(recipe, settings)
        if out is not None:
            loaded = replace(loaded, train=loaded.train.override(out_dir=out))
        loop = run_policy_recipe(loaded, resume=resume, log=typer.echo)
        row = loop.last_row
        typer.echo(
            f"done: {loop.done} updates; last round: reward {row.get('reward_mean', float('nan')):.3f}, "
            f"NFE {row.get('nfe_mean', float('nan')):.1f}"
        )
        for key, value in loop.eval_metrics.items():
            typer.echo(f"  {key} = {value:.4f}")
        if loop.last_checkpoint is not None:
            typer.echo(f"policy: {loop.last_checkpoint}  (--policy learned --set policy_options.path=...)")


def register(app: typer.Typer) -> None:
    app.command("policy-train")(policy_train_command)
