"""Variance of the diffusion student's score difference ``p_teacher - p_student`` with shared
(antithetic) against independent ELBO draws, at the same number of forwards.

For ``--pairs`` RRTF pairs of ``runs/rrtf/pairs.jsonl`` (a strict score gap, drawn with a fixed
seed), the shipped diffusion model scores both responses ``--repeats`` times with fresh draws
(n_draws each, one mask per draw: VRPO's n_time = n, n_mask = 1); per pair the variance of
the difference over the repeats; the table gives its mean over pairs for each mode and their
ratio, with a bootstrap 95% interval over pairs. Writes ``docs/rrtf_variance.json``.

    python experiments/rrtf_variance.py [--pairs 64] [--repeats 24] [--draws 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    from demask.model import load_pretrained
    from demask.training.posttrain.ranking import Encoder
    from demask.training.posttrain.rrtf import read_jsonl
    from demask.training.posttrain.scores import sequence_scores

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", type=Path, default=ROOT / "runs/rrtf")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=24)
    ap.add_argument("--draws", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--forms", nargs="+", default=["t"], help="ELBO forms: t (mask rate), l (mask count)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/rrtf_variance.json")
    args = ap.parse_args()

    prompts = {r["task_id"]: r["prompt"] for r in read_jsonl(args.run / "ranked.jsonl")}
    pairs = [p for p in read_jsonl(args.run / "pairs.jsonl") if p["teacher_score"] > p["student_score"]]
    random.Random(0).shuffle(pairs)
    model, tok = load_pretrained("tinycode-mdm", dtype="float32")
    model.eval()
    enc = Encoder.for_model(tok, model.config, 48)
    chosen = [p for p in pairs if len(enc.tokens(p["teacher"])) < 48 and len(enc.tokens(p["student"])) < 48]
    chosen = chosen[: args.pairs]
    batch = enc.score_batch([prompts[p["task_id"]] for p in chosen], [[p["teacher"], p["student"]] for p in chosen])
    results: dict[str, dict[str, float]] = {}
    for form, n in [(f, n) for f in args.forms for n in args.draws]:
        diffs: dict[bool, torch.Tensor] = {}
        for shared in (True, False):
            rows = []
            with torch.no_grad():
                for rep in range(args.repeats):
                    gen = torch.Generator().manual_seed(1000 * n + rep)
                    s, length = sequence_scores(model, batch, generator=gen, n_draws=n, shared=shared, form=form)
                    p = s / length
                    rows.append(p[:, 0] - p[:, 1])
            diffs[shared] = torch.stack(rows)  # (repeats, pairs)
        var = {k: v.var(0) for k, v in diffs.items()}  # per pair
        rng = random.Random(n)
        ratios = []
        for _ in range(2000):
            idx = torch.tensor([rng.randrange(len(chosen)) for _ in chosen])
            ratios.append(float(var[False][idx].mean() / var[True][idx].mean()))
        ratios.sort()
        results[f"{form}-form, n_draws={n}"] = {
            "var_shared": float(var[True].mean()),
            "var_independent": float(var[False].mean()),
            "ratio": float(var[False].mean() / var[True].mean()),
            "ratio_low": ratios[int(0.025 * len(ratios))],
            "ratio_high": ratios[int(0.975 * len(ratios)) - 1],
            "forwards_per_pair": 2 * n,
            "mean_difference": float(diffs[True].mean()),
        }
        print(form, n, json.dumps(results[f"{form}-form, n_draws={n}"]), flush=True)
    out = {"pairs": len(chosen), "repeats": args.repeats, "model": "tinycode-mdm", "results": results}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
