"""RRTF against its baselines on TinyCode v2, the shipped diffusion model as the student.

The samples and the ranking come from ``demask rrtf sample`` and ``demask rrtf rank`` with
``recipes/tinycode/rrtf.yaml`` (400 fresh prompts; the student tinycode-mdm, the teachers
tinycode-ar and tinycode-block; 2 temperatures x 4 responses each). Every method then trains
the student for the same number of optimizer updates on the same batch size:

- ``rrtf``: rank loss (score-gap weighted hinge) + SFT on the teacher's responses;
- ``sft``: the same pairs, SFT on the teacher's responses alone;
- ``rrhf``: unweighted hinge over every ranked pair + SFT on the best response;
- ``rejection-sampling``: SFT on the student's own passing responses.

Phases (choices on the validation split, the test split once):

    python experiments/rrtf_experiment.py --phase validation           # seed 0, rank_weight grid
    python experiments/rrtf_experiment.py --phase test --rank-weight W --seeds 0 1 2

Each run lives in ``<out>/<method>[-w<W>]-s<seed>/`` (checkpoints, then ``eval-<split>/``);
rerunning skips what is finished. Greedy pass@1 with the student's best decoder
(decoders.json). The test phase writes ``docs/rrtf.json`` and ``docs/rrtf.png``: per method
the mean over seeds with its 95% t-interval, and per-task paired differences (each task's
pass averaged over the seeds) of RRTF against every other method and the untrained student.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("rrtf", "sft", "rrhf", "rejection-sampling")


def evaluate_checkpoint(checkpoint: Path | str, split: str, out: Path) -> dict[str, Any]:
    """Greedy pass@1 of a checkpoint on TinyCode ``split`` with the student's best decoder."""
    import torch

    from demask.decoding import DecodeConfig
    from demask.demo import model_decoders
    from demask.evaluation.runner import evaluate
    from demask.evaluation.sampler import decoding_sampler
    from demask.execution import Sandbox, SandboxConfig
    from demask.model import load_pretrained
    from demask.model.hub import resolve_checkpoint
    from demask.tasks import load_tasks

    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    model, tok = load_pretrained(checkpoint, dtype="float32")
    model.eval()
    best = model_decoders(resolve_checkpoint("tinycode-mdm"), 48)["best"]
    decode = DecodeConfig.from_dict({**best, "temperature": 0.0})
    with torch.no_grad(), Sandbox(SandboxConfig(workers=2, timeout_s=3.0)) as sandbox:
        return evaluate(
            load_tasks(f"tinycode:{split}"),
            decoding_sampler(model, tok, decode),
            1,
            out,
            sandbox,
            batch_size=64,
            run_info={"checkpoint": str(checkpoint), "split": split},
            progress=False,
        )


def train_run(method: str, rank_weight: float, seed: int, out: Path, recipe_path: str) -> Path:
    """Train one (method, seed) from the ranked data; returns the final checkpoint."""
    from demask.training.checkpointing import latest_checkpoint
    from demask.training.posttrain.rrtf import load_rrtf_recipe, run_train

    recipe = load_rrtf_recipe(recipe_path)
    final = out / f"checkpoint-{recipe.train.max_steps:07d}"
    if final.is_dir():
        return final
    options = {**recipe.algorithm_options, "rank_weight": rank_weight}
    recipe = dataclasses.replace(
        recipe,
        algorithm=method,
        algorithm_options=options,
        eval=None,
        train=recipe.train.override(seed=seed, out_dir=str(out), save_every=recipe.train.max_steps),
    )
    run_train(recipe, resume=latest_checkpoint(out) is not None, log=print)
    return final


def run_name(method: str, rank_weight: float, seed: int) -> str:
    weighted = method in ("rrtf", "rrhf")
    return f"{method}-w{rank_weight:g}-s{seed}" if weighted else f"{method}-s{seed}"


