"""`demask demo`: the README's main command."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from demask.cli.options import command, config_flags, gather


@dataclass
class DemoConfig:
    """What `demask demo` is asked to do."""

    out: str | None = None
    """Write results.json, tasks.jsonl and each policy's samples here (None: a temporary directory)."""
    train: bool = False
    """Retrain the tiny models with their shipped recipes first (the AR twin, then the two
    models adapted from it: about 15 + 26 + 50 minutes on 2 CPU cores)."""
    max_tasks: int | None = None
    """Evaluate only the first N held-out tasks."""
    policy: list[str] | None = None
    """Only the rows with these names (repeatable; see the table's 'decoder' column)."""
    workers: int | None = None
    """Sandbox worker processes (None: the CPU count)."""
    threads: int = 1
    """torch CPU threads for decoding (1 keeps the cores free for the sandbox's workers)."""
    dtype: str = "auto"
    """Weights' dtype for decoding: auto (bf16 where the CPU has native bf16, else fp32),
    float32, bfloat16 or int8 (dynamic int8 Linear layers)."""
    grpo: str | None = None
    """A GRPO-trained checkpoint (demask grpo's output) for the 'coupled-GRPO model' row (None:
    the shipped one, if any; the row is skipped without one)."""


FLAGS = config_flags(DemoConfig)


def demo_command(given: dict[tuple[str, ...], Any], settings: list[str]) -> None:
    """Evaluate the shipped tiny models on held-out TinyCode with several decoding policies."""
    from demask.config import from_dict

    demo(from_dict(DemoConfig, gather(DemoConfig, given, settings, example="max_tasks=32")))


def demo(config: DemoConfig) -> None:
    out = None if config.out is None else Path(config.out)
    grpo = None if config.grpo is None else Path(config.grpo)
    max_tasks, policy, workers, dtype = config.max_tasks, config.policy, config.workers, config.dtype
    import torch
    from rich.console import Console
    from rich.table import Table

    from demask.demo import GRPO_SHIPPED, LABELS, SHIPPED, default_policies, heldout_tasks, inference_dtype, run_demo
    from demask.model import load_pretrained

    console = Console()
    torch.set_num_threads(config.threads)
    dirs = dict(SHIPPED)  # the autoregressive twin first: the diffusion models adapt from it
    if config.train:
        dirs = _retrain(dirs, (out or Path(tempfile.mkdtemp(prefix="demask-demo-"))) / "models", console)
    missing = [str(d) for d in dirs.values() if not (d / "config.json").is_file()]
    if missing:
        raise ValueError(
            f"no shipped model at {', '.join(missing)}; run `demask demo --train` to train them (or reinstall demask)"
        )
    if grpo is not None:
        if not (grpo / "config.json").is_file():
            raise ValueError(
                f"--grpo {grpo}: no config.json there; pass a checkpoint directory "
                "written by `demask grpo` (e.g. runs/tinycode-grpo/latest)"
            )
        dirs["grpo"] = grpo
    elif (GRPO_SHIPPED / "config.json").is_file():
        dirs["grpo"] = GRPO_SHIPPED
    gen_length = _completion_length(dirs["diffusion"])
    policies = default_policies(dirs, gen_length)
    if policy:  # checked before the models load
        known = {p.name for p in policies}
        unknown = [p for p in policy if p not in known]
        if any(p.startswith(LABELS["grpo"]) for p in unknown) and "grpo" not in dirs:
            raise ValueError(
                "the coupled-GRPO row needs a GRPO checkpoint: pass --grpo DIR (a `demask grpo` output "
                "directory's checkpoint)"
            )
        if unknown:
            raise ValueError(f"unknown policy row(s) {unknown}; choose from {sorted(known)}")
        policies = [p for p in policies if p.name in policy]
    dtype = inference_dtype() if dtype == "auto" else dtype
    models = {key: load_pretrained(d, dtype=dtype) for key, d in dirs.items()}
    tasks = heldout_tasks(dirs["diffusion"])
    if max_tasks is not None:
        tasks = tasks[:max_tasks]
    out_dir = out or Path(tempfile.mkdtemp(prefix="demask-demo-"))
    console.print(f"held-out TinyCode: {len(tasks)} tasks; weights in {dtype}; writing to {out_dir}")
    rows = run_demo(
        models,
        tasks,
        out_dir,
        policies,
        workers=workers,
        log=lambda r: console.print(f"  {r.policy:<52} pass@1 {r.pass_at_1:.3f}  ({r.extra['seconds']:.0f} s)"),
    )
    table = Table(title=f"held-out TinyCode pass@1 ({len(tasks)} test tasks, greedy, batch 64)")
    for col in ("model: decoder", "pass@1", "NFE/token", "tokens/s", "x AR", "global AR-ness"):
        table.add_column(col, justify="left" if col.startswith("model") else "right")
    ar = next((r.tokens_per_s for r in rows if r.policy.startswith(LABELS["autoregressive"])), float("nan"))
    for r in rows:
        table.add_row(
            r.policy,
            f"{r.pass_at_1:.3f}",
            f"{r.nfe_per_token:.2f}",
            f"{r.tokens_per_s:.0f}",
            f"{r.tokens_per_s / ar:.2f}x",
            f"{r.global_ar_ness:.2f}",
        )
    console.print(table)
    console.print(f"results: {out_dir / 'results.json'}")


def _completion_length(model_dir: Path) -> int:
    from demask.training.recipe import load_recipe

    return load_recipe(model_dir / "recipe.yaml").data.completion_length


def _retrain(dirs: dict[str, Path], root: Path, console) -> dict[str, Path]:
    """Train every model with the recipe shipped beside it, in order; a recipe that starts
    from a shipped model (the adapted ones start from ``tinycode-ar``) starts from the one
    retrained here instead."""
    from demask.training.recipe import load_recipe
    from demask.training.run import apply_overrides, run_recipe

    trained: dict[str, Path] = {}
    by_name: dict[str, Path] = {}
    for key, shipped in dirs.items():
        recipe = apply_overrides(load_recipe(shipped / "recipe.yaml"), out_dir=str(root / key))
        start = recipe.model.init_from
        if start is not None and start in by_name:
            recipe.model.init_from = str(by_name[start])
        console.print(
            f"training the {key} model into {root / key}" + (f" from {recipe.model.init_from}" if start else "")
        )
        result = run_recipe(recipe, log=console.print)
        if result.checkpoint is None:
            raise RuntimeError(f"training the {key} model wrote no checkpoint (train.out_dir unset?)")
        trained[key] = Path(result.checkpoint)
        by_name[shipped.name] = trained[key]
        decoders = shipped / "decoders.json"
        if decoders.is_file():  # the retrained model decodes as the shipped one was chosen to
            (trained[key] / "decoders.json").write_text(decoders.read_text())
    return trained


def register(app: typer.Typer) -> None:
    app.command("demo")(command(demo_command, FLAGS, set_example="max_tasks=32"))
