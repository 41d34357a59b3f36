"""The NFE vs pass@1 frontier of unmasking policies on TinyCode, for one frozen diffusion model.

Heuristics, each swept over its knob (greedy tokens, one sample per task):
- confidence: a fixed number k of tokens per step, steps = L / k (k in 1, 2, 3, 4, 6, 8; semi-AR
  keeps the k that split evenly over its 6 blocks: 1, 2, 4, 8);
- threshold (Fast-dLLM): commit every masked position with confidence >= tau;
- factor (Fast-dLLM): the factor rule with f;
- entropy-bound (EB-sampler): gamma;
and learned policies (``--policy LABEL=DIR``, each at every ``--betas`` value), in semi-AR
decoding (``--mode semi-ar``: blocks of 8, dual cache) or full diffusion (``--mode full``: one
block of L, no cache). Every point is a ``demask eval`` folder under ``--out`` (rerunning skips
finished points); the table and plot go to ``<docs>.json`` / ``<docs>.png``.

    python experiments/learned_policy_frontier.py --split validation --mode semi-ar
    python experiments/learned_policy_frontier.py --split test --mode full \\
        --policy "alpha 1=runs/policy-full/checkpoint-0000200" --betas 0.5 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

L = 48
SWEEPS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "confidence": [(f"{k}/step", {"policy": "confidence", "steps": L // k}) for k in (1, 2, 3, 4, 6, 8)],
    "threshold": [
        (f"tau {t}", {"policy": "threshold", "policy_options": {"threshold": t}})
        for t in (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
    ],
    "factor": [(f"f {f}", {"policy": "factor", "policy_options": {"factor": f}}) for f in (0.5, 1.0, 2.0, 4.0)],
    "entropy-bound": [
        (f"gamma {g}", {"policy": "entropy-bound", "policy_options": {"gamma": g}}) for g in (0.01, 0.1, 0.3, 1.0)
    ],
}
MODES: dict[str, dict[str, Any]] = {
    "semi-ar": {"block_length": 8, "cache": "dual"},
    "full": {"block_length": None, "cache": "none"},
}


def point(
    model: Any, tok: Any, tasks: list, decode: dict[str, Any], out: Path, gen_length: int = L
) -> dict[str, float]:
    import torch

    from demask.decoding import DecodeConfig
    from demask.evaluation.runner import evaluate
    from demask.evaluation.sampler import decoding_sampler
    from demask.execution import Sandbox, SandboxConfig

    results_file = out / "results.json"
    if results_file.is_file():
        res = json.loads(results_file.read_text())
    else:
        config = DecodeConfig.from_dict({"gen_length": gen_length, "temperature": 0.0, **decode})
        with torch.no_grad(), Sandbox(SandboxConfig(workers=2, timeout_s=3.0)) as sandbox:
            res = evaluate(tasks, decoding_sampler(model, tok, config), 1, out, sandbox, batch_size=64,
                           run_info={"decode": json.loads(json.dumps(decode))}, progress=False)  # fmt: skip
    return {"pass@1": res["pass_at_k"]["pass@1"], "nfe": res["generation"]["mean_nfe"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("validation", "test"), default="validation")
    ap.add_argument("--mode", choices=tuple(MODES), default="semi-ar")
    ap.add_argument("--model", default="tinycode-mdm")
    ap.add_argument("--policy", action="append", default=[], help="LABEL=DIR of a trained policy (repeatable)")
    ap.add_argument("--betas", type=float, nargs="+", default=[1.0])
    ap.add_argument("--heuristics", nargs="*", default=list(SWEEPS))
    ap.add_argument("--settings", nargs="*", default=None, help="only these heuristic settings ('tau 0.9')")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/frontier")
    ap.add_argument("--docs", type=Path, default=None)
    ap.add_argument(
        "--gen-length", type=int, default=L, help="completion length (transfer: 96 on a policy trained at 48)"
    )
    ap.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=None,
        help="only the tasks whose prompt has at most this many tokens (room for a longer completion)",
    )
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from demask.model import load_pretrained
    from demask.tasks import load_tasks

    model, tok = load_pretrained(args.model, dtype="float32")
    model.eval()
    tasks = load_tasks(f"tinycode:{args.split}")
    if args.max_prompt_tokens is not None:
        tasks = [t for t in tasks if len(tok.encode(t.prompt)) <= args.max_prompt_tokens]
    mode = MODES[args.mode]
    gl = args.gen_length
    base = (
        args.out / f"{args.model}-{args.mode}-{args.split}"
        if gl == L and args.max_prompt_tokens is None  # another task subset or length: other folders
        else args.out / f"{args.model}-{args.mode}-{args.split}-L{gl}-p{args.max_prompt_tokens}"
    )
    curves: dict[str, list[dict[str, Any]]] = {}
    for name in args.heuristics:
        for label, decode in SWEEPS[name]:
            if name == "confidence" and (
                gl != L or (mode["block_length"] and (L // decode["steps"]) not in (1, 2, 4, 8))
            ):
                continue  # semi-AR: steps must split evenly over the 6 blocks
            if args.settings is not None and label not in args.settings:
                continue
            got = point(
                model, tok, tasks, {**mode, **decode}, base / f"{name}-{label.replace(' ', '_').replace('/', '_')}", gl
            )
            curves.setdefault(name, []).append({"setting": label, **got})
            print(f"{args.mode} {args.split} {name} {label}: {got}", flush=True)
    for spec in args.policy:
        label, _, path = spec.partition("=")
        for beta in args.betas:
            decode = {**mode, "policy": "learned", "policy_options": {"path": path, "beta": beta}}
            got = point(model, tok, tasks, decode, base / f"learned-{label.replace(' ', '_')}-beta{beta:g}", gl)
            curves.setdefault(f"learned ({label})", []).append({"setting": f"beta {beta:g}", **got})
            print(f"{args.mode} {args.split} learned {label} beta {beta}: {got}", flush=True)
    docs = args.docs or ROOT / f"docs/frontier_{args.mode}_{args.split}"
    table = {"model": args.model, "mode": args.mode, "split": args.split, "gen_length": gl, "num_tasks": len(tasks),
             "curves": curves}  # fmt: skip
    docs.with_suffix(".json").write_text(json.dumps(table, indent=1) + "\n")
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for name, pts in curves.items():
        pts = sorted(pts, key=lambda p: p["nfe"])
        ax.plot([p["nfe"] for p in pts], [p["pass@1"] for p in pts], "o-", label=name, ms=4)
    ax.set_xlabel(f"mean NFE per completion (L = {gl})")
    ax.set_ylabel(f"pass@1 ({args.split}, greedy)")
    ax.set_title(f"{args.model}, {args.mode}: NFE vs pass@1")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(docs.with_suffix(".png"), dpi=120)
    print(f"wrote {docs.with_suffix('.json')} and .png")


if __name__ == "__main__":
    main()
