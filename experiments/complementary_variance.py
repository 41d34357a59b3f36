"""Complementary masks (Fast-dLLM v2) vs plain masks for the block-diffusion objective: the
variance of the loss and of the gradient estimate at equal compute.

On a fixed batch of TinyCode training rows and a trained block-diffusion model, each estimate
costs two forwards per row:

- **plain**: the mean of two independent mask draws;
- **complementary**: a mask and its complement (every target scored exactly once).

Over ``--draws`` repetitions: the variance of the batch-mean loss, and the mean squared
distance of the gradient from the mean gradient (its trace variance), with bootstrap 95%
intervals of the ratio complementary / plain.

    .venv/bin/python experiments/complementary_variance.py --model runs/v2-block/checkpoint-0000900 \\
        --out docs/complementary_variance.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def estimates(model: Any, batch: Any, objective: Any, draws: int, seed: int, gradients: bool) -> dict[str, Any]:
    """Per draw: the batch-mean loss and (optionally) the flattened gradient, for both kinds."""
    import torch

    from demask.training.objectives import block_diffusion_loss

    params = [p for p in model.parameters() if p.requires_grad]
    out: dict[str, Any] = {"plain": {"loss": [], "grad": []}, "complementary": {"loss": [], "grad": []}}
    width = batch.width
    for i in range(draws):
        g = torch.Generator().manual_seed(seed + i)
        a = objective.draw_noise(len(batch.input_ids), width, g)
        b = objective.draw_noise(len(batch.input_ids), width, g)
        t_a, u_a = per_position(objective, a, width)
        t_b, u_b = per_position(objective, b, width)
        pairs = {
            "plain": (torch.cat([t_a, t_b]), torch.cat([u_a, u_b])),
            "complementary": (torch.cat([t_a, (1 - t_a).clamp(min=objective.mask_eps)]), torch.cat([u_a, 1 - u_a])),
        }
        for kind, (t, u) in pairs.items():
            model.zero_grad(set_to_none=True)
            loss = block_diffusion_loss(
                model, batch.repeat(2), t, u, mask_token_id=objective.mask_token_id,
                shifted=model.config.shift_logits, block_size=objective.block_size,
            ).loss  # fmt: skip
            out[kind]["loss"].append(float(loss))
            if gradients:
                loss.backward()
                out[kind]["grad"].append(torch.cat([p.grad.flatten() for p in params]).clone())
    return out


def per_position(objective: Any, noise: dict[str, Any], width: int) -> tuple[Any, Any]:
    return objective.position_rates(noise["t"], width), noise["u"]


def summarise(values: dict[str, Any], boot: int = 2000) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    result: dict[str, Any] = {}
    for key in ("loss", "grad"):
        per_kind = {}
        for kind in ("plain", "complementary"):
            xs = values[kind][key]
            if not xs:
                continue
            if key == "loss":
                arr = np.asarray(xs)
                dev = (arr - arr.mean()) ** 2
            else:
                import torch

                stacked = torch.stack(xs).double()
                dev = ((stacked - stacked.mean(0)) ** 2).sum(1).numpy()
            per_kind[kind] = dev
        if len(per_kind) < 2:
            continue
        n = len(per_kind["plain"])
        ratios = []
        for _ in range(boot):
            idx = rng.integers(0, n, n)
            ratios.append(per_kind["complementary"][idx].mean() / per_kind["plain"][idx].mean())
        result[key] = {
            "variance_plain": float(per_kind["plain"].mean() * n / (n - 1)),
            "variance_complementary": float(per_kind["complementary"].mean() * n / (n - 1)),
            "ratio": float(per_kind["complementary"].mean() / per_kind["plain"].mean()),
            "ratio_95": [float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))],
        }
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--draws", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-gradients", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from demask.model import load_pretrained, resolve_checkpoint
    from demask.training.objectives import build_objective
    from demask.training.recipe import load_recipe
    from demask.training.sources import build_source

    model_dir = resolve_checkpoint(args.model)
    model, tokenizer = load_pretrained(model_dir, dtype="float32")
    recipe = load_recipe(model_dir / "recipe.yaml")
    recipe.data.options = {**recipe.data.options, "n_train": 2000}
    data = build_source(recipe.data).examples(tokenizer, model.config)
    batch = data.batch(torch.arange(args.rows))
    objective = build_objective("block-diffusion", model.config)
    raw = estimates(model.train(), batch, objective, args.draws, args.seed, not args.no_gradients)
    report = {
        "model": str(args.model),
        "rows": args.rows,
        "draws": args.draws,
        "compute": "two forwards per row for both kinds",
        **summarise(raw),
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
