"""`demask recipes`: the recipes shipped inside the package, listed, shown or copied.

demask recipes                          # names and first comment line
demask recipes tinycode/sft             # print one
demask recipes tinycode/sft --copy my/  # copy it to edit (any name works with --recipe too)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from demask.cli.options import reported_errors


def recipes_command(
    name: str | None = typer.Argument(None, help="A shipped recipe's name (e.g. tinycode/sft); none: list them."),
    copy: Path | None = typer.Option(
        None, "--copy", help="Copy the recipe into this directory (or to this .yaml file)."
    ),
) -> None:
    """List the shipped recipes, print one, or copy one to edit. `--recipe NAME` finds them too."""
    from demask.training.recipe import resolve_recipe, shipped_recipes

    with reported_errors():
        if name is None:
            for key, path in shipped_recipes().items():
                lines = path.read_text(encoding="utf-8").splitlines()
                about = next((line.lstrip("# ").strip() for line in lines if line.startswith("#")), "")
                typer.echo(f"{key:<32} {about}")
            return
        path = resolve_recipe(name)
        if copy is None:
            typer.echo(path.read_text(encoding="utf-8"), nl=False)
            return
        target = copy if copy.suffix in (".yaml", ".yml") else copy / path.name  # a file, or a directory
        if target.exists():
            raise FileExistsError(f"{target} exists; remove it or copy to another place")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        typer.echo(f"copied {name} to {target}")


def register(app: typer.Typer) -> None:
    app.command("recipes")(recipes_command)
