"""`demask analyze`: AR-ness vs temperature and policy, the entropy sink, decoding-order
heatmaps, halving the steps and the NFE-pass@1 frontier of one checkpoint (docs/analysis.md).

    demask analyze --checkpoint tinycode-mdm --out runs/analyze --limit 64 \\
        --block-length 24 --cache dual --temperatures 0 --temperatures 0.6 --temperatures 1.2
    demask analyze --checkpoint runs/grpo/final --baseline tinycode-mdm --out runs/analyze-grpo \\
        --sections halving --sections sink

Options are :class:`demask.analysis.analyze.AnalyzeConfig`'s fields and its base
DecodeConfig's; a rerun on the same ``--out`` continues where it stopped.
"""

from __future__ import annotations

from typing import Any

import typer

from demask.analysis.analyze import AnalyzeConfig
from demask.cli.options import command, config_flags, default_gen_length, gather

FLAGS = config_flags(AnalyzeConfig, flatten=["decode"], skip=["trace", "temperature"])


def analyze_command(given: dict[tuple[str, ...], Any], settings: list[str]) -> None:
    """Analyse a checkpoint's decoding: AR-ness, entropy sink, order heatmaps, halving, frontier."""
    from demask.analysis.analyze import run_analysis
    from demask.config import from_dict

    raw = gather(AnalyzeConfig, given, settings, {"decode": {}}, implicit="decode")
    default_gen_length(raw["decode"], raw.get("checkpoint", ""))
    config = from_dict(AnalyzeConfig, raw)
    report = run_analysis(config, log=lambda line: typer.echo(line, err=True))
    out = config.out
    typer.echo(f"{len(report['sections'])} section(s) on {report['num_tasks']} tasks: {', '.join(report['sections'])}")
    for name, why in report["skipped"].items():
        typer.echo(f"skipped {name}: {why}")
    typer.echo(f"wrote {out}/analysis.json, {out}/summary.md and {len(report['figures'])} PNG(s)")


def register(app: typer.Typer) -> None:
    app.command("analyze")(command(analyze_command, FLAGS, set_example="decode.block_length=24"))
