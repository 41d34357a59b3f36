"""`demask reproduce [--quick]`: the seed papers' claims measured again at TinyCode scale, as one
report (report.md + figures; docs/reproduce.md). The work is :mod:`demask.analysis.reproduce`.

    demask reproduce --quick                    # about 10 minutes on 2 cores
    demask reproduce --out runs/reproduce-full  # the full report (about an hour)
    demask reproduce --claims d --claims f      # some claims only
"""

from __future__ import annotations

from typing import Any

import typer

from demask.analysis.reproduce import ReproduceConfig
from demask.cli.options import command, config_flags, gather

FLAGS = config_flags(ReproduceConfig)


def reproduce_command(given: dict[tuple[str, ...], Any], settings: list[str]) -> None:
    """Measure the seed papers' claims (a)-(f) again and write a report with verdicts (resumable)."""
    from demask.analysis.reproduce import run_reproduce
    from demask.config import from_dict

    config = from_dict(ReproduceConfig, gather(ReproduceConfig, given, settings))
    report = run_reproduce(config, log=lambda line: typer.echo(line, err=True))
    for key, got in report["claims"].items():
        typer.echo(f"({key}) {got.get('verdict') or got.get('status')}")
    typer.echo(f"report: {config.out}/report.md")


def register(app: typer.Typer) -> None:
    app.command("reproduce")(command(reproduce_command, FLAGS, set_example="split=validation"))
