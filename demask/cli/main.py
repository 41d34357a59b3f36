"""The `demask` command: a small table of command modules, each a thin typed layer."""

from __future__ import annotations

import importlib

import typer

from demask.cli import options

app = typer.Typer(
    name="demask",
    help="Masked-diffusion language models for code: decode, execute, score, post-train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error instead of one error: line."),
) -> None:
    """Masked-diffusion language models for code: decode, execute, score, post-train."""
    options.DEBUG = debug


# Each module defines `register(app)`; the list is the whole command table.
COMMAND_MODULES = (
    "generate", "evaluate", "compare", "train", "demo", "grpo", "rrtf", "policy", "serve", "infill", "view",
    "analyze", "reproduce", "recipes", "info",
)  # fmt: skip

for _name in COMMAND_MODULES:
    importlib.import_module(f"demask.cli.{_name}").register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
