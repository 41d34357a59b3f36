"""MBPP (Austin et al. 2021, arXiv:2108.07732): 974 basic Python problems, three asserts each.

Data: a local ``mbpp.jsonl`` (``path=``), else the copy in the cache directory
(``$DEMASK_CACHE`` or ``~/.cache/demask``), else a download of the canonical file into that
cache, checked against its sha256 (pass ``download=False`` to forbid the network).
``mbpp-sanitized`` reads ``sanitized-mbpp.json`` (427 hand-checked problems) the same way.

Splits by task_id: prompt 1-10, test 11-510, validation 511-600, train 601-974, all 1-974.

Prompt format (the problem text, then the first test as an example, as one docstring; the
same shape EvalPlus uses for MBPP+)::

    \"\"\"
    Write a function to find the shared elements from the given two lists.
    assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)
    \"\"\"

The completion is a whole program (``prefix_prompt=False``); the tests are the three asserts
of ``test_list`` (separable). ``test_setup_code`` is put in front of *each* test rather than
before the program, because in tasks 367 and 927 it builds trees from a ``Node`` class that
the solution defines. Task ids are ``Mbpp/<n>``, as in EvalPlus.

Not covered: few-shot prompting (build it from the ``prompt`` split), MBPP+ (EvalPlus).
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from demask.tasks.base import Task
from demask.tasks.jsonl import iter_jsonl
from demask.tasks.registry import Benchmark

MBPP_VERSION = "1"
MBPP_URL = "https://raw.githubusercontent.com/google-research/google-research/master/mbpp/mbpp.jsonl"
MBPP_SHA256 = "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f"
SANITIZED_URL = "https://raw.githubusercontent.com/google-research/google-research/master/mbpp/sanitized-mbpp.json"
SANITIZED_SHA256 = "ca95deaa9a01ef0a6f439f88bcf0dd3db3563d22f22aad6cae04ebb9a8d8c8e9"

SPLITS: dict[str, tuple[int, int]] = {
    "test": (11, 510),
    "validation": (511, 600),
    "train": (601, 974),
    "prompt": (1, 10),
    "all": (1, 974),
}


# ---------------------------------------------------------------------------- files
def cache_dir() -> Path:
    """``$DEMASK_CACHE`` if set, else ``~/.cache/demask``."""
    return Path(os.environ.get("DEMASK_CACHE") or Path.home() / ".cache" / "demask")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise ValueError naming the file and both digests if the file's sha256 differs."""
    got = sha256_file(path)
    if got != expected.lower():
        raise ValueError(
            f"sha256 of {path} is {got}, expected {expected}: the file is corrupt or "
            f"a different revision; delete it and download again, or pass path= "
            f"(--task-data) to use it as it is"
        )


