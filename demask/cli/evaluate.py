"""`demask check-samples` and `demask eval`: score a samples file; sample, run and score a model.

    demask check-samples --tasks humaneval --samples samples.jsonl --out results.json
    demask eval --checkpoint CKPT --tasks mbpp:test --task-data mbpp.jsonl --n-samples 10 --out runs/x \\
        --gen-length 256 --temperature 0.2 --policy entropy

TASKS is a registered benchmark (``humaneval``, ``humaneval-asserts``, ``mbpp:test``,
``mbpp-sanitized:test``, ``tinycode:test``) or a HumanEval-shape .jsonl file. The work is
done by :mod:`demask.evaluation`; the model and the decoding engine are imported only by
``eval``, when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from demask.tasks.base import Task


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _load_tasks(spec: str, task_data: Optional[Path], limit: Optional[int]) -> list[Task]:
    from demask.tasks import load_tasks

    try:
        tasks = load_tasks(spec, **({"path": task_data} if task_data is not None else {}))
    except (ValueError, FileNotFoundError, ImportError, OSError) as exc:
        raise _fail(str(exc)) from None
    if limit is not None:
        if limit < 1:
            raise _fail(f"--limit {limit} must be >= 1")
        tasks = tasks[:limit]
    return tasks


def _sandbox(timeout: float, workers: Optional[int]):
    from demask.execution import Sandbox, SandboxConfig

    kw: dict[str, Any] = {"timeout_s": timeout}
    if workers is not None:
        kw["workers"] = workers
    try:
        return Sandbox(SandboxConfig(**kw))
    except ValueError as exc:
        raise _fail(str(exc)) from None


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
        typer.echo(f"{len(results['missing_tasks'])} tasks have no samples "
                   f"(first: {results['missing_tasks'][0]})")
    typer.echo(f"results: {where}")


def check_samples_command(
    tasks: str = typer.Option(..., "--tasks", help="Benchmark name (humaneval, mbpp:test, tinycode:test ...) "
                              "or a HumanEval-shape .jsonl file."),
    samples: Path = typer.Option(..., "--samples", help="Samples JSONL: task_id plus completion "
                                 "(or EvalPlus' solution)."),
    out: Path = typer.Option(..., "--out", help="Where to write the results JSON."),
    timeout: float = typer.Option(3.0, "--timeout", help="Wall-clock limit per program, seconds."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Sandbox workers [default: CPU count]."),
    task_data: Optional[Path] = typer.Option(None, "--task-data", help="Data file of the benchmark "
                                             "(e.g. a local mbpp.jsonl) instead of the cache/download."),
    only_sampled: bool = typer.Option(False, "--only-sampled", help="Score only the tasks that have "
                                      "samples (else the others count as missing and block pass@k)."),
) -> None:
    """Execute every sample of a samples file and write pass@k and per-sample verdicts."""
    from demask.evaluation import check_samples

    task_list = _load_tasks(tasks, task_data, None)
    with _sandbox(timeout, workers) as sandbox:
        try:
            results = check_samples(task_list, samples, sandbox, timeout_s=timeout,
                                    only_sampled_tasks=only_sampled)
        except (ValueError, FileNotFoundError) as exc:
            raise _fail(str(exc)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    _print_summary(results, out)


def _parse_decode_options(pairs: list[str]) -> dict[str, Any]:
    from demask.training.recipe import parse_setting

    out: dict[str, Any] = {}
    for pair in pairs:
        try:
            key, value = parse_setting(pair, "--decode top_p=0.95")
        except ValueError as exc:
            raise _fail(f"--decode {exc}") from None
        out[key.replace("-", "_")] = value
    return out


def build_sampler(checkpoint: Path, device: str, dtype: Optional[str], decode: dict[str, Any],
                  per_row_seeds: bool):
    """Load the checkpoint and wrap the decoding engine as a Sampler (imports torch)."""
    import dataclasses

    from demask.decoding import DecodeConfig
    from demask.evaluation.sampler import decoding_sampler
    from demask.model.checkpoint import load_pretrained

    known = {f.name for f in dataclasses.fields(DecodeConfig)}
    unknown = sorted(set(decode) - known)
    if unknown:
        raise ValueError(f"unknown decoding option(s) {', '.join(unknown)}; DecodeConfig has "
                         f"{', '.join(sorted(known))}")
    config = DecodeConfig(**decode)
    model, tokenizer = load_pretrained(checkpoint, dtype=dtype, device=device)
    return decoding_sampler(model, tokenizer, config, batched=not per_row_seeds)


def eval_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint directory (config.json, "
                                    "safetensors, tokenizer.json)."),
    tasks: str = typer.Option(..., "--tasks", help="Benchmark name or HumanEval-shape .jsonl file."),
    n_samples: int = typer.Option(..., "--n-samples", help="Samples per task (pass@k needs n >= k)."),
    out: Path = typer.Option(..., "--out", help="Output directory: samples.jsonl, results.json, run.json. "
                             "Run again on the same directory to continue."),
    task_data: Optional[Path] = typer.Option(None, "--task-data", help="Data file of the benchmark."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N tasks."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts per decoding call."),
    seed: int = typer.Option(0, "--seed", help="Base seed; each (task, sample) gets its own from it."),
    timeout: float = typer.Option(3.0, "--timeout", help="Wall-clock limit per program, seconds."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Sandbox workers [default: CPU count]."),
    device: str = typer.Option("cpu", "--device", help="Torch device of the model."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Model dtype (float32, bfloat16 ...) "
                                        "[default: as stored]."),
    per_row_seeds: bool = typer.Option(False, "--per-row-seeds", help="Decode each prompt alone with its "
                                       "own seed (batch-independent samples; slower)."),
    gen_length: Optional[int] = typer.Option(None, "--gen-length", help="Completion length in tokens."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Forward passes for the completion."),
    block_length: Optional[int] = typer.Option(None, "--block-length", help="Semi-AR block length."),
    policy: Optional[str] = typer.Option(None, "--policy", help="Unmasking policy name."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Temperature (0 = argmax)."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Nucleus filter (1 = off)."),
    cache: Optional[str] = typer.Option(None, "--cache", help="KV cache mode: none, prefix, dual."),
    decode: list[str] = typer.Option([], "--decode", help="Any other DecodeConfig field, KEY=VALUE "
                                     "(repeatable), e.g. --decode threshold=0.8."),
) -> None:
    """Sample completions from a checkpoint, execute them and score pass@k (resumable)."""
    from demask.evaluation import evaluate

    named = {"gen_length": gen_length, "steps": steps, "block_length": block_length, "policy": policy,
             "temperature": temperature, "top_p": top_p, "cache": cache}
    options = {k: v for k, v in named.items() if v is not None}
    options.update(_parse_decode_options(decode))
    task_list = _load_tasks(tasks, task_data, limit)
    try:
        sampler = build_sampler(checkpoint, device, dtype, options, per_row_seeds)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        raise _fail(str(exc)) from None
    run_info = {"checkpoint": str(checkpoint.resolve()), "tasks": tasks, "limit": limit, "decode": options,
                "dtype": dtype, "per_row_seeds": per_row_seeds}
    with _sandbox(timeout, workers) as sandbox:
        try:
            results = evaluate(task_list, sampler, n_samples, out, sandbox, seed=seed, batch_size=batch_size,
                               timeout_s=timeout, run_info=run_info)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    _print_summary(results, out / "results.json")


def register(app: typer.Typer) -> None:
    app.command("check-samples")(check_samples_command)
    app.command("eval")(eval_command)
