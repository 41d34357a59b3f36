"""Decoding speed and quality per (policy, cache mode), against the plain loop.

    python benchmarks/decode_speed.py --out results/decode_speed.json \
        [--checkpoint DIR] [--n-tasks N] [--random-model]

For each mode: tokens/s, NFE per token and TinyCode pass@1 (greedy, one sample per task,
executed in the sandbox). The baseline, run in the same process, is the plain reference
loop: confidence policy, one token per step, no cache, no early stop (what LLaDA/Dream's
reference code does). Tokens are the completion tokens before the end token (the useful
output), so the early stop counts towards speed while NFE/token shows where it comes from.
Times cover ``generate`` only (not tokenisation or execution), after one warm-up call; each
mode's time is its fastest of ``--repeats`` rounds, the rounds interleaving all modes.

``--random-model`` measures mechanics without a trained model: a random Transformer of the
shipped model's shape, random prompt ids, no end token (every row decodes gen_length
tokens), and no pass@1 (null in the JSON).

JSON: {"baseline": {"tokens_per_s", "nfe_per_token", "pass_at_1"},
       "modes": [{"name", "tokens_per_s", "nfe_per_token", "pass_at_1", ...}], "setup": {...}}
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import demask
from demask.decoding import DecodeConfig, generate

DEFAULT_CHECKPOINT = Path(demask.__file__).parent / "assets" / "tinycode-mdm"
DEFAULT_POLICIES = ("confidence", "confidence@half", "threshold", "factor", "entropy-bound")
DEFAULT_CACHES = ("none", "prefix", "dual")
# "process": CPU time of this process, robust on a shared machine (CPU only, with --threads 1
# it equals wall time on an idle machine); "wall": elapsed time (what a user waits).
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


@dataclass
class Mode:
    name: str
    config: DecodeConfig


def make_modes(
    policies, caches, gen_length: int, block_length: int, threshold: float, factor: float, gamma: float
) -> tuple[Mode, list[Mode]]:
    """The baseline and one mode per (policy, cache). ``NAME@STEPS`` or ``NAME@half`` sets
    a fixed-budget policy's steps (default: one token per step)."""
    base = DecodeConfig(
        gen_length=gen_length, block_length=block_length, policy="confidence", cache="none", early_stop=False
    )
    modes = []
    for spec in policies:
        name, _, steps = spec.partition("@")
        options = {
            "threshold": {"threshold": threshold},
            "factor": {"factor": factor},
            "entropy-bound": {"gamma": gamma},
        }.get(name, {})
        kw = dict(gen_length=gen_length, block_length=block_length, policy=name, policy_options=options)
        probe = DecodeConfig(**kw)
        if not probe.policy_type.adaptive:
            kw["steps"] = gen_length // 2 if steps == "half" else int(steps) if steps else gen_length
        elif steps:
            raise SystemExit(f"{name} chooses its own step count; drop '@{steps}'")
        for cache in caches:
            modes.append(Mode(f"{spec}/{cache}", DecodeConfig(**kw, cache=cache)))
    return Mode("baseline", base), modes


def load_workload(args):
    """(model, prompts as ids, tasks or None, tokenizer or None)."""
    if args.random_model:
        from demask.model import ModelConfig, Transformer

        cfg = ModelConfig(
            vocab_size=args.vocab,
            hidden_size=args.hidden,
            intermediate_size=3 * args.hidden,
            num_layers=args.layers,
            num_heads=args.heads,
            num_kv_heads=args.heads,
            max_position_embeddings=1024,
            mask_token_id=args.vocab - 1,
            shift_logits=True,
        )  # no eos/pad: every row decodes gen_length tokens
        model = Transformer(cfg)
        model.init_weights(0.02, torch.Generator().manual_seed(0))
        model = model.to(args.device).eval()
        gen = torch.Generator().manual_seed(1)
        prompts = [
            torch.randint(0, args.vocab - 1, (int(torch.randint(40, 90, (1,), generator=gen)),), generator=gen).tolist()
            for _ in range(args.n_tasks)
        ]
        return model, prompts, None, None
    from demask.model import load_pretrained
    from demask.tasks import load_tasks

    ckpt = Path(args.checkpoint)
    if not (ckpt / "config.json").is_file():
        raise SystemExit(
            f"no checkpoint at {ckpt} (expected config.json and weights there); pass "
            "--checkpoint DIR, or --random-model to measure speed only"
        )
    model, tokenizer = load_pretrained(ckpt, dtype=args.dtype, device=args.device)
    model.eval()
    tasks = load_tasks(args.tasks)[: args.n_tasks]
    return model, [tokenizer.encode(t.prompt) for t in tasks], tasks, tokenizer


def decode_all(model, prompts, config: DecodeConfig, batch_size: int, seed: int, clock=time.perf_counter):
    completions, nfe, seconds = [], [], 0.0
    for i in range(0, len(prompts), batch_size):
        batch = prompts[i : i + batch_size]
        gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed + i)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = clock()
        out = generate(model, batch, config, generator=gen)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds += clock() - start
        completions += out.completions
        nfe += out.nfe
    return completions, nfe, seconds