def scores(results: dict[str, Any]) -> dict[str, float]:
    from demask.evaluation.compare import task_scores

    return task_scores(results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=("validation", "test"), required=True)
    ap.add_argument("--recipe", default="tinycode/rrtf")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/rrtf/exp")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--rank-weights", type=float, nargs="+", default=[1.0, 10.0], help="validation grid (rrtf, rrhf)")
    ap.add_argument("--rank-weight", type=float, default=1.0, help="test: the weight chosen on validation")
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = ap.parse_args()

    split = args.phase
    start = evaluate_checkpoint("tinycode-mdm", split, args.out / f"start-eval-{split}")
    table: dict[str, Any] = {"student": {"pass@1": start["pass_at_k"]["pass@1"]}}
    per_run: dict[str, dict[str, float]] = {"student": scores(start)}
    weights = args.rank_weights if args.phase == "validation" else [args.rank_weight]
    for method in args.methods:
        for w in weights if method in ("rrtf", "rrhf") else [weights[0]]:
            for seed in args.seeds:
                name = run_name(method, w, seed)
                ckpt = train_run(method, w, seed, args.out / name, args.recipe)
                res = evaluate_checkpoint(ckpt, split, args.out / name / f"eval-{split}")
                per_run[name] = scores(res)
                table[name] = {"pass@1": res["pass_at_k"]["pass@1"]}
                print(f"{split}: {name} pass@1 {res['pass_at_k']['pass@1']:.3f}", flush=True)
    if args.phase == "validation":
        path = args.docs / "rrtf_validation.json"
        path.write_text(json.dumps({"split": "validation", "runs": table}, indent=1) + "\n")
        print(f"wrote {path}")
        return
    report(args, per_run)


def report(args: argparse.Namespace, per_run: dict[str, dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from demask.evaluation.stats import mean_interval, paired_difference

    methods = ["student", *args.methods]
    by_method: dict[str, list[dict[str, float]]] = {"student": [per_run["student"]]}
    for m in args.methods:
        by_method[m] = [per_run[run_name(m, args.rank_weight, s)] for s in args.seeds]
    summary: dict[str, Any] = {}
    for m in methods:
        iv = mean_interval([sum(r.values()) / len(r) for r in by_method[m]])
        summary[m] = {"mean": iv.mean, "ci95": iv.half_width, "seeds": iv.n}
    averaged = {m: {k: sum(r[k] for r in rs) / len(rs) for k in rs[0]} for m, rs in by_method.items()}
    paired = {}
    for other in methods:
        if other == "rrtf" or "rrtf" not in averaged:
            continue
        d = paired_difference(averaged[other], averaged["rrtf"])
        paired[f"rrtf - {other}"] = {
            "diff": d.diff.mean, "low": d.diff.low, "high": d.diff.high, "gained": d.gained, "lost": d.lost,
        }  # fmt: skip
    out = {
        "split": "test",
        "seeds": args.seeds,
        "rank_weight": args.rank_weight,
        "methods": summary,
        "paired": paired,
        "runs": {k: sum(v.values()) / len(v) for k, v in per_run.items()},
    }
    (args.docs / "rrtf.json").write_text(json.dumps(out, indent=1) + "\n")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    xs = range(len(methods))
    ax.bar(xs, [summary[m]["mean"] for m in methods], yerr=[summary[m]["ci95"] for m in methods], capsize=4,
           color=["0.6", "C3", "C0", "C1", "C2"][: len(methods)])  # fmt: skip
    for i, m in enumerate(methods):
        ax.scatter([i] * len(by_method[m]), [sum(r.values()) / len(r) for r in by_method[m]], color="k", s=8, zorder=3)
    ax.set_xticks(list(xs), methods)
    ax.set_ylabel("held-out pass@1 (test, greedy)")
    lo = min(summary[m]["mean"] for m in methods) - 0.05
    ax.set_ylim(max(0.0, lo), min(1.0, max(summary[m]["mean"] for m in methods) + 0.05))
    ax.set_title(f"TinyCode v2: post-training the diffusion student ({len(args.seeds)} seeds, 95% CI)")
    fig.tight_layout()
    fig.savefig(args.docs / "rrtf.png", dpi=120)
    print(json.dumps(out["methods"], indent=1))
    print(json.dumps(paired, indent=1))


if __name__ == "__main__":
    main()
