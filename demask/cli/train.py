"""`demask train`: run a training recipe.

    demask train --recipe recipes/tinycode/sft.yaml [--out DIR] [--max-steps N] [--resume]
    torchrun --nproc_per_node 2 -m demask.cli.main train --recipe ... --distributed ddp

Every simple field of TrainConfig is also an option (``--lr``, ``--global-batch-size``,
``--precision`` ...) that overrides the recipe's ``train:`` block; the help text is the
field's docstring. The command only parses and prints: the work is
:func:`demask.training.run.run_recipe`.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Optional

import typer

_SIMPLE = (int, float, str, bool)
_EXPLICIT = ("out_dir",)  # given its own, shorter option: --out


def _simple_type(typ: Any) -> type | None:
    """int/float/str/bool, also inside ``X | None``; None for anything else."""
    if typ in _SIMPLE:
        return typ
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(typ) if a is not type(None)]
        if len(inner) == 1 and inner[0] in _SIMPLE:
            return inner[0]
    return None


def _config_options() -> list[inspect.Parameter]:
    from demask.training.config import TrainConfig
    from demask.training.recipe import field_docs

    hints = typing.get_type_hints(TrainConfig)
    docs = field_docs(TrainConfig)
    params = []
    for f in dataclasses.fields(TrainConfig):
        simple = _simple_type(hints[f.name])
        if simple is None or f.name in _EXPLICIT:
            continue
        flag = "--" + f.name.replace("_", "-")
        decls = (f"{flag}/--no-{flag[2:]}",) if simple is bool else (flag,)
        params.append(inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[simple],
            default=typer.Option(None, *decls, help=docs.get(f.name, "") + " [default: from the recipe]",
                                 show_default=False,
                                 rich_help_panel="Overrides of the recipe's train: block")))
    return params


def train_command(recipe: Path, out: Optional[str] = None, resume: bool = False, plot: bool = False,
                  **overrides: Any) -> None:
    """Train a model from a recipe (see docs/training.md)."""
    from demask.training.logs import plot_log
    from demask.training.recipe import load_recipe
    from demask.training.run import apply_overrides, run_recipe

    loaded = apply_overrides(load_recipe(recipe), out_dir=out, **overrides)
    try:
        result = run_recipe(loaded, resume=resume, log=typer.echo)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        _shutdown()
    typer.echo(f"done: {result.step} steps, loss {result.loss if result.loss is not None else 'n/a'}, "
               f"{result.steps_per_s:.2f} steps/s")
    for key, value in result.metrics.items():
        typer.echo(f"  {key} = {value:.4f}")
    if result.checkpoint is not None:
        typer.echo(f"checkpoint: {result.checkpoint}")
    if plot and result.log_path is not None:
        typer.echo(f"plot: {plot_log(result.log_path, result.log_path.with_suffix('.png'))}")


def _shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _build() -> Any:
    base = [
        inspect.Parameter("recipe", inspect.Parameter.KEYWORD_ONLY, annotation=Path,
                          default=typer.Option(..., "--recipe", help="The recipe YAML file.", exists=True,
                                               dir_okay=False)),
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                          default=typer.Option(None, "--out", help="Output directory (checkpoints, "
                                               "train_log.csv); overrides train.out_dir.")),
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--resume", help="Continue from the newest "
                                               "checkpoint in the output directory (a fresh start "
                                               "if none).")),
        inspect.Parameter("plot", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--plot", help="Write train_log.png at the end "
                                               "(needs matplotlib).")),
    ]
    params = base + _config_options()

    def command(**kwargs: Any) -> None:
        train_command(**kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = train_command.__doc__
    return command


def register(app: typer.Typer) -> None:
    app.command("train")(_build())
