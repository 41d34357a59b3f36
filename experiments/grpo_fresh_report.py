"""Held-out pass@1 of post-trained TinyCode models against the SFT model: table, JSON and plot.

Each run is a ``demask eval`` output directory (all held-out tasks, the same decoder as the
base); runs that share a label are seeds of one setting. For every run the paired
difference with the base (per-task pass@1, demask.evaluation.stats) is computed; for every
label the mean over its seeds with a 95% t-interval over seeds. Writes

- ``<docs>.json``: the task ids and, per run, which tasks passed (so that every figure can be
  recomputed without the eval directories: ``--from-json``);
- ``<docs>.png``: per label, each seed's difference (dots, with its paired 95% interval)
  and the seeds' mean (red), against 0 and the +0.05 goal of the GRPO issue.

    .venv/bin/python experiments/grpo_fresh_report.py --base runs/eval-sft \\
        --run "C: eval-decoder rollouts=runs/eval-C-s0" --run "C: eval-decoder rollouts=runs/eval-C-s1"
    .venv/bin/python experiments/grpo_fresh_report.py --from-json docs/grpo_fresh.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demask.evaluation.compare import load_results, task_scores  # noqa: E402  # after the sys.path line
from demask.evaluation.stats import mean_interval, paired_difference  # noqa: E402

GOAL = 0.05


def collect(base: Path, runs: list[tuple[str, Path]]) -> dict:
    base_scores = task_scores(load_results(base))
    tasks = sorted(base_scores)
    out = {"base": str(base), "tasks": tasks, "base_passed": [base_scores[t] for t in tasks], "runs": []}
    for label, path in runs:
        scores = task_scores(load_results(path))
        paired_difference(base_scores, scores)  # refuses a different task set
        out["runs"].append({"label": label, "path": str(path), "passed": [scores[t] for t in tasks]})
    return out


def summarize(data: dict) -> list[dict]:
    base = dict(zip(data["tasks"], data["base_passed"]))
    rows = []
    for label in dict.fromkeys(r["label"] for r in data["runs"]):
        diffs = [
            paired_difference(base, dict(zip(data["tasks"], r["passed"]))) for r in data["runs"] if r["label"] == label
        ]
        over_seeds = mean_interval(d.diff.mean for d in diffs)
        rows.append(
            {
                "label": label,
                "seeds": len(diffs),
                "pass@1": [d.other_mean for d in diffs],
                "diff": [d.diff.mean for d in diffs],
                "paired_ci95": [d.diff.half_width for d in diffs],
                "mean_diff": over_seeds.mean,
                "ci95_over_seeds": over_seeds.half_width,
                "base": diffs[0].base_mean,
            }
        )
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.4))
    for y, row in enumerate(rows):
        for k, (d, half) in enumerate(zip(row["diff"], row["paired_ci95"])):
            jitter = (k - (row["seeds"] - 1) / 2) * 0.12
            ax.errorbar(d, y + jitter, xerr=half, fmt="o", color="C0", alpha=0.55, ms=4, capsize=2)
        if row["seeds"] > 1:
            ax.errorbar(
                row["mean_diff"], y, xerr=row["ci95_over_seeds"], fmt="D", color="C3", ms=6, capsize=4, zorder=3
            )
    ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.axvline(GOAL, color="C2", linestyle=":", linewidth=1.5, label="goal: +0.05")
    ax.set_yticks(range(len(rows)), [f"{r['label']} ({r['seeds']})" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"held-out pass@1 minus the SFT model's ({rows[0]['base']:.3f}), greedy demo decoder")
    ax.set_title("blue: one seed with its paired 95% interval; red: mean of seeds, 95% t-interval", fontsize=8)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", type=Path, help="eval directory (or results.json) of the SFT model")
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="an eval directory of a post-trained model (repeat; a repeated label = seeds)",
    )
    p.add_argument("--from-json", type=Path, help="re-summarize and re-plot a JSON this script wrote")
    p.add_argument("--docs", type=Path, default=ROOT / "docs/grpo_fresh")
    args = p.parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        if args.base is None or not args.run:
            p.error("give --base and at least one --run LABEL=DIR (or --from-json)")
        runs = []
        for spec in args.run:
            label, sep, path = spec.rpartition("=")
            if not sep or not label:
                p.error(f"--run {spec!r}: expected LABEL=DIR")
            runs.append((label, Path(path)))
        data = collect(args.base, runs)
        args.docs.parent.mkdir(parents=True, exist_ok=True)
        args.docs.with_suffix(".json").write_text(json.dumps(data) + "\n")
    rows = summarize(data)
    for row in rows:
        seeds = ", ".join(f"{d:+.3f}" for d in row["diff"])
        print(
            f"{row['label']:<48} seeds {row['seeds']}  diff {seeds}  mean {row['mean_diff']:+.3f} "
            f"± {row['ci95_over_seeds']:.3f}"
        )
    plot(rows, args.docs.with_suffix(".png"))
    print(f"plot: {args.docs.with_suffix('.png')}")


if __name__ == "__main__":
    main()