def pass_at_1(tasks, tokenizer, completions, sandbox) -> float | None:
    if tasks is None:
        return None
    programs = [t.program(tokenizer.decode(c)) for t, c in zip(tasks, completions)]
    results = sandbox.map(programs)
    return sum(r.passed for r in results) / len(results)


def measure_all(modes: list[Mode], model, prompts, tasks, tokenizer, sandbox, args) -> list[dict]:
    """Every mode, ``args.repeats`` rounds taken in turn (so a busy machine slows all modes
    alike); a mode's time is its fastest round. Outputs are the same in every round."""
    for mode in modes:
        decode_all(model, prompts[:1], mode.config, 1, args.seed)  # warm-up
    first: dict[str, tuple[list, list]] = {}
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        for mode in modes:
            completions, nfe, seconds = decode_all(
                model, prompts, mode.config, args.batch_size, args.seed, CLOCKS[args.clock]
            )
            first.setdefault(mode.name, (completions, nfe))
            best[mode.name] = min(best.get(mode.name, float("inf")), seconds)
    rows = []
    for mode in modes:
        completions, nfe = first[mode.name]
        tokens, seconds = sum(len(c) for c in completions), best[mode.name]
        rows.append(
            {
                "name": mode.name,
                "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
                "nfe_per_token": sum(nfe) / max(tokens, 1),
                "pass_at_1": pass_at_1(tasks, tokenizer, completions, sandbox),
                "tokens": tokens,
                "nfe": sum(nfe),
                "seconds": seconds,
            }
        )
    return rows


def print_table(baseline: dict, modes: list[dict]) -> None:
    head = f"{'mode':<28} {'tokens/s':>10} {'speedup':>8} {'NFE/token':>10} {'pass@1':>8}"
    print(head)
    print("-" * len(head))
    for row in [baseline, *modes]:
        p = "-" if row["pass_at_1"] is None else f"{row['pass_at_1']:.3f}"
        speed = row["tokens_per_s"] / baseline["tokens_per_s"] if baseline["tokens_per_s"] else 0.0
        print(f"{row['name']:<28} {row['tokens_per_s']:>10.1f} {speed:>7.2f}x {row['nfe_per_token']:>10.3f} {p:>8}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--tasks", default="tinycode-v1:test", help="benchmark spec for load_tasks")
    ap.add_argument("--n-tasks", type=int, default=64)
    ap.add_argument(
        "--random-model", action="store_true", help="random model and prompts: tokens/s and NFE only, no pass@1"
    )
    ap.add_argument("--gen-length", type=int, default=64)
    ap.add_argument("--block-length", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument(
        "--policies",
        nargs="+",
        default=list(DEFAULT_POLICIES),
        help="policy names, NAME@STEPS or NAME@half for fixed-budget ones",
    )
    ap.add_argument("--caches", nargs="+", default=list(DEFAULT_CACHES))
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--factor", type=float, default=1.0)
    ap.add_argument("--gamma", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timing rounds; the fastest counts")
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall time, or this process's CPU time (steadier on a busy CPU)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    # --random-model shape (the shipped TinyCode model's default size)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model, prompts, tasks, tokenizer = load_workload(args)
    base_mode, modes = make_modes(
        args.policies, args.caches, args.gen_length, args.block_length, args.threshold, args.factor, args.gamma
    )
    sandbox = None
    if tasks is not None:
        from demask.execution import Sandbox

        sandbox = Sandbox().__enter__()
    try:
        baseline, *rows = measure_all([base_mode, *modes], model, prompts, tasks, tokenizer, sandbox, args)
    finally:
        if sandbox is not None:
            sandbox.close()
    base_speed, base_pass = baseline["tokens_per_s"], baseline["pass_at_1"]
    for row in rows:
        row["speedup"] = row["tokens_per_s"] / base_speed if base_speed else None
        row["pass_at_1_delta"] = None if base_pass is None or row["pass_at_1"] is None else row["pass_at_1"] - base_pass
    # the goal: the fastest mode whose pass@1 stays within 0.02 of the baseline
    ok = [r for r in rows if r["pass_at_1_delta"] is None or r["pass_at_1_delta"] >= -0.02]
    best = max(ok, key=lambda r: r["tokens_per_s"], default=None)
    keys = ("tokens_per_s", "nfe_per_token", "pass_at_1", "tokens", "nfe", "seconds")
    result = {
        "baseline": {k: baseline[k] for k in keys},
        "modes": rows,
        "best_within_0.02": None if best is None else {"name": best["name"], "speedup": best["speedup"]},
        "setup": {
            "checkpoint": None if args.random_model else args.checkpoint,
            "random_model": args.random_model,
            "tasks": None if tasks is None else args.tasks,
            "n_tasks": len(prompts),
            "gen_length": args.gen_length,
            "block_length": args.block_length,
            "batch_size": args.batch_size,
            "threshold": args.threshold,
            "factor": args.factor,
            "gamma": args.gamma,
            "device": str(next(model.parameters()).device),
            "threads": torch.get_num_threads(),
            "clock": args.clock,
            "repeats": args.repeats,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "baseline": "confidence, 1 token/step, no cache, no early stop",
        },
    }
    print_table(dict(baseline, name="baseline"), rows)
    if best is not None:
        print(f"fastest mode within 0.02 pass@1 of the baseline: {best['name']} ({best['speedup']:.2f}x)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
