"""`demask info`: versions and what this machine offers."""

from __future__ import annotations

import platform

import typer


def info() -> None:
    """Print demask's version, torch's, and the devices torch sees."""
    import torch

    import demask

    typer.echo(f"demask {demask.__version__}  python {platform.python_version()}  torch {torch.__version__}")
    typer.echo(f"cuda available: {torch.cuda.is_available()}  cpu threads: {torch.get_num_threads()}")


def register(app: typer.Typer) -> None:
    app.command("info")(info)
