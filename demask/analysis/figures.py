"""Pictures and the markdown summary of a `demask analyze` run (its analysis.json dict).

Each drawer reads one section and writes one PNG (matplotlib, Agg); a section that did not
run draws nothing. :func:`summary_markdown` turns the same dict into tables with 95%
intervals and links to the pictures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Lay out, write (110 dpi) and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)


def label_axes(ax: Any, xlabel: str, ylabel: str, title: str, legend: bool = True) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(fontsize=8)


def _iv(x: dict[str, Any] | None, digits: int = 3) -> str:
    if not x or x.get("mean") is None or math.isnan(x["mean"]):
        return "n/a"
    return f"{x['mean']:.{digits}f} ± {x['ci95']:.{digits}f}"


def draw_temperature(rows: list[dict[str, Any]], path: Path) -> None:
    plt = _plt()
    temps = [r["temperature"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for kind, style in (("local_arness", "o-"), ("global_arness", "s--")):
        for k in ("@1", "@2"):
            means = [r[kind][k]["mean"] for r in rows]
            errs = [r[kind][k]["ci95"] for r in rows]
            a1.errorbar(temps, means, yerr=errs, fmt=style, ms=4, capsize=2, label=f"{kind.split('_')[0]} AR-ness{k}")
    label_axes(a1, "temperature", "AR-ness (95% CI over tasks)", "decoding order vs temperature")
    keys = sorted({k for r in rows for k in r["pass_at_k"]}, key=lambda k: int(k.split("@")[1]))
    for key in keys:
        pts = [(r["temperature"], r["pass_at_k"][key]) for r in rows if key in r["pass_at_k"]]
        a2.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=4, label=key)
    label_axes(a2, "temperature", "pass@k (same samples)", "pass@k vs temperature")
    save_figure(fig, path)


def draw_policies(rows: list[dict[str, Any]], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    names = [r["policy"] for r in rows]
    x = range(len(rows))
    for off, kind in ((-0.2, "local_arness"), (0.2, "global_arness")):
        ax.bar([i + off for i in x], [r[kind]["@1"]["mean"] for r in rows], width=0.4,
               yerr=[r[kind]["@1"]["ci95"] for r in rows], capsize=2, label=kind.replace("_", " ") + "@1")  # fmt: skip
    ax.set_xticks(list(x), names, fontsize=8)
    label_axes(ax, "", "AR-ness@1 (greedy)", "decoding order by unmasking policy")
    save_figure(fig, path)


def draw_sink(section: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for which, prof in section.items():
        conf = prof["confidence"]
        half = prof["confidence_ci95"]
        xs = list(range(len(conf)))
        ax.plot(xs, conf, "-", label=which)
        ax.fill_between(xs, [c - h for c, h in zip(conf, half)], [c + h for c, h in zip(conf, half)], alpha=0.25)
    label_axes(ax, "completion position (all masked)", "first-step top-1 probability",
               "the entropy sink: first-step confidence by position")  # fmt: skip
    save_figure(fig, path)


def draw_heatmap(section: dict[str, Any], path: Path) -> None:
    import numpy as np

    plt = _plt()
    panels = section["panels"]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.0 + 1.3 * len(panels)), squeeze=False)
    for ax, (name, panel) in zip(axes[:, 0], panels.items()):
        grid = np.array([[s if s >= 0 else np.nan for s in row] for row in panel["commit_steps"]], dtype=float)
        im = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_ylabel(name, fontsize=8)
        ax.set_yticks(range(len(panel["task_ids"])), ["✓" if p else "✗" for p in panel["passed"]], fontsize=7)
        fig.colorbar(im, ax=ax, pad=0.01).set_label("step", fontsize=7)
    axes[-1, 0].set_xlabel("completion position (blank: filled by the early stop)")
    axes[0, 0].set_title("step at which each position was committed (one row per task)")
    save_figure(fig, path)


def draw_frontier(curves: dict[str, list[dict[str, Any]]], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for name, pts in curves.items():
        pts = sorted((p for p in pts if p["nfe"] is not None), key=lambda p: p["nfe"])
        ax.errorbar([p["nfe"] for p in pts], [p["pass@1"]["mean"] for p in pts],
                    yerr=[p["pass@1"]["ci95"] for p in pts], fmt="o-", ms=4, capsize=2, label=name)  # fmt: skip
    label_axes(ax, "mean NFE per completion", "pass@1 (greedy, 95% CI)", "NFE vs pass@1 by unmasking policy")
    save_figure(fig, path)


DRAWERS: dict[str, Callable[[Any, Path], None]] = {
    "temperature": draw_temperature,
    "policies": draw_policies,
    "sink": draw_sink,
    "heatmap": draw_heatmap,
    "frontier": draw_frontier,
}


def draw_all(report: dict[str, Any], out: Path) -> dict[str, str]:
    """One PNG per section that ran and has a picture; {section: file name}."""
    figures = {}
    for name, section in report["sections"].items():
        if name in DRAWERS and section:
            path = out / f"{name}.png"
            DRAWERS[name](section, path)
            figures[name] = path.name
    return figures


def summary_markdown(report: dict[str, Any]) -> str:
    """The analysis as markdown tables (95% intervals over tasks) with its pictures."""
    s = report["sections"]
    fig = report.get("figures", {})
    lines = [
        f"# Decoding analysis of {report['checkpoint']}",
        "",
        f"{report['num_tasks']} tasks of {report['tasks']}; base decode: {report['decode']}.",
        "Intervals: 95% over tasks. AR-ness with several tokens per step orders a step's tokens left to right.",
        "",
    ]
    if "temperature" in s:
        lines += ["## AR-ness and pass@k vs temperature", "",
                  "| T | local@1 | global@1 | local@2 | global@2 | pass@1 | pass@k | NFE |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in s["temperature"]:
            passk = ", ".join(f"{k} {v:.3f}" for k, v in r["pass_at_k"].items() if k != "pass@1") or "-"
            lines.append(
                f"| {r['temperature']:g} | {_iv(r['local_arness']['@1'])} | {_iv(r['global_arness']['@1'])} | "
                f"{_iv(r['local_arness']['@2'])} | {_iv(r['global_arness']['@2'])} | {_iv(r['pass@1'])} | "
                f"{passk} | {_num(r['mean_nfe'], 1)} |"
            )
        lines += _picture(fig, "temperature")
    if "policies" in s:
        lines += [
            "## AR-ness by policy (greedy)",
            "",
            "| policy | local@1 | global@1 | pass@1 | NFE |",
            "|---|---|---|---|---|",
        ]
        for r in s["policies"]:
            lines.append(
                f"| {r['policy']} | {_iv(r['local_arness']['@1'])} | {_iv(r['global_arness']['@1'])} | "
                f"{_iv(r['pass@1'])} | {_num(r['mean_nfe'], 1)} |"
            )
        lines += _picture(fig, "policies")
    if "sink" in s:
        lines += ["## The entropy sink", ""]
        for which, prof in s["sink"].items():
            c = prof["confidence"]
            lines.append(
                f"- {which}: first-step confidence at position 0 {c[0]:.3f}, mean over the rest "
                f"{sum(c[1:]) / max(len(c) - 1, 1):.3f} (position 0 minus the rest per prompt: "
                f"{_iv(prof['first_minus_rest'])}); the most confident position is {prof['argmax_position']}"
            )
        lines += _picture(fig, "sink")
    if "heatmap" in s:
        lines += ["## Decoding order", "", *_picture(fig, "heatmap")]
    if "halving" in s:
        lines += ["## Halving the steps", "", "| model | pass@1 at L steps | at L/2 | drop |", "|---|---|---|---|"]
        for which, h in s["halving"].items():
            lines.append(f"| {which} | {_iv(h['pass@1'][0])} | {_iv(h['pass@1'][1])} | {_iv(h['drop'])} |")
        lines.append("")
    if "frontier" in s:
        lines += ["## NFE vs pass@1", "", "| policy | setting | mean NFE | pass@1 |", "|---|---|---|---|"]
        for name, pts in s["frontier"].items():
            for p in pts:
                lines.append(f"| {name} | {p['setting']} | {_num(p['nfe'], 2)} | {_iv(p['pass@1'])} |")
        lines += _picture(fig, "frontier")
    for name, why in report.get("skipped", {}).items():
        lines.append(f"- section {name} skipped: {why}")
    return "\n".join(lines).rstrip() + "\n"


def _num(x: float | None, digits: int) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _picture(fig: dict[str, str], name: str) -> list[str]:
    return ["", f"![{name}]({fig[name]})", ""] if name in fig else [""]
