"""`demask check-samples` and `demask eval`: score a samples file; sample, run and score a model.

    demask check-samples --tasks humaneval --samples samples.jsonl --out results.json
    demask eval --checkpoint CKPT --tasks mbpp:test --task-data mbpp.jsonl --n-samples 10 --out runs/x \\
        --gen-length 256 --temperature 0.2 --policy threshold --set policy_options.threshold=0.8

TASKS is a registered benchmark (``humaneval``, ``humaneval-asserts``, ``mbpp:test``,
``mbpp-sanitized:test``, ``tinycode:test``) or a HumanEval-shape .jsonl file. The work is
done by :mod:`demask.evaluation`; the model is loaded only by ``eval``, when it runs.
``eval``'s options are :class:`EvalConfig`'s fields and its DecodeConfig's (demask.cli.options).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from demask.cli.options import command, config_flags, fail, reported_errors, set_path
from demask.decoding.config import DecodeConfig
from demask.tasks.base import Task


def _load_tasks(spec: str, task_data: Path | None, limit: int | None) -> list[Task]:
    from demask.tasks import load_tasks

    try:
        tasks = load_tasks(spec, **({"path": task_data} if task_data is not None else {}))
    except (ValueError, FileNotFoundError, ImportError, OSError) as exc:
        raise fail(str(exc)) from None
    if limit is not None:
        if limit < 1:
            raise fail(f"--limit {limit} must be >= 1")
        tasks = tasks[:limit]
    return tasks


def _sandbox(timeout: float, workers: int | None):
    from demask.execution import Sandbox, SandboxConfig

    try:
        return Sandbox(SandboxConfig.pool(timeout, workers))
    except ValueError as exc:
        raise fail(str(exc)) from None


def _print_summary(results: dict[str, Any], where: Path) -> None:
    totals = "  ".join(f"{k} {v:.4f}" for k, v in results["pass_at_k"].items())
    totals = totals or "no pass@k (too few samples)"
    typer.echo(f"{results['num_tasks']} tasks, {results['num_samples']} samples: {totals}")
    if results["pass_rate_mean"] is not None:
        typer.echo(f"mean pass rate {results['pass_rate_mean']:.4f}")
    typer.echo("verdicts: " + ", ".join(f"{k} {v}" for k, v in results["verdicts"].items() if v))
    gen = results.get("generation")
    if gen:
        per_tok = gen["nfe_per_token"]
        speed = gen["tokens_per_second"]
        typer.echo(f"NFE per token {per_tok:.3f}" if per_tok is not None else "NFE per token n/a", nl=False)
        typer.echo(f", {speed:.1f} tokens/s" if speed is not None else "")
    if results["missing_tasks"]:
        typer.echo(f"{len(results['missing_tasks'])} tasks have no samples (first: {results['missing_tasks'][0]})")
    typer.echo(f"results: {where}")


def check_samples_command(
    tasks: str = typer.Option(
        ...,
        "--tasks",
        help="Benchmark name (humaneval, mbpp:test, tinycode:test ...) or a HumanEval-shape .jsonl file.",
    ),
    samples: Path = typer.Option(
        ..., "--samples", help="Samples JSONL: task_id plus completion (or EvalPlus' solution)."
    ),
    out: Path = typer.Option(..., "--out", help="Where to write the results JSON."),
    timeout: float = typer.Option(3.0, "--timeout", help="Wall-clock limit per program, seconds."),
    workers: int | None = typer.Option(None, "--workers", help="Sandbox workers [default: CPU count]."),
    task_data: Path | None = typer.Option(
        None, "--task-data", help="Data file of the benchmark (e.g. a local mbpp.jsonl) instead of the cache/download."
    ),
    only_sampled: bool = typer.Option(
        False,
        "--only-sampled",
        help="Score only the tasks that have samples (else the others count as missing and block pass@k).",
    ),
) -> None:
    """Execute every sample of a samples file and write pass@k and per-sample verdicts."""
    from demask.evaluation import check_samples

    with reported_errors():
        if out.is_dir():
            raise IsADirectoryError(
                f"--out {out} is a directory; give the results JSON file to write, e.g. {out}/results.json"
            )
        task_list = _load_tasks(tasks, task_data, None)
        with _sandbox(timeout, workers) as sandbox:
            results = check_samples(task_list, samples, sandbox, timeout_s=timeout, only_sampled_tasks=only_sampled)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    _print_summary(results, out)


def build_sampler(checkpoint: Path, device: str, dtype: str | None, decode: dict[str, Any], per_row_seeds: bool):
    """Load the checkpoint and wrap the decoding engine as a Sampler (imports torch)."""
    from demask.decoding import DecodeConfig
    from demask.evaluation.sampler import decoding_sampler
    from demask.model.checkpoint import load_pretrained

    config = DecodeConfig.from_dict(decode)
    model, tokenizer = load_pretrained(checkpoint, dtype=dtype, device=device)
    return decoding_sampler(model, tokenizer, config, batched=not per_row_seeds)


@dataclass
class EvalConfig:
    """What `demask eval` is asked to do."""

    checkpoint: str
    """Checkpoint directory (config.json, safetensors, tokenizer.json)."""
    tasks: str
    """Benchmark name (humaneval, mbpp:test, tinycode:test ...) or HumanEval-shape .jsonl file."""
    n_samples: int
    """Samples per task (pass@k needs n >= k)."""
    out: str
    """Output directory: samples.jsonl, results.json, run.json. Run again on the same
    directory to continue."""
    task_data: str | None = None
    """Data file of the benchmark (e.g. a local mbpp.jsonl) instead of the cache/download."""
    limit: int | None = None
    """Only the first N tasks."""
    batch_size: int = 8
    """Prompts per decoding call."""
    seed: int = 0
    """Base seed; each (task, sample) gets its own from it."""
    timeout: float = 3.0
    """Wall-clock limit per program, seconds."""
    workers: int | None = None
    """Sandbox workers (None: the CPU count)."""
    device: str = "cpu"
    """Torch device of the model."""
    dtype: str | None = None
    """Model dtype (float32, bfloat16 ...); None: as stored."""
    per_row_seeds: bool = False
    """Decode each prompt alone with its own seed (batch-independent samples; slower)."""
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    """The decoding settings (every DecodeConfig field is an option of its own; the policy's
    knobs are --set policy_options.NAME=VALUE)."""


EVAL_FLAGS = config_flags(EvalConfig, flatten=["decode"], skip=["trace"])


def eval_command(given: dict[tuple[str, ...], Any], settings: list[str], decode: list[str]) -> None:
    """Sample completions from a checkpoint, execute them and score pass@k (resumable)."""
    from demask.config import apply_settings, from_dict
    from demask.evaluation import evaluate

    if decode:
        typer.echo(
            "warning: --decode KEY=VALUE is deprecated; write --set KEY=VALUE (the old option "
            "goes in the next release)",
            err=True,
        )
    raw: dict[str, Any] = {"decode": {}}
    apply_settings(raw, [*decode, *settings], EvalConfig, implicit="decode", example="policy_options.threshold=0.8")
    for path, value in given.items():
        set_path(raw, path, value)
    options = raw.pop("decode")  # checked when the sampler builds its DecodeConfig
    config = from_dict(EvalConfig, raw)
    if Path(config.out).is_file():
        raise NotADirectoryError(
            f"--out {config.out} is a file; eval writes a directory (samples.jsonl, "
            "results.json, run.json): give a directory path"
        )
    task_list = _load_tasks(config.tasks, _path(config.task_data), config.limit)
    checkpoint = Path(config.checkpoint)
    sampler = build_sampler(checkpoint, config.device, config.dtype, options, config.per_row_seeds)
    run_info = {
        "checkpoint": str(checkpoint.resolve()),
        "tasks": config.tasks,
        "limit": config.limit,
        "decode": options,
        "dtype": config.dtype,
        "per_row_seeds": config.per_row_seeds,
    }
    with _sandbox(config.timeout, config.workers) as sandbox:
        results = evaluate(
            task_list,
            sampler,
            config.n_samples,
            Path(config.out),
            sandbox,
            seed=config.seed,
            batch_size=config.batch_size,
            timeout_s=config.timeout,
            run_info=run_info,
        )
    _print_summary(results, Path(config.out) / "results.json")


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def register(app: typer.Typer) -> None:
    app.command("check-samples")(check_samples_command)
    legacy = inspect.Parameter(
        "decode",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=list[str],
        default=typer.Option([], "--decode", hidden=True, help="Deprecated: --set KEY=VALUE."),
    )
    app.command("eval")(command(eval_command, EVAL_FLAGS, [legacy]))
