"""Decoding speed and quality per (policy, cache mode), against the plain loop; autoregressive
against diffusion decoders in one run (``--compare``); where decoding time goes (``--profile``).

    python benchmarks/decode_speed.py --out results/decode_speed.json \
        [--checkpoint DIR] [--n-tasks N] [--random-model]
    python benchmarks/decode_speed.py --out results/ar_vs_diffusion.json \
        --compare ar=tinycode-ar block=runs/block/final [mdm=tinycode-mdm] \
        [--reference ar] [--batch-sizes 1 16] [--dtype float32] [--random-prompts]
    python benchmarks/decode_speed.py --out results/profile.json \
        --compare ar=tinycode-ar block=runs/block/final --profile block:fast [--profile-batches 3]

For each mode: tokens/s, NFE per token and TinyCode pass@1 (greedy, one sample per task,
executed in the sandbox). The baseline, run in the same process, is the plain reference
loop: confidence policy, one token per step, no cache, no early stop (what LLaDA/Dream's
reference code does). Tokens are the completion tokens before the end token (the useful
output), so the early stop counts towards speed while NFE/token shows where it comes from.
Times cover ``generate`` only (not tokenisation or execution), after one warm-up call (one
batch); each mode's time is its fastest of ``--repeats`` rounds, the rounds interleaving all
modes.

``--random-model`` measures mechanics without a trained model: a random Transformer of the
shipped model's shape, random prompt ids, no end token (every row decodes gen_length
tokens), and no pass@1 (null in the JSON).

``--compare NAME=DIR ...`` (DIR: a checkpoint directory or a shipped model's name) measures
several models on the same held-out tasks instead, each in fp32 unless ``--dtype`` says
otherwise, at every batch size of ``--batch-sizes`` (the timing protocol above, per batch
size). A causal model has one mode, ``autoregressive`` (KV cache). A diffusion model has the
modes of ``--policies`` x ``--caches`` (a block-causal one decodes in its own blocks, where
"prefix" and "dual" are the exact cache), plus ``best`` and ``fast`` when its directory holds
a ``decoders.json`` ({"best": {DecodeConfig fields}, "fast": {...}}; gen_length is this run's,
a fixed ``steps`` scaled to it). pass@1 is measured once per mode, at the largest batch size
(greedy decoding: it does not depend on the batch size). Per batch size a table compares every
mode with ``--reference`` (default: the first causal model): tokens/s ratio, and whether pass@1
stays within 0.01 of it. ``--random-prompts`` times the models on random prompt ids instead
(no pass@1: null in the JSON, "n/a" in the tables).

``--profile [MODEL:MODE]`` profiles instead of timing: cProfile over decoding
``--profile-batches`` batches (the largest ``--batch-sizes`` with --compare, else
``--batch-size``) of one mode (default: the first diffusion model's first mode; without
--compare the model is "model" and ``MODE`` alone will do), then prints the functions that
take the most time and the share of each part: the model forward (attention/SDPA, KV cache,
linear layers, norms, rotary, attention-mask building, the rest), the policy's selection,
the token choice (sampling.py) and the rest of the loop (Python overhead). Each torch or
builtin function's time is charged to the demask code that called it; cProfile's own
per-call cost inflates Python-heavy parts somewhat.

JSON: {"baseline": {"tokens_per_s", "nfe_per_token", "pass_at_1"},
       "modes": [{"name", "tokens_per_s", "nfe_per_token", "pass_at_1", ...}], "setup": {...}}
with --compare: {"compare": {
       "setup": {"batch_sizes", "reference", "tasks", "n_tasks", "dtype", "threads", "clock", ...},
       "models": [{"name", "checkpoint", "attention", "modes": [{"name", "source", "config"}]}],
       "rows": [{"model", "mode", "batch_size", "tokens_per_s", "nfe_per_token", "pass_at_1",
                 "ratio_to_reference", "within_0.01_of_reference", "tokens", "nfe", "seconds"}],
       "best_within_0.01": [{"batch_size", "best": {"model", "mode", "ratio_to_reference"} | null}]}}
with --profile: {"profile": {"model", "mode", "batch_size", "batches", "total_s",
       "categories": [{"name", "label", "seconds", "share"}], "forward_share", "top": [...]},
       "setup": {...}}
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import platform
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import demask
from demask.decoding import DecodeConfig, generate

DEFAULT_CHECKPOINT = Path(demask.__file__).parent / "assets" / "tinycode-mdm"
DEFAULT_POLICIES = ("confidence", "confidence@half", "threshold", "factor", "entropy-bound")
DEFAULT_CACHES = ("none", "prefix", "dual")
DEFAULT_BATCH_SIZES = (1, 16)
# "process": CPU time of this process, robust on a shared machine (CPU only, with --threads 1
# it equals wall time on an idle machine); "wall": elapsed time (what a user waits).
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
AR_MODE = "autoregressive"
"""The one mode of a causal model: one token per step against the KV cache."""
DECODER_MODES = ("best", "fast")
"""The entries of a checkpoint's decoders.json that --compare measures, as modes of these names."""
WITHIN = 0.01
"""--compare: a mode keeps up with the reference when its pass@1 is at most this much lower."""


