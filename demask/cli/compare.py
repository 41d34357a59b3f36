"""`demask compare`: paired differences of evaluation results on the same tasks.

demask compare runs/eval-sft runs/eval-grpo runs/eval-grpo-seed1 --metric pass@1
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def compare_command(
    base: Path = typer.Argument(..., help="Results of the base model: results.json or its run directory."),
    others: list[Path] = typer.Argument(..., help="Results to compare against the base."),
    metric: str = typer.Option(
        "pass@1", "--metric", help="Per-task score: pass@1, pass@k (k <= the samples per task) or pass_rate_mean."
    ),
    out: Path | None = typer.Option(None, "--out", help="Also write the comparison as JSON."),
) -> None:
    """Each result minus the base over the same tasks: mean, paired s.e., 95% interval, tasks gained/lost."""
    from rich.console import Console
    from rich.table import Table

    from demask.evaluation.compare import compare_results, load_results

    try:
        base_results = load_results(base)
        rows = [(path, compare_results(base_results, load_results(path), metric)) for path in others]
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    table = Table(title=f"{metric} against {base} ({rows[0][1].n} tasks, base {rows[0][1].base_mean:.3f})")
    for column in ("results", metric, "difference", "paired s.e.", "95% interval", "gained", "lost"):
        table.add_column(column, justify="left" if column == "results" else "right")
    for path, d in rows:
        table.add_row(
            str(path),
            f"{d.other_mean:.3f}",
            f"{d.diff.mean:+.3f}",
            f"{d.se:.3f}",
            f"[{d.diff.low:+.3f}, {d.diff.high:+.3f}]",
            str(d.gained),
            str(d.lost),
        )
    Console(width=160).print(table)
    if out is not None:
        payload = {
            "base": str(base),
            "metric": metric,
            "comparisons": [
                {
                    "results": str(path),
                    "tasks": d.n,
                    "base": d.base_mean,
                    "other": d.other_mean,
                    "difference": d.diff.mean,
                    "se": d.se,
                    "ci95": [d.diff.low, d.diff.high],
                    "gained": d.gained,
                    "lost": d.lost,
                }
                for path, d in rows
            ],
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
