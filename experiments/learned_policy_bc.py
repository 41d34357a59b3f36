"""The warm start alone: a policy network fitted to the threshold heuristic's decisions (no RL),
saved as a policy folder, so the frontier can show what RL adds on top of it.

    python experiments/learned_policy_bc.py --recipe tinycode/policy_full --threshold 0.9 --out runs/bc-full
    python experiments/learned_policy_bc.py --recipe tinycode/policy_semi_ar --threshold 0.95 --out runs/bc-semi

The same procedure (prompts, expert traces, imitation settings) as ``demask policy-train`` runs before RL with
``--set policy.imitate_threshold=T`` (same recipe fields, same seed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--threshold", type=float, required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from demask.decoding.policy_net import PolicyNet, PolicyNetConfig, save_policy
    from demask.model import load_pretrained
    from demask.tasks import load_tasks
    from demask.training.order import global_batch_indices
    from demask.training.posttrain.unmasking import expert_steps, imitate, load_policy_recipe, semi_ar_block

    recipe = load_policy_recipe(args.recipe)
    dllm, tokenizer = load_pretrained(recipe.dllm, dtype=recipe.dtype)
    tasks = load_tasks(recipe.tasks, **recipe.task_options)
    decode = recipe.policy.decode_config()
    p = recipe.policy
    picked = global_batch_indices(len(tasks), min(p.imitate_prompts, len(tasks)), recipe.train.seed, 10**6)
    steps = expert_steps(dllm, tokenizer, [tasks[int(i)] for i in picked], decode, args.threshold)
    fields = {**recipe.network, "block_length": semi_ar_block(decode), "gen_length": decode.gen_length}
    net = PolicyNet(PolicyNetConfig(**fields, trained_on=recipe.dllm))
    losses = imitate(net, steps, args.steps, seed=recipe.train.seed)
    save_policy(net, args.out)
    print(f"imitated threshold {args.threshold}: BCE {losses[0]:.3f} -> {losses[-1]:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
