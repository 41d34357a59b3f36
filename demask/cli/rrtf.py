"""`demask rrtf STAGE`: RRTF (PanGu-Coder2) offline, one resumable stage at a time.

    demask rrtf sample --recipe tinycode/rrtf [--out DIR] [--set sample.n=8 ...]
    demask rrtf rank   --recipe tinycode/rrtf
    demask rrtf train  --recipe tinycode/rrtf [--set algorithm=rrhf] [--resume]
    demask rrtf all    --recipe tinycode/rrtf          # the three in order

Every stage reads the files of the one before under the recipe's ``out_dir`` (see
:mod:`demask.training.posttrain.rrtf`); running a stage again continues where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import typer

from demask.cli.options import reported_errors

STAGES = ("sample", "rank", "train", "all")


def rrtf_command(
    stage: str = typer.Argument(..., help="sample, rank, train, or all (the three in order)."),
    recipe: Path = typer.Option(
        ..., "--recipe", help="The RRTF recipe: a YAML file or a shipped name (tinycode/rrtf)."
    ),
    out: str | None = typer.Option(None, "--out", help="Output directory of the stages; overrides out_dir."),
    settings: list[str] = typer.Option(
        [], "--set", help="KEY=VALUE into the recipe, VALUE read as YAML (algorithm=rrhf, train.lr=1e-5)."
    ),
    resume: bool = typer.Option(False, "--resume", help="train: continue from the newest checkpoint."),
) -> None:
    """RRTF: sample from the student and teachers, rank by tests, train with a ranking loss + SFT."""
    with reported_errors():
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
        from dataclasses import replace

        from demask.training.posttrain.rrtf import load_rrtf_recipe, run_rank, run_sample, run_train

        loaded = load_rrtf_recipe(recipe, settings)
        if out is not None:
            loaded = replace(loaded, out_dir=out)
        if stage in ("sample", "all"):
            run_sample(loaded, log=typer.echo)
        if stage in ("rank", "all"):
            run_rank(loaded, log=typer.echo)
        if stage in ("train", "all"):
            loop = run_train(loaded, resume=resume, log=typer.echo)
            row = loop.last_row
            typer.echo(f"done: {loop.done} updates; last loss {row.get('loss', float('nan')):.4f}")
            for key, value in loop.eval_metrics.items():
                typer.echo(f"  {key} = {value:.4f}")
            if loop.last_checkpoint is not None:
                typer.echo(f"checkpoint: {loop.last_checkpoint}")


def register(app: typer.Typer) -> None:
    app.command("rrtf")(rrtf_command)