@dataclass
class Mode:
    name: str
    config: DecodeConfig
    source: str = "policies"
    """Where the mode comes from: "baseline", "policies" (--policies x --caches),
    "decoders.json" or "autoregressive"."""


def make_modes(
    policies, caches, gen_length: int, block_length: int | None, threshold: float, factor: float, gamma: float
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
    return Mode("baseline", base, source="baseline"), modes


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


@dataclass
class Run:
    """One thing to time: a model decoding its prompts with one config."""

    key: str
    model: torch.nn.Module
    prompts: list[list[int]]
    config: DecodeConfig


@dataclass
class Timed:
    """A run's outputs (those of its first round: every round decodes the same) and its
    fastest time."""

    completions: list[list[int]]
    nfe: list[int]
    seconds: float

    def speed(self) -> dict[str, float | int]:
        """tokens/s and NFE/token, counting the completion tokens before the end token."""
        tokens = sum(len(c) for c in self.completions)
        return {
            "tokens_per_s": tokens / self.seconds if self.seconds > 0 else 0.0,
            "nfe_per_token": sum(self.nfe) / max(tokens, 1),
            "tokens": tokens,
            "nfe": sum(self.nfe),
            "seconds": self.seconds,
        }


def time_runs(runs: Sequence[Run], batch_size: int, args) -> dict[str, Timed]:
    """Every run, ``args.repeats`` rounds taken in turn (so a busy machine slows all runs
    alike), after one warm-up batch each; a run's time is its fastest round."""
    for run in runs:
        decode_all(run.model, run.prompts[:batch_size], run.config, batch_size, args.seed)  # warm-up
    first: dict[str, tuple[list, list]] = {}
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        for run in runs:
            completions, nfe, seconds = decode_all(
                run.model, run.prompts, run.config, batch_size, args.seed, CLOCKS[args.clock]
            )
            first.setdefault(run.key, (completions, nfe))
            best[run.key] = min(best.get(run.key, float("inf")), seconds)
    return {run.key: Timed(*first[run.key], best[run.key]) for run in runs}


def measure_all(modes: list[Mode], model, prompts, tasks, tokenizer, sandbox, args) -> list[dict]:
    """Every mode of one model at ``args.batch_size`` (see :func:`time_runs`), with pass@1."""
    timed = time_runs([Run(m.name, model, prompts, m.config) for m in modes], args.batch_size, args)
    rows = []
    for mode in modes:
        t = timed[mode.name]
        speed = t.speed()
        rows.append(
            {
                "name": mode.name,
                "tokens_per_s": speed["tokens_per_s"],
                "nfe_per_token": speed["nfe_per_token"],
                "pass_at_1": pass_at_1(tasks, tokenizer, t.completions, sandbox),
                "tokens": speed["tokens"],
                "nfe": speed["nfe"],
                "seconds": speed["seconds"],
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


# --------------------------------------------------------------------------- --compare


@dataclass
class Contender:
    """A model of ``--compare``: where it came from and the modes it is measured in."""

    name: str
    checkpoint: str
    model: torch.nn.Module
    tokenizer: Any
    modes: list[Mode]
    prompts: list[list[int]] = dataclasses.field(default_factory=list)

    @property
    def causal(self) -> bool:
        return bool(self.model.config.causal)


def parse_compare(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``NAME=DIR`` items as (name, dir); names unique, free of ':' (--profile's separator)."""
    pairs: list[tuple[str, str]] = []
    for spec in specs:
        name, eq, where = spec.partition("=")
        name, where = name.strip(), where.strip()
        if not eq or not name or not where:
            raise SystemExit(
                f"--compare {spec!r}: write NAME=DIR (DIR a checkpoint directory or a shipped model's name), "
                "e.g. --compare ar=tinycode-ar block=runs/block/final"
            )
        if ":" in name:
            raise SystemExit(f"--compare {spec!r}: the name {name!r} may not contain ':' (--profile uses MODEL:MODE)")
        if name in (n for n, _ in pairs):
            raise SystemExit(f"--compare names {name!r} twice; give every model its own name")
        pairs.append((name, where))
    return pairs


def resolve_model_dir(name: str, where: str) -> Path:
    """The checkpoint directory of ``--compare name=where``, or a SystemExit saying what to fix."""
    from demask.model import resolve_checkpoint, shipped_models

    try:
        path = resolve_checkpoint(where)
    except FileNotFoundError as exc:
        raise SystemExit(f"--compare {name}={where}: {exc}") from None
    if not (path / "config.json").is_file():
        shipped = ", ".join(shipped_models()) or "none installed"
        raise SystemExit(
            f"--compare {name}={where}: {path} holds no config.json, so it is not a checkpoint; give a "
            f"checkpoint directory (config.json, weights, tokenizer) or a shipped model ({shipped})"
        )
    return path


def decoder_modes(ckpt: Path, gen_length: int) -> list[Mode]:
    """The ``best`` and ``fast`` decoders of ``ckpt/decoders.json`` (none when the file is
    absent), at this run's ``gen_length``: every mode decodes the same length, and a fixed
    ``steps`` given for another length is scaled to keep its steps per token."""
    path = ckpt / "decoders.json"
    if not path.is_file():
        return []
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path} is not valid JSON ({exc}); fix it or move it away") from None
    if not isinstance(raw, dict):
        raise SystemExit(f'{path} must hold a mapping {{"best": {{...}}, "fast": {{...}}}}, got {type(raw).__name__}')
    modes = []
    for name in DECODER_MODES:
        if name not in raw:
            continue
        values = raw[name]
        if not isinstance(values, dict):
            raise SystemExit(f"{path}: {name!r} must be a mapping of DecodeConfig fields, got {values!r}")
        values = dict(values)
        own = values.get("gen_length")
        values["gen_length"] = gen_length
        if isinstance(own, int) and own > 0 and own != gen_length and values.get("steps") is not None:
            values["steps"] = max(1, round(values["steps"] * gen_length / own))
        try:
            config = DecodeConfig.from_dict(values)
        except (ValueError, TypeError) as exc:
            raise SystemExit(f"{path}: decoder {name!r} at gen_length {gen_length}: {exc}") from None
        modes.append(Mode(name, config, source="decoders.json"))
    if not modes:
        print(f"note: {path} has neither of {DECODER_MODES}; no decoder modes from it", file=sys.stderr)
    return modes


def contender_modes(model: torch.nn.Module, ckpt: Path, args) -> list[Mode]:
    """A causal model's one mode, or a diffusion model's --policies x --caches modes (in its
    own blocks when block-causal) plus its decoders.json ones."""
    cfg = model.config
    if cfg.causal:
        return [Mode(AR_MODE, DecodeConfig(gen_length=args.gen_length, cache="prefix"), source="autoregressive")]
    block_length = args.block_length
    if cfg.block_size is not None:
        if args.gen_length % cfg.block_size:
            raise SystemExit(
                f"--gen-length {args.gen_length} is not a whole number of {ckpt}'s blocks of {cfg.block_size} "
                f"(block-causal); use a multiple of {cfg.block_size}"
            )
        block_length = cfg.block_size  # a block-causal model decodes in its own blocks
    _, modes = make_modes(
        args.policies, args.caches, args.gen_length, block_length, args.threshold, args.factor, args.gamma
    )
    return modes + decoder_modes(ckpt, args.gen_length)


def load_contenders(args, dtype: str) -> list[Contender]:
    """Every ``--compare`` model, loaded in ``dtype`` on ``args.device``, with its modes."""
    from demask.model import load_pretrained

    contenders = []
    for name, where in parse_compare(args.compare):
        path = resolve_model_dir(name, where)
        model, tokenizer = load_pretrained(path, dtype=dtype, device=args.device)
        model.eval()
        contenders.append(Contender(name, str(path), model, tokenizer, contender_modes(model, path, args)))
    return contenders


def pick_reference(contenders: Sequence[Contender], name: str | None) -> Contender:
    """The autoregressive model the others are compared with: ``name``, or the first causal one."""
    names = ", ".join(c.name for c in contenders)
    if name is None:
        causal = [c for c in contenders if c.causal]
        if not causal:
            raise SystemExit(
                f"--compare gives no causal model ({names}), so there is no autoregressive reference; "
                "add the AR twin, e.g. --compare ar=tinycode-ar ..."
            )
        return causal[0]
    by_name = {c.name: c for c in contenders}
    if name not in by_name:
        raise SystemExit(f"--reference {name!r} is not one of the --compare models ({names}); name one of them")
    if not by_name[name].causal:
        raise SystemExit(
            f"--reference {name!r} is a {by_name[name].model.config.attention} model, not a causal one; "
            "name the autoregressive twin (or leave --reference out: the first causal model)"
        )
    return by_name[name]


def random_prompts(contenders: Sequence[Contender], n: int, gen_length: int, seed: int = 1) -> list[list[int]]:
    """``n`` random prompts every model can take: ids below the smallest vocabulary, none of
    them a special token, short enough for the smallest context (with room to align blocks)."""
    cfgs = [c.model.config for c in contenders]
    specials = {getattr(cfg, f"{role}_token_id") for cfg in cfgs for role in ("mask", "pad", "eos", "bos")} - {None}
    allowed = torch.tensor([i for i in range(min(cfg.vocab_size for cfg in cfgs)) if i not in specials])
    room = min(cfg.max_position_embeddings - gen_length - (cfg.block_size or 1) + 1 for cfg in cfgs)
    if room < 1 or len(allowed) == 0:
        raise SystemExit(
            f"--gen-length {gen_length} leaves no room for a prompt in the smallest context of the --compare "
            "models; lower --gen-length"
        )
    hi = min(90, room + 1)  # prompt lengths in [lo, hi)
    lo = max(1, min(40, hi // 2))
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi, (n,), generator=gen).tolist() if hi > lo else [lo] * n
    return [allowed[torch.randint(0, len(allowed), (k,), generator=gen)].tolist() for k in lengths]


def config_dict(config: DecodeConfig) -> dict[str, Any]:
    """A DecodeConfig as JSON-ready values (the policy by name)."""
    out = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    out["policy"] = config.policy_name
    return out


def compare_rows(
    contenders: Sequence[Contender], reference: Contender, timed: dict[int, dict[str, Timed]], passed: dict
) -> list[dict]:
    """One row per (batch size, model, mode): speed, pass@1 and the comparison with the reference."""
    rows = []
    ref_key = f"{reference.name}:{reference.modes[0].name}"
    ref_pass = passed[ref_key]
    for bs, runs in timed.items():
        ref_speed = runs[ref_key].speed()["tokens_per_s"]
        for c in contenders:
            for mode in c.modes:
                key = f"{c.name}:{mode.name}"
                speed = runs[key].speed()
                p = passed[key]
                within = None if p is None or ref_pass is None else p >= ref_pass - WITHIN - 1e-9
                rows.append(
                    {
                        "model": c.name,
                        "mode": mode.name,
                        "batch_size": bs,
                        "tokens_per_s": speed["tokens_per_s"],
                        "nfe_per_token": speed["nfe_per_token"],
                        "pass_at_1": p,
                        "ratio_to_reference": speed["tokens_per_s"] / ref_speed if ref_speed > 0 else None,
                        f"within_{WITHIN}_of_reference": within,
                        "tokens": speed["tokens"],
                        "nfe": speed["nfe"],
                        "seconds": speed["seconds"],
                    }
                )
    return rows


def best_within(rows: Sequence[dict], reference: str, batch_size: int) -> dict | None:
    """The fastest mode (by ratio) at ``batch_size`` whose pass@1 keeps within WITHIN of the
    reference's, the reference itself left out; None when there is none (or no pass@1)."""
    ok = [
        r
        for r in rows
        if r["batch_size"] == batch_size
        and r["model"] != reference
        and r[f"within_{WITHIN}_of_reference"]
        and r["ratio_to_reference"] is not None
    ]
    best = max(ok, key=lambda r: r["ratio_to_reference"], default=None)
    if best is None:
        return None
    return {k: best[k] for k in ("model", "mode", "ratio_to_reference", "pass_at_1", "tokens_per_s")}


def print_compare(rows: Sequence[dict], reference: str, batch_sizes: Sequence[int], summary: list[dict]) -> None:
    """Per batch size: a table of every (model, mode) against the reference, and the best
    mode that keeps its pass@1 within WITHIN of the reference's."""
    wm = max([5, *(len(r["model"]) for r in rows)])
    wd = max([4, *(len(r["mode"]) for r in rows)])
    has_pass = any(r["pass_at_1"] is not None for r in rows)
    for bs, line in zip(batch_sizes, summary):
        print(f"\nbatch size {bs} (reference: {reference})")
        head = (
            f"{'model':<{wm}} {'mode':<{wd}} {'pass@1':>7} {'NFE/token':>10} {'tokens/s':>10} "
            f"{'vs AR':>8} {f'within {WITHIN} of AR':>18}"
        )
        print(head)
        print("-" * len(head))
        for r in rows:
            if r["batch_size"] != bs:
                continue
            p = "n/a" if r["pass_at_1"] is None else f"{r['pass_at_1']:.3f}"
            ratio = "n/a" if r["ratio_to_reference"] is None else f"{r['ratio_to_reference']:.2f}x"
            within = {None: "n/a", True: "yes", False: "no"}[r[f"within_{WITHIN}_of_reference"]]
            print(
                f"{r['model']:<{wm}} {r['mode']:<{wd}} {p:>7} {r['nfe_per_token']:>10.3f} "
                f"{r['tokens_per_s']:>10.1f} {ratio:>8} {within:>18}"
            )
        best = line["best"]
        if best is not None:
            verdict = f"{best['model']}/{best['mode']} ({best['ratio_to_reference']:.2f}x)"
        else:
            verdict = "none" if has_pass else "n/a (no pass@1: random prompts)"
        print(f"batch size {bs}: best tokens/s ratio within {WITHIN} pass@1 of {reference}: {verdict}")


def compare_workload(args) -> tuple[list[Contender], Contender, list | None, str]:
    """The --compare models (prompts set), the reference, the tasks (None: random prompts)
    and the dtype name."""
    if args.random_model:
        raise SystemExit(
            "--random-model builds a model of its own; with --compare the models are the checkpoints given: "
            "use --random-prompts to time them without tasks"
        )
    if args.checkpoint is not None:
        raise SystemExit("--checkpoint is the single-model run's; with --compare name it as NAME=DIR there")
    dtype = args.dtype or "float32"
    contenders = load_contenders(args, dtype)
    reference = pick_reference(contenders, args.reference)
    tasks = None
    if args.random_prompts:
        prompts = random_prompts(contenders, args.n_tasks, args.gen_length)
        for c in contenders:
            c.prompts = prompts
    else:
        from demask.tasks import load_tasks

        tasks = load_tasks(args.tasks)[: args.n_tasks]
        for c in contenders:
            c.prompts = [c.tokenizer.encode(t.prompt) for t in tasks]
    return contenders, reference, tasks, str(next(contenders[0].model.parameters()).dtype).removeprefix("torch.")


def batch_sizes_of(args) -> list[int]:
    sizes = list(args.batch_sizes or DEFAULT_BATCH_SIZES)
    bad = [b for b in sizes if b < 1]
    if bad:
        raise SystemExit(f"--batch-sizes {bad[0]}: a batch holds at least one prompt; give sizes >= 1")
    return sorted(set(sizes))


def run_compare(args) -> dict:
    """--compare: every (model, mode) at every batch size, against the reference."""
    batch_sizes = batch_sizes_of(args)
    contenders, reference, tasks, dtype = compare_workload(args)
    timed: dict[int, dict[str, Timed]] = {}
    for bs in batch_sizes:
        runs = [Run(f"{c.name}:{m.name}", c.model, c.prompts, m.config) for c in contenders for m in c.modes]
        timed[bs] = time_runs(runs, bs, args)
    passed: dict[str, float | None] = {}
    sandbox = None
    if tasks is not None:
        from demask.execution import Sandbox

        sandbox = Sandbox().__enter__()
    try:  # greedy outputs do not depend on the batch size: score the largest batch's
        for c in contenders:
            for m in c.modes:
                key = f"{c.name}:{m.name}"
                passed[key] = pass_at_1(tasks, c.tokenizer, timed[batch_sizes[-1]][key].completions, sandbox)
    finally:
        if sandbox is not None:
            sandbox.close()
    rows = compare_rows(contenders, reference, timed, passed)
    summary = [{"batch_size": bs, "best": best_within(rows, reference.name, bs)} for bs in batch_sizes]
    print_compare(rows, reference.name, batch_sizes, summary)
    return {
        "compare": {
            "setup": {
                "batch_sizes": batch_sizes,
                "reference": reference.name,
                "reference_mode": reference.modes[0].name,
                "within": WITHIN,
                "tasks": None if tasks is None else args.tasks,
                "random_prompts": tasks is None,
                "n_tasks": len(contenders[0].prompts),
                "gen_length": args.gen_length,
                "dtype": dtype,
                "device": str(next(contenders[0].model.parameters()).device),
                "threads": torch.get_num_threads(),
                "clock": args.clock,
                "repeats": args.repeats,
                "seed": args.seed,
                "pass_at_1_batch_size": batch_sizes[-1],
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            "models": [
                {
                    "name": c.name,
                    "checkpoint": c.checkpoint,
                    "attention": c.model.config.attention,
                    "modes": [{"name": m.name, "source": m.source, "config": config_dict(m.config)} for m in c.modes],
                }
                for c in contenders
            ],
            "rows": rows,
            f"best_within_{WITHIN}": summary,
        }
    }


# --------------------------------------------------------------------------- --profile

CATEGORIES = {
    "attention": "model forward: attention (SDPA)",
    "kv_cache": "model forward: KV cache write/gather",
    "linear": "model forward: linear layers (matmuls)",
    "norm": "model forward: RMSNorm",
    "rotary": "model forward: rotary embedding",
    "mask": "model forward: attention-mask building",
    "forward_other": "model forward: rest (embedding, activations, residuals, module calls)",
    "policy": "policy / select (policies.py)",
    "token_choice": "token choice (sampling.py)",
    "loop": "rest of the loop (loop.py, cache.py, batching, early stop)",
    "other": "unattributed",
}
"""Where --profile charges time; the first seven together are the model forward."""
FORWARD_CATEGORIES = ("attention", "kv_cache", "linear", "norm", "rotary", "mask", "forward_other")

FuncKey = tuple[str, int, str]
"""cProfile's name of a function: (file, first line, name)."""


def _code_key(fn: Callable) -> FuncKey:
    code = fn.__code__
    return (code.co_filename, code.co_firstlineno, code.co_name)


def _model_categories() -> dict[FuncKey, str]:
    """The functions of transformer.py that are not "forward_other", by cProfile key."""
    from demask.model import transformer as tr

    named = {
        "norm": [getattr(tr.RMSNorm, "forward", None)],
        "rotary": [getattr(tr, n, None) for n in ("rotary_cos_sin", "apply_rotary", "_rotate_half")],
        "mask": [getattr(tr.Transformer, "_attention_mask", None)],
        "kv_cache": [
            getattr(tr.KVCache, n, None) for n in ("__init__", "write_positions", "update", "select_rows", "gather")
        ],
    }
    return {
        _code_key(fn): cat for cat, fns in named.items() for fn in fns if fn is not None and hasattr(fn, "__code__")
    }


def own_category(key: FuncKey, model_map: dict[FuncKey, str]) -> str | None:
    """The category a function's own time belongs to, or None: charge it to its callers."""
    file, _, name = key
    if file == "~":  # a builtin: torch's C functions and methods
        if "scaled_dot_product_attention" in name:
            return "attention"
        if any(op in name for op in ("_nn.linear", "addmm", "matmul", "bmm", "method 'mm'", "baddbmm")):
            return "linear"
        return None
    path = Path(file).resolve()
    if path == Path(__file__).resolve():
        return "loop"  # this script's profiling loop
    root = Path(demask.__file__).parent.resolve()
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        if path.as_posix().endswith("torch/nn/modules/linear.py"):
            return "linear"
        return None  # torch's Python code: charged to its callers
    if rel == "model/transformer.py":
        return model_map.get(key, "forward_other")
    if rel == "model/blocks.py":
        return "mask"
    if rel == "decoding/policies.py":
        return "policy"
    if rel == "decoding/sampling.py":
        return "token_choice"
    return "loop"


def categorize(stats: dict) -> dict[FuncKey, dict[str, float]]:
    """Each profiled function's self time split into categories: its own, or (torch and
    builtin functions) that of the demask code calling it, through any chain of torch calls,
    in proportion to the time each caller spent in it."""
    model_map = _model_categories()
    memo: dict[FuncKey, dict[str, float]] = {}

    def mix(weights: dict[FuncKey, float], seen: frozenset) -> dict[str, float]:
        total = sum(weights.values())
        out: dict[str, float] = {}
        for caller, w in weights.items():
            for cat, share in lineage(caller, seen).items():
                out[cat] = out.get(cat, 0.0) + share * (w / total if total > 0 else 1 / len(weights))
        return out

    def lineage(key: FuncKey, seen: frozenset = frozenset()) -> dict[str, float]:
        """Where a function's calls come from, as category shares (by its callers' time in it)."""
        cat = own_category(key, model_map)
        if cat is not None:
            return {cat: 1.0}
        if key in memo:
            return memo[key]
        callers = stats.get(key, (0, 0, 0, 0, {}))[4]
        callers = {c: v for c, v in callers.items() if c not in seen and c != key}
        if not callers:  # called from outside the profile (generate's wrapper) or a cycle
            return {"loop": 1.0} if not stats.get(key, (0, 0, 0, 0, {}))[4] else {"other": 1.0}
        shares = mix({c: v[3] for c, v in callers.items()}, seen | {key})
        memo[key] = shares
        return shares

    out: dict[FuncKey, dict[str, float]] = {}
    for key, (_, _, tt, _, callers) in stats.items():
        cat = own_category(key, model_map)
        if cat is not None:
            out[key] = {cat: tt}
            continue
        by_caller = {c: v[2] for c, v in callers.items() if c != key}
        if not by_caller:  # a root of the profile: the call into generate
            out[key] = {"loop": tt}
            continue
        out[key] = {c: s * tt for c, s in mix(by_caller, frozenset({key})).items()}
    return out


def short_name(key: FuncKey) -> str:
    """A readable name: builtins as cProfile writes them, else path:line(function), the path
    cut to the package (demask/..., torch/...)."""
    file, line, name = key
    if file == "~":
        return name
    parts = Path(file).parts
    for anchor in ("demask", "torch", "benchmarks"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return f"{'/'.join(parts[i:])}:{line}({name})"
    return f"{Path(file).name}:{line}({name})"


def profile_decoding(model, prompts, config: DecodeConfig, batch_size: int, batches: int, seed: int) -> pstats.Stats:
    """cProfile over ``generate`` only, for ``batches`` batches, after one warm-up batch."""
    decode_all(model, prompts[:batch_size], config, batch_size, seed)  # warm-up
    prof = cProfile.Profile()
    for i in range(0, min(len(prompts), batch_size * batches), batch_size):
        gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed + i)
        batch = prompts[i : i + batch_size]
        prof.enable()
        generate(model, batch, config, generator=gen)
        prof.disable()
    return pstats.Stats(prof)


def profile_report(stats: pstats.Stats, top: int) -> dict:
    """Category totals and the ``top`` functions by self time (JSON-ready)."""
    raw = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table there
    split = categorize(raw)
    total = sum(v[2] for v in raw.values())
    per_cat = dict.fromkeys(CATEGORIES, 0.0)
    for shares in split.values():
        for cat, s in shares.items():
            per_cat[cat] += s

    def share(seconds: float) -> float:
        return seconds / total if total > 0 else 0.0

    ranked = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    rows = []
    for key, (_, nc, tt, ct, _) in ranked:
        cats = split[key]
        rows.append(
            {
                "function": short_name(key),
                "calls": nc,
                "self_s": tt,
                "share": share(tt),
                "cum_s": ct,
                "category": max(cats, key=cats.get) if cats else "other",
            }
        )
    return {
        "total_s": total,
        "forward_share": share(sum(per_cat[c] for c in FORWARD_CATEGORIES)),
        "categories": [
            {"name": c, "label": label, "seconds": per_cat[c], "share": share(per_cat[c])}
            for c, label in CATEGORIES.items()
        ],
        "top": rows,
    }


def print_profile(report: dict) -> None:
    """The top functions by self time, then the share of each category."""
    width = max([8, *(len(r["function"]) for r in report["top"])])
    head = f"{'function':<{width}} {'calls':>8} {'self s':>8} {'share':>6} {'cum s':>8}  category"
    print(f"\nprofile: {report['model']}:{report['mode']}, {report['batches']} batch(es) of {report['batch_size']}")
    print(head)
    print("-" * len(head))
    for r in report["top"]:
        print(
            f"{r['function']:<{width}} {r['calls']:>8} {r['self_s']:>8.3f} {r['share']:>6.1%} "
            f"{r['cum_s']:>8.3f}  {r['category']}"
        )
    print(f"\nwhere the {report['total_s']:.3f} s (profiled, self time) go:")
    print(f"  {'model forward, in all':<70} {report['forward_share']:>6.1%}")
    for c in report["categories"]:
        if c["seconds"] > 0 or c["name"] in FORWARD_CATEGORIES:
            indent = "    " if c["name"] in FORWARD_CATEGORIES else "  "
            print(f"{indent}{c['label']:<{72 - len(indent)}} {c['share']:>6.1%}")


def run_profile(args) -> dict:
    """--profile: where decoding one mode spends its time."""
    if args.compare:
        contenders, _, tasks, dtype = compare_workload(args)
        batch_size = batch_sizes_of(args)[-1]
        targets = {c.name: (c.model, c.prompts, c.modes, c.causal) for c in contenders}
    else:
        model, prompts, tasks, _ = load_workload(args)
        base, modes = make_modes(
            args.policies, args.caches, args.gen_length, args.block_length, args.threshold, args.factor, args.gamma
        )
        batch_size = args.batch_size
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        targets = {"model": (model, prompts, [*modes, base], False)}
    spec = args.profile or ""
    name, colon, mode_name = spec.partition(":")  # model names hold no ':'; a mode name may
    if not colon:
        name, mode_name = "", spec
    if not name:
        name = next((n for n, t in targets.items() if not t[3]), next(iter(targets)))
    if name not in targets:
        raise SystemExit(f"--profile {spec!r}: no model {name!r}; the models are {', '.join(targets)}")
    model, prompts, modes, _ = targets[name]
    by_name = {m.name: m for m in modes}
    if not mode_name:
        mode_name = modes[0].name
    if mode_name not in by_name:
        raise SystemExit(
            f"--profile {spec!r}: {name} has no mode {mode_name!r}; its modes are {', '.join(by_name)} "
            "(write MODEL:MODE)"
        )
    stats = profile_decoding(model, prompts, by_name[mode_name].config, batch_size, args.profile_batches, args.seed)
    report = {
        "model": name,
        "mode": mode_name,
        "batch_size": batch_size,
        "batches": -(-min(len(prompts), batch_size * args.profile_batches) // batch_size),
        **profile_report(stats, args.profile_top),
    }
    print_profile(report)
    setup = {
        "profiler": "cProfile",
        "tasks": None if tasks is None else args.tasks,
        "gen_length": args.gen_length,
        "dtype": dtype,
        "device": str(next(model.parameters()).device),
        "threads": torch.get_num_threads(),
        "config": config_dict(by_name[mode_name].config),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    return {"profile": report, "setup": setup}


# --------------------------------------------------------------------------- main


def run_single(args) -> dict:
    """The single-model run: the baseline and every (policy, cache) mode of one model."""
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
    return result


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--checkpoint", default=None, help=f"the single-model run's model (default {DEFAULT_CHECKPOINT})")
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
    ap.add_argument("--dtype", default=None, help="weights' dtype (default: as stored; float32 with --compare)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    # --random-model shape (the shipped TinyCode model's default size)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    # AR against diffusion
    ap.add_argument(
        "--compare",
        nargs="+",
        action="extend",
        metavar="NAME=DIR",
        help="compare these models (DIR: checkpoint directory or shipped model name); repeatable",
    )
    ap.add_argument("--reference", default=None, help="--compare: the causal model to compare with (default: first)")
    ap.add_argument(
        "--batch-sizes",
        nargs="+",
        type=int,
        default=None,
        help=f"--compare: batch sizes (default {DEFAULT_BATCH_SIZES})",
    )
    ap.add_argument(
        "--random-prompts", action="store_true", help="--compare: random prompt ids instead of tasks (no pass@1)"
    )
    ap.add_argument(
        "--profile",
        nargs="?",
        const="",
        default=None,
        metavar="MODEL:MODE",
        help="profile one mode instead of timing (default: the first diffusion model's first mode)",
    )
    ap.add_argument("--profile-batches", type=int, default=3, help="--profile: batches to decode")
    ap.add_argument("--profile-top", type=int, default=15, help="--profile: functions to list")
    args = ap.parse_args(argv)
    if not args.compare:
        for flag, value in (("--reference", args.reference), ("--batch-sizes", args.batch_sizes)):
            if value is not None:
                raise SystemExit(f"{flag} belongs to --compare; add --compare NAME=DIR ... (or drop {flag})")
        if args.random_prompts:
            raise SystemExit("--random-prompts belongs to --compare; without it use --random-model")
    if not args.compare and args.checkpoint is None:
        args.checkpoint = str(DEFAULT_CHECKPOINT)
    if args.profile_batches < 1:
        raise SystemExit(f"--profile-batches {args.profile_batches}: profile at least one batch")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile is not None:
        result = run_profile(args)
    elif args.compare:
        result = run_compare(args)
    else:
        result = run_single(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


if __name__ == "__main__":
    main()
