"""PanGu-Coder2's deployment table (its Table 4) for demask's models: fp32 vs bf16 vs int8.

    python benchmarks/quantization.py [--models tinycode-mdm tinycode-block tinycode-ar] \
        [--dtypes float32 bfloat16 int8] [--random] [--tasks tinycode:test] [--out results/quantization.json]

Per (model, dtype), in a fresh process each (so peak RSS is that configuration's): weights
memory as held (int8 packed weights counted), peak RSS after loading and decoding, ms per
completion token and tokens/s (``--batch`` prompts as one batch, 48 tokens each, the model's
own decoder, greedy, fastest of ``--repeats`` after a warm-up; one torch thread unless
``--threads``), and held-out pass@1 (every task of ``--tasks``, greedy, run in the sandbox).
``--random`` adds a randomly initialised ~100M-parameter model of the same family (hidden
768, 12 layers, FFN 3072, 12 heads; random prompts, no end token, every row decodes all 48
tokens one per step), where matrix products dominate: speed and memory only. Ratios are
against fp32 measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RANDOM = "random-100m"


def random_model(dtype: str):
    import torch

    from demask.model.config import ModelConfig
    from demask.model.quantize import is_int8, quantize_int8
    from demask.model.transformer import Transformer

    cfg = ModelConfig(vocab_size=768, hidden_size=768, intermediate_size=3072, num_layers=12, num_heads=12,
                      num_kv_heads=12, max_position_embeddings=256, mask_token_id=767, shift_logits=True)  # fmt: skip
    model = Transformer(cfg)
    model.init_weights(0.02, torch.Generator().manual_seed(0))
    model.eval()
    if is_int8(dtype):
        quantize_int8(model)
    elif dtype != "float32":
        model.to(getattr(torch, dtype))
    gen = torch.Generator().manual_seed(1)
    prompt = lambda: torch.randint(3, 760, (int(torch.randint(40, 90, (1,), generator=gen)),), generator=gen).tolist()  # noqa: E731
    return model, prompt


def one(name: str, dtype: str, args: argparse.Namespace) -> dict:
    """Measure one configuration (run in its own process)."""
    import torch

    import demask
    from demask.decoding import DecodeConfig, generate
    from demask.model.quantize import weights_bytes

    torch.set_num_threads(args.threads)
    row: dict = {"model": name, "dtype": dtype}
    if name == RANDOM:
        model, make = random_model(dtype)
        prompts = [make() for _ in range(args.batch)]
        config = DecodeConfig(gen_length=48, policy="confidence", cache="dual", block_length=8, early_stop=False)
        run = lambda: generate(model, prompts, config)  # noqa: E731
        tokenizer = None
    else:
        llm = demask.load(name, dtype=dtype)
        model, tokenizer = llm.model, llm.tokenizer
        from demask.tasks import load_tasks

        tasks = load_tasks(args.tasks)
        prompts = [tokenizer.encode(t.prompt) for t in tasks[: args.batch]]
        config = llm.decode_config(max(len(p) for p in prompts), gen_length=48)
        run = lambda: generate(model, prompts, config)  # noqa: E731
    row["parameters_m"] = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()) / 1e6
    row["weights_mb"] = weights_bytes(model) / 1e6
    with torch.no_grad():
        run()  # warm-up
        best, tokens = float("inf"), 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = run()
            best = min(best, time.perf_counter() - t0)
            tokens = sum(len(c) for c in out.completions) if tokenizer is not None else len(prompts) * 48
    row["seconds"], row["tokens"] = best, tokens
    row["ms_per_token"] = 1e3 * best / max(tokens, 1)
    row["tokens_per_s"] = tokens / best
    if tokenizer is not None and not args.no_pass:
        from demask.evaluation.runner import evaluate
        from demask.evaluation.sampler import decoding_sampler
        from demask.execution import Sandbox, SandboxConfig

        with tempfile.TemporaryDirectory() as out_dir, Sandbox(SandboxConfig(workers=2, timeout_s=3.0)) as sandbox:
            res = evaluate(tasks, decoding_sampler(model, tokenizer, config), 1, out_dir, sandbox, batch_size=64,
                           progress=False)  # fmt: skip
        row["pass@1"] = res["pass_at_k"]["pass@1"]
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=["tinycode-mdm", "tinycode-block", "tinycode-ar"])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "int8"])
    ap.add_argument("--random", action="store_true", help=f"add {RANDOM} (speed and memory only)")
    ap.add_argument("--tasks", default="tinycode:test")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-pass", action="store_true", help="skip pass@1")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args)))
        return
    names = list(args.models) + ([RANDOM] if args.random else [])
    rows = []
    passthrough = ["--tasks", args.tasks, "--batch", str(args.batch), "--repeats", str(args.repeats),
                   "--threads", str(args.threads)] + (["--no-pass"] if args.no_pass else [])  # fmt: skip
    for name in names:
        for dtype in args.dtypes:
            cmd = [sys.executable, __file__, "--one", name, dtype, *passthrough]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"{name} {dtype} failed:\n{done.stderr[-2000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"measured {name} {dtype}", file=sys.stderr)
    base = {r["model"]: r for r in rows if r["dtype"] == "float32"}
    print("| model | dtype | params (M) | weights MB | peak RSS MB | ms/token | tokens/s | x fp32 | pass@1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b = base.get(r["model"])
        r["speedup_vs_fp32"] = r["tokens_per_s"] / b["tokens_per_s"] if b else None
        p = r.get("pass@1")
        print(f"| {r['model']} | {r['dtype']} | {(b or r)['parameters_m']:.1f} | {r['weights_mb']:.1f} | "
              f"{r['peak_rss_mb']:.0f} | {r['ms_per_token']:.2f} | {r['tokens_per_s']:.0f} | "
              f"{r['speedup_vs_fp32'] or float('nan'):.2f}x | {'n/a' if p is None else f'{p:.3f}'} |")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
