"""`demask check-samples` and `demask eval`: score a samples file; sample, run and score a model.

    demask check-samples --tasks humaneval --samples samples.jsonl --out results.json
    demask eval --checkpoint CKPT --tasks mbpp:test --task-data mbpp.jsonl --n-samples 10 --out runs/x \\
        --gen-length 256 --temperature 0.2 --policy threshold --set policy_options.threshold=0.8

TASKS is a registered benchmark (``humaneval``, ``humaneval-asserts``, ``mbpp:test``,
``mbpp-sanitized:test``, ``tinycode:test``) or a HumanEval-shape .jsonl file. The work is
done by :mod:`demask.evaluation`; the model is loaded only by ``eval``, when it runs.
``eval``'s options are :class:`EvalConfig`'s fields and its DecodeConfig's (demask.cli.options).

Both commands check the tasks before anything is sampled or scored
(:func:`demask.tasks.check_tasks`: tests that do not compile, an entry point nothing defines,
a canonical solution that fails its tests): a broken task is an error, or with
``--skip-broken-tasks`` it is left out with a warning. ``eval`` also warns, before loading the
model, about options that cannot have an effect (several samples of a greedy decode; diffusion
options given for an autoregressive checkpoint).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from demask.cli.options import command, config_flags, default_gen_length, fail, gather, reported_errors
from demask.decoding.config import DecodeConfig
from demask.evaluation.runner import lock_out_dir, write_json
from demask.model.hub import resolve_checkpoint
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
    if not tasks:
        raise fail(f"{spec} holds no tasks; nothing to evaluate")
    return tasks


def drop_broken_tasks(tasks: list[Task], sandbox: Any, timeout: float, skip: bool) -> tuple[list[Task], list[str]]:
    """The tasks that pass :func:`demask.tasks.check_tasks` and the ids of those left out.

    A broken task is an error (ValueError listing the first problems) unless ``skip``; then
    it is left out with a warning line on stderr. Leaving out every task is an error.
    """
    from demask.tasks.check import check_tasks, describe_problems

    problems = check_tasks(tasks, sandbox, timeout_s=timeout)
    if not problems:
        return tasks, []
    report = describe_problems(problems, len(tasks))
    broken = list(dict.fromkeys(p.task_id for p in problems))
    if not skip:
        raise ValueError(
            f"{report}\nthese tasks would be scored as the model's failures: fix them, or pass "
            "--skip-broken-tasks to leave them out"
        )
    left_out = set(broken)
    kept = [t for t in tasks if t.task_id not in left_out]
    if not kept:
        raise ValueError(f"{report}\nevery task is broken: nothing left to evaluate")
    first: dict[str, Any] = {}
    for p in problems:
        first.setdefault(p.task_id, p)
    shown = ", ".join(f"{tid} ({first[tid].kind}: {first[tid].what})" for tid in broken[:10])
    more = f", and {len(broken) - 10} more" if len(broken) > 10 else ""
    typer.echo(
        f"warning: --skip-broken-tasks: leaving out {len(broken)} broken task(s) of {len(tasks)}: {shown}{more}",
        err=True,
    )
    return kept, broken


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
    skip_broken_tasks: bool = typer.Option(
        False,
        "--skip-broken-tasks",
        help="Leave out (with a warning) the tasks whose tests do not compile, whose entry point is not "
        "defined or whose canonical solution fails; without it such a task is an error.",
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
            task_list, broken = drop_broken_tasks(task_list, sandbox, timeout, skip_broken_tasks)
            results = check_samples(
                task_list,
                samples,
                sandbox,
                timeout_s=timeout,
                only_sampled_tasks=only_sampled,
                exclude_tasks=broken,
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, results)
    _print_summary(results, out)
    if results["dropped_partial_last_line"]:
        typer.echo(
            f"warning: {samples}, line {_last_line_number(samples)}: the last line is cut off (no newline "
            "and not valid JSON: the writer crashed or is still writing); that sample was not scored",
            err=True,
        )


def _last_line_number(path: Path) -> int:
    """The number of the last line of a file that does not end with a newline."""
    count = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
    return count + 1


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
    """Prompts per decoding call (recorded: a resumed run keeps the first run's batches)."""
    seed: int = 0
    """Base seed; each (task, sample) gets its own from it."""
    timeout: float = 3.0
    """Wall-clock limit per program, seconds."""
    workers: int | None = None
    """Sandbox workers (None: the CPU count)."""
    device: str = "cpu"
    """Torch device of the model."""
    dtype: str | None = None
    """Model dtype (float32, bfloat16 ..., or int8: dynamic int8 Linear layers on the CPU); None: as stored."""
    per_row_seeds: bool = False
    """Decode each prompt alone with its own seed (batch-independent samples; slower)."""
    skip_broken_tasks: bool = False
    """Leave out (with a warning) the tasks whose tests do not compile, whose entry point is
    not defined or whose canonical solution fails; without it such a task is an error."""
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    """The decoding settings (every DecodeConfig field is an option of its own; the policy's
    knobs are --set policy_options.NAME=VALUE)."""


EVAL_FLAGS = config_flags(EvalConfig, flatten=["decode"], skip=["trace"])


def eval_command(given: dict[tuple[str, ...], Any], settings: list[str], decode: list[str]) -> None:
    """Sample completions from a checkpoint, execute them and score pass@k (resumable)."""
    from demask.config import from_dict
    from demask.evaluation import evaluate

    if decode:
        typer.echo(
            "warning: --decode KEY=VALUE is deprecated; write --set KEY=VALUE (the old option "
            "goes in the next release)",
            err=True,
        )
    raw = gather(EvalConfig, given, [*decode, *settings], {"decode": {}}, implicit="decode")
    options = raw.pop("decode")  # checked when the sampler builds its DecodeConfig
    default_gen_length(options, raw.get("checkpoint", ""))
    config = from_dict(EvalConfig, raw)
    if Path(config.out).is_file():
        raise NotADirectoryError(
            f"--out {config.out} is a file; eval writes a directory (samples.jsonl, "
            "results.json, run.json): give a directory path"
        )
    if Path(config.out).is_dir():  # another eval writing there: refused now, not after the set-up
        with lock_out_dir(Path(config.out)):
            pass
    task_list = _load_tasks(config.tasks, _path(config.task_data), config.limit)
    for warning in ineffective_options(options, config.n_samples, checkpoint_is_causal(config.checkpoint)):
        typer.echo(f"warning: {warning}", err=True)
    checkpoint = resolve_checkpoint(config.checkpoint)  # recorded as a path: the same from any directory
    with _sandbox(config.timeout, config.workers) as sandbox:
        task_list, broken = drop_broken_tasks(task_list, sandbox, config.timeout, config.skip_broken_tasks)
        sampler = build_sampler(checkpoint, config.device, config.dtype, options, config.per_row_seeds)
        run_info = {
            "checkpoint": str(checkpoint.resolve()),
            "tasks": config.tasks,
            "limit": config.limit,
            "decode": options,
            "dtype": config.dtype,
            "per_row_seeds": config.per_row_seeds,
            **({"skipped_broken_tasks": broken} if broken else {}),
        }
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
    if not results["num_tasks"] or not results["num_samples"]:
        raise ValueError(
            f"the evaluation ended with {results['num_tasks']} tasks and {results['num_samples']} samples; "
            "nothing was scored"
        )


def checkpoint_is_causal(checkpoint: str) -> bool | None:
    """Whether a checkpoint is autoregressive, from its config.json read as plain JSON (no
    weights, no download); None when that cannot be told (loading the model says why)."""
    from demask.model import read_config

    try:
        return bool(read_config(resolve_checkpoint(checkpoint, offline=True)).causal)
    except Exception:  # it only decides a warning; loading the model reports real errors
        return None


_CAUSAL_IGNORES = ("policy", "steps", "block_length", "schedule")


def _samples_positions(options: dict[str, Any]) -> bool:
    """Whether the unmasking policy asked for draws positions at random (so that samples
    differ even at temperature 0); True when that cannot be told."""
    from demask.decoding.policies import LearnedPolicy, RandomPolicy, policy_class

    policy_options = options.get("policy_options")
    if isinstance(policy_options, dict) and policy_options.get("alg_temp") is not None:
        return True
    if options.get("alg_temp") is not None:  # the former spelling
        return True
    policy = options.get("policy", DecodeConfig.policy)
    if not isinstance(policy, str) or ":" in policy:
        return True
    try:
        return issubclass(policy_class(policy), (RandomPolicy, LearnedPolicy))
    except ValueError:  # an unknown name: building the DecodeConfig reports it
        return True


def ineffective_options(options: dict[str, Any], n_samples: int, causal: bool | None) -> list[str]:
    """Warnings about decoding options that cannot have an effect; ``options`` are those the
    user gave (flags and --set), ``causal`` whether the checkpoint is autoregressive."""
    from demask.decoding.config import LEGACY_POLICY_KEYS

    warnings: list[str] = []
    if causal:
        ignored = [f"--{k.replace('_', '-')}" for k in _CAUSAL_IGNORES if k in options]
        policy_options = options.get("policy_options")
        if isinstance(policy_options, dict):
            ignored += [f"policy_options.{k}" for k in policy_options]
        ignored += [f"policy_options.{k}" for k in LEGACY_POLICY_KEYS if k in options]
        if ignored:
            warnings.append(
                f"the checkpoint is autoregressive (causal), which decodes left to right one token per step: "
                f"{', '.join(ignored)} {'has' if len(ignored) == 1 else 'have'} no effect on it; leave "
                f"{'it' if len(ignored) == 1 else 'them'} out (gen_length, temperature, top_p, top_k, cache, "
                "early_stop and seed apply)"
            )
    temperature = options.get("temperature", DecodeConfig.temperature)
    greedy = isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature == 0
    if n_samples > 1 and greedy and (causal or not _samples_positions(options)):
        warnings.append(
            f"--n-samples {n_samples} at temperature 0: every sample of a task is the same greedy decode, so "
            f"pass@k equals pass@1 at {n_samples}x the cost; give a temperature (e.g. --temperature 0.2) to draw "
            "different samples, or use --n-samples 1"
        )
    return warnings


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
