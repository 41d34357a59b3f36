"""Choose a TinyCode model's decoders on the validation split: the best and the fastest.

Every decoder of a grid (by model kind: autoregressive, full-attention diffusion, block
diffusion) is run greedily on all validation tasks through the demo's pipeline (sandboxed
pass@1, NFE per token, tokens/s, AR-ness). Then

- **best**: the highest pass@1 (ties: the faster one);
- **fast**: the highest tokens/s among decoders within 0.01 pass@1 of the best.

``--write`` stores both in the model directory's ``decoders.json``, which `demask demo` and
``benchmarks/decode_speed.py`` read; the test split is never looked at here.

    .venv/bin/python experiments/choose_decoders.py --model runs/v2-block/checkpoint-0000900 \\
        --out runs/choose-block --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demask.demo import DemoPolicy, heldout_tasks, run_demo  # noqa: E402  # after the sys.path line

WITHIN = 0.01


def grid(config: Any, gen_length: int) -> list[DemoPolicy]:
    """The decoders tried for a model of ``config`` (a ModelConfig)."""
    g = gen_length
    if config.causal:
        return [DemoPolicy("autoregressive", dict(gen_length=g, cache="prefix"), model="m")]

    def threshold(value: float, **kw: Any) -> dict[str, Any]:
        return dict(gen_length=g, policy="threshold", policy_options={"threshold": value}, **kw)

    def ltr(value: float, **kw: Any) -> dict[str, Any]:
        return dict(gen_length=g, policy="left-to-right-threshold", policy_options={"threshold": value}, **kw)

    rows: list[tuple[str, dict[str, Any]]]
    if config.block_size is not None:
        cached = dict(gen_length=g, cache="dual")  # the exact block cache
        rows = [
            ("confidence, 1 token/step", dict(**cached, steps=g, policy="confidence")),
            ("confidence, 2 tokens/step", dict(**cached, steps=g // 2, policy="confidence")),
            ("entropy, 1 token/step", dict(**cached, steps=g, policy="entropy")),
            ("left-to-right, 1 token/step", dict(**cached, steps=g, policy="left-to-right")),
            ("factor 1.0", dict(**cached, policy="factor", policy_options={"factor": 1.0})),
        ]
        rows += [(f"threshold {t}", threshold(t, cache="dual")) for t in (0.7, 0.9, 0.95, 0.99)]
        rows += [(f"left-to-right-threshold {t}", ltr(t, cache="dual")) for t in (0.8, 0.9, 0.95, 0.99)]
    else:
        rows = [
            ("confidence, full diffusion", dict(gen_length=g, steps=g, policy="confidence")),
            (
                "confidence, 2 blocks",
                dict(gen_length=g, steps=g, block_length=g // 2, cache="dual", policy="confidence"),
            ),
            ("confidence, blocks of 8", dict(gen_length=g, steps=g, block_length=8, cache="dual", policy="confidence")),
            (
                "confidence, blocks of 8, 2 tokens/step",
                dict(gen_length=g, steps=g // 2, block_length=8, cache="dual", policy="confidence"),
            ),
            ("threshold 0.9, blocks of 8", threshold(0.9, block_length=8, cache="dual")),
            ("threshold 0.9, 2 blocks", threshold(0.9, block_length=g // 2, cache="dual")),
            ("threshold 0.7, blocks of 8", threshold(0.7, block_length=8, cache="dual")),
            ("left-to-right-threshold 0.9, blocks of 8", ltr(0.9, block_length=8, cache="dual")),
            ("left-to-right-threshold 0.95, blocks of 8", ltr(0.95, block_length=8, cache="dual")),
            ("left-to-right-threshold 0.9, 2 blocks", ltr(0.9, block_length=g // 2, cache="dual")),
        ]
    return [DemoPolicy(name, decode, model="m") for name, decode in rows]


def choose(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(best, fast) among result rows with pass_at_1 and tokens_per_s."""
    best = max(rows, key=lambda r: (r["pass_at_1"], r["tokens_per_s"]))
    close = [r for r in rows if r["pass_at_1"] >= best["pass_at_1"] - WITHIN - 1e-9]
    return best, max(close, key=lambda r: r["tokens_per_s"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint directory (with recipe.yaml) or shipped name")
    parser.add_argument("--out", required=True, help="directory for each decoder's samples and choose.json")
    parser.add_argument("--write", action="store_true", help="write decoders.json into the model directory")
    parser.add_argument("--max-tasks", type=int, default=None, help="first N validation tasks only (a smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves a core to the sandbox)")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)

    import torch

    from demask.model import load_pretrained, resolve_checkpoint
    from demask.training.recipe import load_recipe

    torch.set_num_threads(args.threads)
    model_dir = resolve_checkpoint(args.model)
    gen_length = load_recipe(model_dir / "recipe.yaml").data.completion_length
    model, tokenizer = load_pretrained(model_dir, dtype=args.dtype)
    tasks = heldout_tasks(model_dir, split="validation")[: args.max_tasks]
    policies = grid(model.config, gen_length)
    out = Path(args.out)
    results = run_demo(
        {"m": (model, tokenizer)},
        tasks,
        out,
        policies,
        log=lambda r: print(
            f"{r.policy:<40} pass@1 {r.pass_at_1:.3f}  NFE/token {r.nfe_per_token:.3f}  {r.tokens_per_s:7.0f} tok/s"
        ),
    )
    by_name = {p.name: p.decode for p in policies}
    rows = [{**r.as_json(), "decode": by_name[r.policy]} for r in results]
    best, fast = choose(rows)
    chosen = {
        "best": best["decode"],  # DecodeConfig fields
        "fast": fast["decode"],
        "names": {"best": best["policy"], "fast": fast["policy"]},
        "chosen_on": f"TinyCode validation split, {len(tasks)} tasks, greedy",
        "rule": f"best: highest pass@1; fast: most tokens/s within {WITHIN} pass@1 of the best",
        "validation": {r["policy"]: {k: r[k] for k in ("pass_at_1", "nfe_per_token", "tokens_per_s")} for r in rows},
    }
    (out / "choose.json").write_text(json.dumps({"rows": rows, "chosen": chosen}, indent=1) + "\n")
    print(f"best: {best['policy']} ({best['pass_at_1']:.3f}); fast: {fast['policy']} ({fast['pass_at_1']:.3f}, "
          f"{fast['tokens_per_s']:.0f} tok/s)")  # fmt: skip
    if args.write:
        (model_dir / "decoders.json").write_text(json.dumps(chosen, indent=1) + "\n")
        print(f"wrote {model_dir / 'decoders.json'}")
    return chosen


if __name__ == "__main__":
    main()