def download(url: str, dest: str | os.PathLike, sha256: str, *, timeout_s: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically, keeping it only if its sha256 matches."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            shutil.copyfileobj(response, out)
        try:
            verify_sha256(tmp, sha256)
        except ValueError:
            raise ValueError(
                f"downloaded {url} but its sha256 is {sha256_file(tmp)}, expected "
                f"{sha256}; nothing was saved to {dest}. Download the file yourself "
                f"and pass path= (--task-data)"
            ) from None
        os.replace(tmp, dest)
    except OSError as exc:
        raise OSError(
            f"could not download {url} to {dest}: {exc}; download it by hand and pass "
            f"path= (--task-data on the command line), or put it at {dest}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def data_file(
    filename: str, url: str, sha256: str, path: str | os.PathLike | None = None, allow_download: bool = True
) -> Path:
    """The local data file to read: ``path`` as given, else the (checked) cached copy."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"MBPP data file not found: {path}")
        return path
    cached = cache_dir() / "mbpp" / filename
    if cached.is_file():
        verify_sha256(cached, sha256)
        return cached
    if not allow_download:
        raise FileNotFoundError(
            f"no MBPP data at {cached} and download=False; fetch {url} there "
            f"(sha256 {sha256}) or pass path= (--task-data)"
        )
    return download(url, cached, sha256)


# ---------------------------------------------------------------------------- records -> tasks
def mbpp_prompt(text: str, example_test: str) -> str:
    """The problem statement and one example assert, as a docstring (module docstring)."""
    return f'"""\n{text.strip()}\n{example_test.strip()}\n"""\n'


def _entry_point(code: str, first_test: str) -> str:
    """The function the first test calls, preferring names the reference solution defines."""
    try:
        calls = [
            n.func.id
            for n in ast.walk(ast.parse(first_test))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        ]
    except SyntaxError:
        calls = []
    try:
        defined = {
            n.name for n in ast.parse(code).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        }
    except SyntaxError:
        defined = set()
    for pick in ([c for c in calls if c in defined], [c for c in calls if not hasattr(builtins, c)], calls):
        if pick:
            return pick[0]
    return ""


def _norm(code: str) -> str:
    # Python reads \r\n as \n in source (string literals included), so this changes nothing.
    return code.replace("\r\n", "\n")


def task_from_mbpp_record(
    record: dict[str, Any], *, sanitized: bool = False, include_challenge: bool = False, where: str = "record"
) -> Task:
    keys = ("task_id", "prompt" if sanitized else "text", "code", "test_list")
    missing = [k for k in keys if k not in record]
    if missing:
        raise ValueError(f"{where}: missing MBPP key(s) {', '.join(missing)}")
    text = record["prompt" if sanitized else "text"]
    tests = [_norm(t) for t in record["test_list"]]
    if include_challenge:
        tests += [_norm(t) for t in record.get("challenge_test_list") or ()]
    if sanitized:
        setup = "\n".join(record.get("test_imports") or ())
    else:
        setup = _norm(record.get("test_setup_code") or "")
    if setup.strip():
        tests = [setup.rstrip() + "\n" + t for t in tests]
    code = _norm(record["code"])
    number = int(record["task_id"])
    return Task(
        task_id=f"Mbpp/{number}",
        prompt=mbpp_prompt(text, record["test_list"][0]),
        tests=tuple(tests),
        entry_point=_entry_point(code, record["test_list"][0]),
        canonical_solution=code,
        prefix_prompt=False,
        meta={
            "benchmark": "mbpp-sanitized" if sanitized else "mbpp",
            "version": MBPP_VERSION,
            "mbpp_task_id": number,
            "text": text,
        },
    )


def _in_split(number: int, split: str) -> bool:
    lo, hi = SPLITS[split]
    return lo <= number <= hi


def load_mbpp(
    split: str | None = "test",
    *,
    path: str | os.PathLike | None = None,
    download: bool = True,
    include_challenge: bool = False,
) -> list[Task]:
    """MBPP tasks of one split, ordered by task_id."""
    split = split or "test"
    if split not in SPLITS:
        raise ValueError(f"MBPP has no split {split!r}; choose one of {', '.join(SPLITS)}")
    source = data_file("mbpp.jsonl", MBPP_URL, MBPP_SHA256, path, download)
    tasks = [
        task_from_mbpp_record(rec, include_challenge=include_challenge, where=f"{source}, line {n}")
        for n, rec in iter_jsonl(source)
        if _in_split(int(rec.get("task_id", 0)), split)
    ]
    return sorted(tasks, key=lambda t: t.meta["mbpp_task_id"])


def load_mbpp_sanitized(
    split: str | None = "test", *, path: str | os.PathLike | None = None, download: bool = True
) -> list[Task]:
    """The hand-checked subset (sanitized-mbpp.json, a JSON array), ordered by task_id."""
    split = split or "test"
    if split not in SPLITS:
        raise ValueError(f"MBPP has no split {split!r}; choose one of {', '.join(SPLITS)}")
    source = data_file("sanitized-mbpp.json", SANITIZED_URL, SANITIZED_SHA256, path, download)
    try:
        records = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(records, list):
        raise ValueError(f"{source}: expected a JSON array of problems, got {type(records).__name__}")
    tasks = [
        task_from_mbpp_record(rec, sanitized=True, where=f"{source}, item {i}")
        for i, rec in enumerate(records)
        if _in_split(int(rec.get("task_id", 0)), split)
    ]
    return sorted(tasks, key=lambda t: t.meta["mbpp_task_id"])


MBPP = Benchmark(
    "mbpp",
    MBPP_VERSION,
    lambda split, **kw: load_mbpp(split, **kw),
    splits=tuple(SPLITS),
    default_split="test",
    description="MBPP (mbpp.jsonl, 974 problems); test split = task_ids 11-510",
)
MBPP_SANITIZED = Benchmark(
    "mbpp-sanitized",
    MBPP_VERSION,
    lambda split, **kw: load_mbpp_sanitized(split, **kw),
    splits=tuple(SPLITS),
    default_split="test",
    description="sanitized MBPP (427 hand-checked problems); test split has 257",
)
BENCHMARKS = (MBPP, MBPP_SANITIZED)
