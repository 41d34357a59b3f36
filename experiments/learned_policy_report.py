"""Learned unmasking policies on held-out TinyCode: seeds and settings against the heuristics.

Each ``--group LABEL=RUN[,RUN...]`` is one training setting (alpha, experts ...) whose runs are
seeds: every run's last checkpoint is evaluated at ``--beta`` (greedy, one sample per task) on
``--split`` in ``--mode`` (a ``demask eval`` folder under ``--out``; reruns skip finished
ones). The heuristics are the finished points of ``experiments/learned_policy_frontier.py``
under ``runs/frontier/<model>-<mode>-<split>/`` (run that first).

For every run: pass@1 and mean NFE, and two paired differences (over tasks): with the best
heuristic whose mean NFE is at most ``--nfe-slack`` times the run's, and with the heuristics'
frontier (their upper hull) interpolated to the run's NFE. For every group: the mean over its
seeds with a 95% t-interval over seeds (one seed: the interval over tasks). Writes
``<docs>.json``, ``<docs>.md`` (the table) and ``<docs>.png`` (the heuristics' curves, their
hull and each group's seeds). ``--reuse-training-eval`` (validation) reads the evaluation a
training run made of its last checkpoint instead of decoding again.

    python experiments/learned_policy_report.py --split test --mode full \\
        --group "alpha 1=runs/polw-full-a1,runs/polw-full-a1-s1,runs/polw-full-a1-s2" \\
        --group "alpha 3=runs/polw-full-a3" --docs docs/learned_policy_seeds_test
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))


def per_task(folder: Path) -> dict[str, float]:
    res = json.loads((folder / "results.json").read_text())
    return {tid: e["c"] / e["n"] for tid, e in res["tasks"].items() if e["n"]}


def mean_pass(per_task_pass: dict[str, float]) -> float:
    return sum(per_task_pass.values()) / len(per_task_pass)


def mean_nfe(folder: Path) -> float:
    return float(json.loads((folder / "results.json").read_text())["generation"]["mean_nfe"])


def hull(heuristics: dict[str, dict[str, Any]]) -> list[str]:
    """The corners of the heuristics' frontier, by increasing NFE: the upper concave hull of
    (mean NFE, pass@1) over the points that no cheaper point beats (what decoding each task
    with one of two heuristics at random achieves on average lies on the chord between them)."""
    mean = {k: mean_pass(h["pass"]) for k, h in heuristics.items()}
    corners: list[str] = []
    for k in sorted(heuristics, key=lambda k: (heuristics[k]["nfe"], -mean[k])):
        if corners and mean[k] <= mean[corners[-1]]:
            continue
        while len(corners) >= 2:
            (x0, y0), (x1, y1) = ((heuristics[j]["nfe"], mean[j]) for j in corners[-2:])
            if (x1 - x0) * (mean[k] - y0) - (y1 - y0) * (heuristics[k]["nfe"] - x0) < 0:
                break  # the last corner stays above the chord to k
            corners.pop()
        corners.append(k)
    return corners


def frontier_baseline(heuristics: dict[str, dict[str, Any]], nfe: float) -> tuple[dict[str, float], str]:
    """The heuristics' frontier (:func:`hull`) at ``nfe``, task by task: linearly interpolated
    between the two corners that bracket ``nfe``, per task the same mix of their per-task
    scores, so a paired difference against it is a difference of means with a valid interval.
    Beyond the last corner: that corner (more NFE buys nothing measured); below the first: the
    first (cheaper than every heuristic).

    >>> h = {"a": {"pass": {"t": 0.0, "u": 1.0}, "nfe": 2.0}, "b": {"pass": {"t": 1.0, "u": 1.0}, "nfe": 4.0}}
    >>> frontier_baseline(h, 3.0)
    ({'t': 0.5, 'u': 1.0}, 'a..b (0.50)')
    """
    corners = hull(heuristics)
    lo = [k for k in corners if heuristics[k]["nfe"] <= nfe]
    hi = [k for k in corners if heuristics[k]["nfe"] > nfe]
    if not lo or not hi:
        k = lo[-1] if lo else hi[0]
        return dict(heuristics[k]["pass"]), k
    a, b = lo[-1], hi[0]
    w = (nfe - heuristics[a]["nfe"]) / (heuristics[b]["nfe"] - heuristics[a]["nfe"])
    pa, pb = heuristics[a]["pass"], heuristics[b]["pass"]
    return {t: (1 - w) * pa[t] + w * pb[t] for t in pa}, f"{a}..{b} ({w:.2f})"


def over_seeds(seeds: list[dict[str, Any]], key: str) -> list[float]:
    """Mean and 95% t half-width of ``key`` over the seeds; one seed: its own interval over tasks
    (``key_ci95``) where it has one."""
    from demask.evaluation.stats import mean_interval

    if len(seeds) == 1 and key + "_ci95" in seeds[0]:
        return [seeds[0][key], seeds[0][key + "_ci95"]]
    m = mean_interval([s[key] for s in seeds])
    return [m.mean, m.half_width]


def markdown(table: dict[str, Any]) -> str:
    """The report's table: one row per run, one per group (mean over seeds, t-interval over
    seeds), differences in points of pass@1 with their 95% intervals."""

    from demask.training.checkpointing import checkpoint_step

    def pts(d: float, h: float) -> str:
        return f"{100 * d:+.1f} ± {100 * h:.1f}"

    lines = [
        f"{table['model']}, {table['mode']}, {table['split']} split, beta {table['beta']:g}",
        "",
        "| setting | run (last checkpoint) | pass@1 at mean NFE | minus the best heuristic at <= its NFE | "
        "minus the heuristics' frontier there |",
        "|---|---|---|---|---|",
    ]
    for label, g in table["groups"].items():
        for s in g["seeds"]:
            lines.append(
                f"| {label} | {Path(s['run']).name} ({checkpoint_step(s['checkpoint'])}) "
                f"| {s['pass@1']:.3f} at {s['nfe']:.2f} | {s['vs']} ({s['vs_nfe']:.2f}): "
                f"{pts(s['diff'], s['diff_ci95'])} | {s['frontier_between']}: "
                f"{pts(s['diff_frontier'], s['diff_frontier_ci95'])} |"
            )
        if len(g["seeds"]) > 1:
            (p, ph), (n, nh) = g["pass@1"], g["nfe"]
            lines.append(
                f"| **{label}** | mean of {len(g['seeds'])} seeds | {p:.3f} ± {ph:.3f} at {n:.2f} ± {nh:.2f} | "
                f"**{pts(*g['diff_vs_best_heuristic'])}** | **{pts(*g['diff_vs_frontier'])}** |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("validation", "test"), default="validation")
    ap.add_argument("--mode", choices=("semi-ar", "full"), default="full")
    ap.add_argument("--model", default="tinycode-mdm")
    ap.add_argument("--group", action="append", default=[], help="LABEL=RUN_DIR[,RUN_DIR...] (repeatable)")
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--nfe-slack", type=float, default=1.05)
    ap.add_argument("--out", type=Path, default=ROOT / "runs/frontier")
    ap.add_argument("--docs", type=Path, required=True)
    ap.add_argument(
        "--reuse-training-eval", action="store_true",
        help="validation only: score a checkpoint by the evaluation its training run made of it (the same "
             "168 tasks and decoder; RUN/eval/step-N/) instead of decoding again",
    )  # fmt: skip
    args = ap.parse_args()
    if args.reuse_training_eval and args.split != "validation":
        raise SystemExit("--reuse-training-eval: a training run evaluates on validation only; drop it for --split test")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from learned_policy_frontier import MODES, point

    from demask.evaluation.stats import paired_difference
    from demask.model import load_pretrained
    from demask.tasks import load_tasks
    from demask.training.checkpointing import checkpoint_step, latest_checkpoint

    base = args.out / f"{args.model}-{args.mode}-{args.split}"
    heuristics = {}
    for folder in sorted(base.glob("*")):
        if folder.name.startswith(("learned", "run-")) or not (folder / "results.json").is_file():  # policies
            continue
        heuristics[folder.name] = {"pass": per_task(folder), "nfe": mean_nfe(folder)}
    if not heuristics:
        raise SystemExit(f"no heuristic points under {base}: run experiments/learned_policy_frontier.py first")

    model, tok = load_pretrained(args.model, dtype="float32")
    model.eval()
    tasks = load_tasks(f"tinycode:{args.split}")
    groups: dict[str, Any] = {}
    for spec in args.group:
        label, _, runs = spec.rpartition("=")  # a label may contain "="
        seeds = []
        for run in runs.split(","):
            ckpt = latest_checkpoint(run)
            if ckpt is None:
                raise SystemExit(f"{run}: no checkpoint")
            folder = base / f"run-{Path(run).name}-{ckpt.name}-beta{args.beta:g}"
            own = Path(run) / "eval" / f"step-{checkpoint_step(ckpt):07d}"
            if args.reuse_training_eval and args.beta == 1 and (own / "results.json").is_file():
                folder = own
            else:
                options = {"path": str(ckpt), "beta": args.beta}
                decode = {**MODES[args.mode], "policy": "learned", "policy_options": options}
                point(model, tok, tasks, decode, folder)
            mine = per_task(folder)
            nfe = mean_nfe(folder)
            cheap = {k: h for k, h in heuristics.items() if h["nfe"] <= nfe * args.nfe_slack}
            pool = cheap or {min(heuristics, key=lambda k: heuristics[k]["nfe"]): None}
            best = max(pool, key=lambda k: sum(heuristics[k]["pass"].values()))
            d = paired_difference(heuristics[best]["pass"], mine)
            line, between = frontier_baseline(heuristics, nfe)
            f = paired_difference(line, mine)
            seeds.append({"run": run, "checkpoint": str(ckpt), "pass@1": mean_pass(mine), "nfe": nfe,
                          "vs": best, "vs_nfe": heuristics[best]["nfe"], "diff": d.diff.mean,
                          "diff_ci95": d.diff.half_width, "frontier_between": between,
                          "diff_frontier": f.diff.mean, "diff_frontier_ci95": f.diff.half_width})  # fmt: skip
            print(
                f"{label} {run}: pass@1 {seeds[-1]['pass@1']:.3f} at NFE {nfe:.2f}; vs {best} "
                f"({heuristics[best]['nfe']:.2f}): {d.diff.mean:+.3f} +- {d.diff.half_width:.3f}; "
                f"vs the frontier ({between}): {f.diff.mean:+.3f} +- {f.diff.half_width:.3f}",
                flush=True,
            )

        groups[label] = {"seeds": seeds, "pass@1": over_seeds(seeds, "pass@1"), "nfe": over_seeds(seeds, "nfe"),
                         "diff_vs_best_heuristic": over_seeds(seeds, "diff"),
                         "diff_vs_frontier": over_seeds(seeds, "diff_frontier")}  # fmt: skip
        vs, vf = groups[label]["diff_vs_best_heuristic"], groups[label]["diff_vs_frontier"]
        (p, ph), (n, _) = groups[label]["pass@1"], groups[label]["nfe"]
        print(
            f"{label}: pass@1 {p:.3f} +- {ph:.3f}, NFE {n:.2f}, "
            f"vs best heuristic {vs[0]:+.3f} +- {vs[1]:.3f}, vs the frontier {vf[0]:+.3f} +- {vf[1]:.3f}"
        )

    table = {"model": args.model, "mode": args.mode, "split": args.split, "beta": args.beta,
             "heuristics": {k: {"pass@1": mean_pass(h["pass"]), "nfe": h["nfe"]}
                            for k, h in heuristics.items()}, "groups": groups}  # fmt: skip
    args.docs.with_suffix(".json").write_text(json.dumps(table, indent=1) + "\n")
    args.docs.with_suffix(".md").write_text(markdown(table))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    by_kind: dict[str, list[tuple[float, float]]] = {}
    for k, h in table["heuristics"].items():
        by_kind.setdefault(k.split("-")[0] if not k.startswith("entropy") else "entropy-bound", []).append(
            (h["nfe"], h["pass@1"])
        )
    for kind, pts in by_kind.items():
        pts.sort()
        ax.plot([x for x, _ in pts], [y for _, y in pts], "o-", ms=3, alpha=0.7, label=kind)
    corners = hull(heuristics)
    ax.plot([heuristics[k]["nfe"] for k in corners], [table["heuristics"][k]["pass@1"] for k in corners],
            "k--", lw=1, label="heuristics' frontier (upper hull)")  # fmt: skip
    for label, g in groups.items():
        xs = [s["nfe"] for s in g["seeds"]]
        ys = [s["pass@1"] for s in g["seeds"]]
        ax.plot(xs, ys, "*", ms=10, label=f"learned: {label} ({len(xs)} seed{'s' * (len(xs) > 1)})")
    ax.set_xlabel("mean NFE per completion (L = 48)")
    ax.set_ylabel(f"pass@1 ({args.split}, greedy)")
    ax.set_title(f"{args.model}, {args.mode}: learned policies (beta {args.beta:g}) vs heuristics")
    most = max(s["nfe"] for g in groups.values() for s in g["seeds"])
    ax.set_xlim(right=min(ax.get_xlim()[1], most + 5))  # not out to one token per step
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.docs.with_suffix(".png"), dpi=120)
    print(f"wrote {args.docs.with_suffix('.json')} and .png")


if __name__ == "__main__":
    main()
