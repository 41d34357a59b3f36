"""The training log: one CSV row per logged step, and a plot of it.

Columns: ``step, loss, lr, grad_norm, tokens_per_s, steps_per_s, elapsed_s`` and then one
column per evaluation metric (``eval/...``), added as they first appear; a step that was
logged and evaluated has one row with both. The whole file is rewritten atomically on
each write (a few thousand rows at most), so new columns are possible and a killed run
never leaves a torn line. On resume, rows after the resumed step are dropped, so the log
of a resumed run is that of an uninterrupted one.

Not covered: TensorBoard / wandb sinks (read the CSV).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from demask.training.checkpointing import atomic_write_text

BASE_COLUMNS = ("step", "loss", "lr", "grad_norm", "tokens_per_s", "steps_per_s", "elapsed_s")


class MetricsLog:
    """Rows keyed by step, written to ``path`` (None: kept in memory only)."""

    def __init__(self, path: str | Path | None, resume_step: int | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.rows: dict[int, dict[str, float]] = {}
        self.columns: list[str] = list(BASE_COLUMNS)
        if self.path is not None and resume_step is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                for name in reader.fieldnames or []:
                    if name not in self.columns:
                        self.columns.append(name)
                for raw in reader:
                    step = int(raw["step"])
                    if step <= resume_step:
                        self.rows[step] = {k: float(v) for k, v in raw.items() if v not in ("", None)}

    def write(self, step: int, values: dict[str, float]) -> None:
        """Merge ``values`` into the row of ``step`` and rewrite the file."""
        row = self.rows.setdefault(step, {"step": step})
        for key, value in values.items():
            if key not in self.columns:
                self.columns.append(key)
            row[key] = float(value)
        if self.path is None:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for s in sorted(self.rows):
            writer.writerow({k: _fmt(v) for k, v in self.rows[s].items()})
        atomic_write_text(self.path, buf.getvalue())


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def read_log(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Column -> [(step, value)] for the cells that are filled."""
    out: dict[str, list[tuple[int, float]]] = {}
    with Path(path).open(newline="") as f:
        for raw in csv.DictReader(f):
            step = int(raw["step"])
            for key, value in raw.items():
                if key != "step" and value not in ("", None):
                    out.setdefault(key, []).append((step, float(value)))
    return out


def plot_log(csv_path: str | Path, png_path: str | Path, columns: tuple[str, ...] | None = None) -> Path:
    """One panel per column (default: loss, lr, grad_norm, tokens_per_s and every eval
    metric) against the step, saved as a PNG. Needs matplotlib (``pip install demask[plot]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plot_log needs matplotlib: pip install 'demask[plot]'") from exc
    series = read_log(csv_path)
    if columns is None:
        columns = tuple(c for c in ("loss", "lr", "grad_norm", "tokens_per_s") if c in series)
        columns += tuple(sorted(c for c in series if c.startswith("eval/")))
    missing = [c for c in columns if c not in series]
    if missing:
        raise ValueError(f"{csv_path} has no values for {missing}; it has {sorted(series)}")
    if not columns:
        raise ValueError(f"{csv_path} has nothing to plot")
    n = len(columns)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, columns):
        steps, values = zip(*series[name])
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3)
        ax.set_title(name)
        ax.set_xlabel("step")
        if name == "loss" and min(values) > 0:
            ax.set_yscale("log")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path
