"""Coupled-GRPO against its baseline estimators on TinyCode, from the shipped SFT model.

For each estimator (coupled, decoupled, full_mask, d1) and each seed, one GRPO run from
``demask/assets/tinycode-mdm`` with the recipe ``recipes/tinycode/grpo_estimators.yaml``
(the same rounds, rollouts, prompts and optimizer updates for every estimator: the budget
is the number of updates; the table also lists each estimator's forward passes per
log-prob estimate, 3 for coupled/decoupled, 1 for full_mask/d1. ``--match-passes`` gives
1-pass estimators 3x the inner iterations instead, so that every estimator spends the same
number of log-prob forward passes), then on the held-out TinyCode split:

- pass@1 with the demo's decoder (greedy, confidence policy, 48 steps in two blocks of 24
  with the dual KV cache, bf16 weights where the CPU has native bf16: ``demask demo``'s
  first row);
- pass@k at temperature 1.0 (``--samples`` per task, unbiased estimator);
- global AR-ness of the greedy decoding order (demask.analysis.trace_arness).

The SFT model is scored the same way once ("sft" row). Every (estimator, seed) run lives in
``<out>/<estimator>-s<seed>/`` (training checkpoints, then ``eval-greedy/`` and
``eval-t1/``, then ``result.json``): rerunning the script skips finished runs and resumes
unfinished ones (training from its newest checkpoint, evaluation from its samples file), so
the grid can be spread over several sessions. The summary is rewritten after each run:
``<docs>.md`` (table: mean and 95% t-interval over seeds), ``<docs>.json`` and ``<docs>.png``.

    .venv/bin/python experiments/grpo_estimators.py                     # full grid, 3 seeds
    .venv/bin/python experiments/grpo_estimators.py --quick             # minutes: a smoke run
    .venv/bin/python experiments/grpo_estimators.py --estimators coupled --seeds 1

Two processes share a 2-core machine better than one (one torch thread each): split the
estimators (``--estimators coupled,decoupled`` beside ``--estimators full_mask,d1``), or run
the same ones with ``--reverse``; a run is claimed by its process (``claim.pid``) so that two
processes never work on one run, and the report gathers every finished run under ``--out``.

Not covered: estimators' wall-clock cost (the machine is shared; we count forward passes),
the autoregressive baseline (it needs the AR twin model and its own recipe).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SFT = ROOT / "demask" / "assets" / "tinycode-mdm"
PASSES = {"coupled": 3, "decoupled": 3, "full_mask": 1, "d1": 1}


def mean_ci(values: list[float]) -> dict[str, float]:
    """Mean and the half-width of its 95% t-interval (0 for one value)."""
    from demask.evaluation.stats import mean_interval

    iv = mean_interval(values)
    return {"mean": iv.mean, "ci95": iv.half_width, "n": iv.n}


def evaluate_model(
    model, tokenizer, tasks, out: Path, *, samples: int, ks: tuple[int, ...], workers: int, batch_size: int = 64
) -> dict[str, float]:
    """Greedy pass@1 + global AR-ness, and pass@k at temperature 1.0, of one model."""
    import torch

    from demask.analysis import trace_arness
    from demask.decoding import DecodeConfig
    from demask.evaluation import evaluate
    from demask.evaluation.sampler import decoding_sampler
    from demask.execution import Sandbox, SandboxConfig

    # the demo's decoder (demask.demo.default_policies): two blocks of 24, dual cache
    one = dict(gen_length=48, steps=48, block_length=24, cache="dual", policy="confidence")
    greedy = DecodeConfig(**one, temperature=0.0, trace=True)
    sampled = DecodeConfig(**one, temperature=1.0)
    arness: list[float] = []

    def observe(output):
        arness.extend(v for v in trace_arness(output.trace)["global"] if not math.isnan(v))

    model.eval()
    with Sandbox(SandboxConfig(workers=workers, timeout_s=3.0)) as sandbox, torch.inference_mode():
        g = evaluate(
            tasks,
            decoding_sampler(model, tokenizer, greedy, observe=observe),
            1,
            out / "eval-greedy",
            sandbox,
            batch_size=batch_size,
            ks=(1,),
            progress=False,
            run_info={"decode": "greedy confidence 48 steps, 2 blocks, dual cache"},
        )
        arness_file = out / "eval-greedy" / "global_ar_ness.json"
        if arness:
            arness_file.write_text(json.dumps(arness) + "\n")
        elif arness_file.is_file():  # resumed after the greedy evaluation had finished
            arness = json.loads(arness_file.read_text())
        s = evaluate(
            tasks,
            decoding_sampler(model, tokenizer, sampled),
            samples,
            out / "eval-t1",
            sandbox,
            batch_size=batch_size,
            ks=ks,
            progress=False,
            run_info={"decode": "confidence 48 steps, 2 blocks, dual cache, temperature 1.0"},
        )
    row = {
        "pass@1_greedy": float(g["pass_at_k"]["pass@1"]),
        "global_ar_ness": statistics.fmean(arness) if arness else float("nan"),
    }
    for k in ks:
        row[f"pass@{k}_t1"] = float(s["pass_at_k"].get(f"pass@{k}", float("nan")))
    return row


def run_one(args, estimator: str, seed: int, tasks, out: Path) -> dict:
    """Train (resumably) one (estimator, seed) run and evaluate its final policy."""
    from demask.demo import inference_dtype
    from demask.model import load_pretrained
    from demask.training.checkpointing import latest_checkpoint
    from demask.training.rl.grpo_recipe import load_grpo_recipe, override_grpo_recipe, run_grpo_recipe

    done_file = out / "result.json"
    if done_file.is_file():
        return json.loads(done_file.read_text())
    recipe = override_grpo_recipe(
        load_grpo_recipe(args.recipe), out_dir=str(out / "train"), estimator=estimator, seed=seed
    )
    grpo, train = recipe.grpo, recipe.train
    if args.quick:
        grpo = grpo.replace(group_size=4, prompts_per_step=4, rollout=grpo.rollout.replace(steps=12))
        train = train.replace(max_steps=4, save_every=2)
    if args.max_steps is not None:
        train = train.replace(max_steps=args.max_steps)
    if args.match_passes and PASSES[estimator] == 1:
        grpo = grpo.replace(inner_iterations=grpo.inner_iterations * 3)
        train = train.replace(
            max_steps=train.max_steps * 3, save_every=train.save_every * 3, log_every=train.log_every * 3
        )
    train = train.replace(progress=not args.quiet)
    recipe = dataclasses.replace(
        recipe, grpo=grpo, training=train, eval=None, task_options={**recipe.task_options, **args.task_options}
    )
    t0 = time.perf_counter()
    result = run_grpo_recipe(recipe, resume=True, log=None if args.quiet else print)
    train_s = time.perf_counter() - t0
    model, tokenizer = load_pretrained(latest_checkpoint(out / "train"), dtype=inference_dtype())
    row = evaluate_model(model, tokenizer, tasks, out, samples=args.samples, ks=args.ks, workers=args.workers)
    row.update(
        estimator=estimator,
        seed=seed,
        updates=result.step,
        train_seconds=train_s,
        passes_per_estimate=PASSES[estimator],
        inner_iterations=grpo.inner_iterations,
        last_round={k: result.metrics.get(k) for k in ("reward_mean", "pass_rate", "kl")},
    )
    done_file.write_text(json.dumps(row, indent=1) + "\n")
    return row


def claim(run_dir: Path) -> bool:
    """Claim a run for this process (``run_dir/claim.pid``); False if a live process other
    than this one holds it. A claim left by a dead process is taken over (resume)."""
    import os

    run_dir.mkdir(parents=True, exist_ok=True)
    f = run_dir / "claim.pid"
    try:
        pid = int(f.read_text())
    except (OSError, ValueError):
        pid = None
    if pid is not None and pid != os.getpid():
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            pass
    f.write_text(str(os.getpid()))
    return True


def finished_runs(out: Path) -> list[dict]:
    """The result.json of every finished (estimator, seed) run under ``out``, in PASSES order."""
    rows = [json.loads(f.read_text()) for f in out.glob("*-s*/result.json")]
    order = list(PASSES)
    return sorted(
        (r for r in rows if r.get("estimator") in PASSES), key=lambda r: (order.index(r["estimator"]), r["seed"])
    )


def summarize(rows: list[dict], baseline: dict, metrics: list[str]) -> dict:
    table = {"sft": {m: {"mean": baseline[m], "ci95": 0.0, "n": 1} for m in metrics}}
    for est in dict.fromkeys(r["estimator"] for r in rows):
        mine = [r for r in rows if r["estimator"] == est]
        table[est] = {m: mean_ci([r[m] for r in mine]) for m in metrics}
        table[est]["passes_per_estimate"] = PASSES[est]
    return table


def write_report(table: dict, rows: list[dict], metrics: list[str], docs: Path, args) -> None:
    docs.parent.mkdir(parents=True, exist_ok=True)
    (docs.with_suffix(".json")).write_text(
        json.dumps({"table": table, "runs": rows, "quick": args.quick}, indent=1) + "\n"
    )
    head = "| model | passes/estimate | seeds | " + " | ".join(metrics) + " |"
    lines = [
        "# GRPO estimators on TinyCode (experiments/grpo_estimators.py)",
        "",
        "Held-out TinyCode (all tasks unless --eval-tasks), from the shipped SFT model; mean "
        "and 95% t-interval over seeds. pass@1_greedy and global_ar_ness: greedy confidence "
        "decoding, 48 steps in 2 blocks of 24, dual cache (the demo's decoder); pass@k_t1: temperature 1.0, "
        f"{args.samples} samples per task.",
        "",
        f"Budget per run: {sorted({r['updates'] for r in rows})} optimizer updates with "
        f"`{Path(args.recipe).relative_to(ROOT) if Path(args.recipe).is_relative_to(ROOT) else args.recipe}`"
        f"{' (--match-passes: 1-pass estimators get 3x the inner iterations)' if args.match_passes else ''}. "
        "Plot: docs/grpo_estimators.png (dots: seeds; red: mean and 95% interval; dashed: "
        "the SFT model).",
        "" if not args.quick else "\n**Quick configuration: a smoke run, not a result.**",
        "",
        head,
        "|" + "---|" * (3 + len(metrics)),
    ]
    for name, cells in table.items():
        vals = [
            f"{cells[m]['mean']:.3f} ± {cells[m]['ci95']:.3f}" if name != "sft" else f"{cells[m]['mean']:.3f}"
            for m in metrics
        ]
        n = cells[metrics[0]]["n"]
        lines.append(f"| {name} | {cells.get('passes_per_estimate', '-')} | {n} | " + " | ".join(vals) + " |")
    docs.with_suffix(".md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
    names = [n for n in table if n != "sft"]
    for ax, m in zip(axes[0], metrics):
        # the SFT model as a line, each seed as a dot, mean and 95% interval as a bar
        ax.axhline(table["sft"][m]["mean"], color="grey", linestyle="--", label="SFT model")
        for x, name in enumerate(names):
            seeds = [r[m] for r in rows if r["estimator"] == name]
            ax.scatter([x] * len(seeds), seeds, color="C0", alpha=0.5, s=14)
            ax.errorbar(x + 0.15, table[name][m]["mean"], yerr=table[name][m]["ci95"], fmt="o", color="C3", capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=30)
        ax.set_xlim(-0.5, len(names) - 0.3)
        ax.set_title(m)
    axes[0][0].legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(docs.with_suffix(".png"), dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--estimators", default="coupled,decoupled,full_mask,d1")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per estimator")
    p.add_argument("--recipe", default=str(ROOT / "recipes/tinycode/grpo_estimators.yaml"))
    p.add_argument("--max-steps", type=int, default=None, help="override the recipe's updates")
    p.add_argument(
        "--match-passes",
        action="store_true",
        help="give 1-pass estimators 3x the inner iterations (same forward passes)",
    )
    p.add_argument("--samples", type=int, default=5, help="samples per task at temperature 1.0")
    p.add_argument("--eval-tasks", type=int, default=None, help="first N held-out tasks (default all)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "runs/grpo_estimators"))
    p.add_argument("--docs", default=str(ROOT / "docs/grpo_estimators"))
    p.add_argument(
        "--quick", action="store_true", help="smoke configuration: 4 updates, G=4, 4 prompts, 32 tasks, 4 samples"
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--reverse", action="store_true", help="take the runs last first (a second process helping with the same grid)"
    )
    args = p.parse_args(argv)
    args.task_options = {}
    if args.quick:
        args.samples = min(args.samples, 4)
        args.eval_tasks = args.eval_tasks or 32
        args.task_options = {"n_train": 300}  # builds in a second; the test split is unchanged
        if args.out == p.get_default("out"):
            args.out += "-quick"
        if args.docs == p.get_default("docs"):  # a smoke run does not overwrite docs/
            args.docs = str(Path(args.out) / "summary")
    args.ks = tuple(k for k in (1, 5, 10) if k <= args.samples)

    from demask.demo import heldout_tasks, inference_dtype
    from demask.model import load_pretrained

    tasks = heldout_tasks(SFT)
    if args.eval_tasks:
        tasks = tasks[: args.eval_tasks]
    out = Path(args.out)
    metrics = ["pass@1_greedy"] + [f"pass@{k}_t1" for k in args.ks] + ["global_ar_ness"]
    base_file = out / "sft" / "result.json"
    if base_file.is_file():
        baseline = json.loads(base_file.read_text())
    else:
        model, tokenizer = load_pretrained(SFT, dtype=inference_dtype())
        baseline = evaluate_model(
            model, tokenizer, tasks, out / "sft", samples=args.samples, ks=args.ks, workers=args.workers
        )
        base_file.write_text(json.dumps(baseline, indent=1) + "\n")
    print("sft:", {m: round(baseline[m], 4) for m in metrics})
    estimators = args.estimators.split(",")
    for est in estimators:
        if est not in PASSES:
            raise SystemExit(f"unknown estimator {est!r}; choose from {sorted(PASSES)}")
    grid = [(est, seed) for est in estimators for seed in range(args.seeds)]
    for est, seed in reversed(grid) if args.reverse else grid:
        run_dir = out / f"{est}-s{seed}"
        if not (run_dir / "result.json").is_file() and not claim(run_dir):
            print(f"{est} seed {seed}: another process is on it; skipped")
            continue
        row = run_one(args, est, seed, tasks, run_dir)
        (run_dir / "claim.pid").unlink(missing_ok=True)
        print(f"{est} seed {seed}:", {m: round(row[m], 4) for m in metrics})
        # every finished run under --out, also those of other processes (two processes share
        # a 2-core machine better than one: --estimators split, or --reverse on the same ones)
        rows = finished_runs(out)
        write_report(summarize(rows, baseline, metrics), rows, metrics, Path(args.docs), args)
    print(f"wrote {args.docs}.md / .json / .png")


if __name__ == "__main__":
    main()
