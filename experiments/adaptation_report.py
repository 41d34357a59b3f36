"""Learning curves, entropy sink and AR-ness of TinyCode models adapted from the AR twin.

For every training run (``--run LABEL=DIR``: a `demask train` output directory with its
checkpoints and train_log.csv) each kept checkpoint is scored greedily on the **validation**
split with one fixed decoder (``--decode LABEL=JSON``, default one token per step by
confidence; the exact block cache for block-causal models), through the ordinary evaluation
pipeline (resumable: finished checkpoints are read back from ``--out``). The x axis is the
run's wall-clock minutes at that step (train_log.csv's elapsed_s; 2 threads on 2 cores).

For the last checkpoint of each run (and any ``--model LABEL=DIR``), on the first
``--sink-tasks`` validation prompts: the first-step confidence by completion position (the
entropy sink: DiffuCoder's L-shape; for a block model, the first step of each block) and the
global AR-ness of greedy confidence decoding, one token per step.

    .venv/bin/python experiments/adaptation_report.py --run "adapted=runs/v2-adapt" \\
        --run "block=runs/v2-block" --model "AR twin=runs/v2-ar/checkpoint-0001200" \\
        --out runs/adaptation-report --docs docs/adaptation

Writes ``<docs>.json`` (every figure) and ``<docs>.png`` (curves and sink profiles).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pairs(values: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        label, sep, rest = value.partition("=")
        if not sep:
            raise SystemExit(f"{what} {value!r}: expected LABEL=VALUE")
        out.append((label, rest))
    return out


def elapsed_minutes(run_dir: Path) -> dict[int, float]:
    """step -> wall minutes since the run started, from train_log.csv (interpolated)."""
    with open(run_dir / "train_log.csv") as f:
        rows = [(int(r["step"]), float(r["elapsed_s"])) for r in csv.DictReader(f)]
    return {step: s / 60 for step, s in rows}


def default_decode(config: Any, gen_length: int) -> dict[str, Any]:
    if config.causal:
        return {"gen_length": gen_length, "cache": "prefix"}
    if config.block_size is not None:
        return {"gen_length": gen_length, "steps": gen_length, "policy": "confidence", "cache": "dual"}
    return {"gen_length": gen_length, "steps": gen_length, "block_length": gen_length // 2, "cache": "dual"}


def curve(label: str, run_dir: Path, decode: dict[str, Any] | None, tasks: list, out: Path) -> list[dict[str, Any]]:
    import torch

    from demask.demo import DemoPolicy, run_demo
    from demask.model import load_pretrained
    from demask.training.recipe import load_recipe

    minutes = elapsed_minutes(run_dir)
    points = []
    for ckpt in sorted(run_dir.glob("checkpoint-*")):
        step = int(ckpt.name.split("-")[1])
        model, tok = load_pretrained(ckpt, dtype="float32")
        gen_length = load_recipe(ckpt / "recipe.yaml").data.completion_length
        spec = DemoPolicy(f"{label}-{step}", decode or default_decode(model.config, gen_length), model="m")
        with torch.inference_mode():
            (row,) = run_demo({"m": (model, tok)}, tasks, out / "curves", [spec])
        near = min(minutes, key=lambda s: abs(s - step))
        points.append({"step": step, "minutes": round(minutes[near], 2), "pass_at_1": row.pass_at_1})
        print(f"{label} step {step}: {minutes[near]:.1f} min, validation pass@1 {row.pass_at_1:.3f}")
    return points


def sink_and_arness(model_dir: Path, tasks: list, n: int) -> dict[str, Any]:
    """First-step confidence by completion position, and global AR-ness, of greedy confidence
    decoding one token per step (full diffusion for a full-attention model)."""
    import torch

    from demask.analysis import trace_arness
    from demask.decoding import DecodeConfig, generate
    from demask.model import load_pretrained
    from demask.training.recipe import load_recipe

    model, tok = load_pretrained(model_dir, dtype="float32")
    gen_length = load_recipe(model_dir / "recipe.yaml").data.completion_length
    prompts = [tok.encode(t.prompt) for t in tasks[:n]]
    decode = {"gen_length": gen_length, "cache": "prefix"}
    if not model.config.causal:
        decode = {"gen_length": gen_length, "steps": gen_length, "policy": "confidence", "early_stop": False}
        if model.config.block_size is not None:
            decode["cache"] = "dual"
    with torch.inference_mode():
        out = generate(model, prompts, DecodeConfig(**decode, trace=True, seed=0))
    assert out.trace is not None
    sink = [0.0] * gen_length
    count = [0] * gen_length
    seen_offsets: set[int] = set()
    for step in out.trace.steps:  # the first step of each block: every row takes part
        if step.offset in seen_offsets:
            continue
        seen_offsets.add(step.offset)
        conf = step.confidence.float().mean(0).tolist()
        for j, c in enumerate(conf):
            sink[step.offset + j] += c
            count[step.offset + j] += 1
    glob = [v for v in trace_arness(out.trace)["global"] if not math.isnan(v)]
    profile = [s / max(c, 1) for s, c in zip(sink, count, strict=True)]
    return {
        # an autoregressive model has no first step over a block: no sink profile
        "first_step_confidence": None if model.config.causal else profile,
        "global_ar_ness": sum(glob) / max(len(glob), 1),
        "block_size": model.config.block_size,
        "causal": model.config.causal,
        "n_prompts": len(prompts),
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for label, points in report["curves"].items():
        a.plot([p["minutes"] for p in points], [p["pass_at_1"] for p in points], "o-", label=label)
    a.set_xlabel("training wall minutes (2 cores)")
    a.set_ylabel("validation pass@1 (greedy)")
    a.set_title("learning curves")
    a.grid(alpha=0.3)
    a.legend()
    for label, sink in report["sink"].items():
        if sink["causal"]:
            continue
        b.plot(range(len(sink["first_step_confidence"])), sink["first_step_confidence"], label=label)
    b.set_xlabel("completion position")
    b.set_ylabel("first-step top-1 probability")
    b.set_title("entropy sink (first step of each block)")
    b.grid(alpha=0.3)
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], help="LABEL=DIR of a training run")
    parser.add_argument("--decode", action="append", default=[], help="LABEL=JSON decoder for that run's curve")
    parser.add_argument("--model", action="append", default=[], help="LABEL=DIR extra model for sink/AR-ness")
    parser.add_argument("--out", required=True, help="working directory (evaluations, resumable)")
    parser.add_argument("--docs", required=True, help="path prefix of the .json and .png written")
    parser.add_argument("--max-tasks", type=int, default=None)
    parser.add_argument("--sink-tasks", type=int, default=64)
    args = parser.parse_args(argv)

    import torch

    from demask.demo import heldout_tasks

    torch.set_num_threads(1)
    runs = [(label, Path(d)) for label, d in _pairs(args.run, "--run")]
    decodes = {label: json.loads(v) for label, v in _pairs(args.decode, "--decode")}
    extra = [(label, Path(d)) for label, d in _pairs(args.model, "--model")]
    first = sorted(runs[0][1].glob("checkpoint-*"))[-1] if runs else extra[0][1]
    tasks = heldout_tasks(first, split="validation")[: args.max_tasks]
    out = Path(args.out)
    report: dict[str, Any] = {"split": "validation", "num_tasks": len(tasks), "curves": {}, "sink": {}}
    for label, run_dir in runs:
        report["curves"][label] = curve(label, run_dir, decodes.get(label), tasks, out)
    finals = [(label, sorted(d.glob("checkpoint-*"))[-1]) for label, d in runs] + extra
    for label, model_dir in finals:
        report["sink"][label] = sink_and_arness(model_dir, tasks, args.sink_tasks)
        print(f"{label}: global AR-ness {report['sink'][label]['global_ar_ness']:.3f}")
    docs = Path(args.docs)
    docs.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    plot(report, docs.with_suffix(".png"))
    print(f"wrote {docs.with_suffix('.json')} and {docs.with_suffix('.png')}")
    return report


if __name__ == "__main__":
    main()
