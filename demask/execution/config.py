"""The sandbox's limits, as one validated dataclass.

Every limit applies to one *run* of a program (one forked child: ``code`` and the tests
that child gets to); see ``Sandbox`` for how a run restarts after a test that hangs.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

# Modules imported once in each worker so that programs find them already loaded
# (a HumanEval program's ``from typing import List`` then costs nothing).
DEFAULT_PRELOAD = (
    "typing",
    "math",
    "re",
    "collections",
    "itertools",
    "functools",
    "heapq",
    "bisect",
    "string",
    "random",
    "hashlib",
    "json",
    "fractions",
    "decimal",
    "statistics",
    "copy",
    "operator",
    "datetime",
)

_MIB = 1 << 20


def _default_uid_base() -> int:
    # A block of 1024 uids per sandbox, derived from the creating process id, so that two
    # sandboxes on one machine (test runs, torchrun ranks) rarely share a uid and with it
    # an RLIMIT_NPROC budget. Real accounts live far below 200000.
    return 200_000 + (os.getpid() % 100_000) * 1024


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and isolation of a :class:`~demask.execution.sandbox.Sandbox`.

    workers: processes in the warm pool (programs run in parallel); default: CPU count.
    timeout_s: wall-clock limit of one run of a program (``Program.timeout_s`` overrides).
    memory_mb: address-space limit (RLIMIT_AS) of each process of a program, in MiB.
    cpu_s: CPU-time limit (RLIMIT_CPU, whole seconds) of each process; None means
        ceil(timeout) + 1 of the run's timeout, so that the wall clock normally fires first
        and the CPU limit catches what escapes it.
    max_output_bytes: stdout and stderr are each kept up to this many bytes; the rest is
        read and dropped (the program never blocks on a full pipe).
    max_processes: RLIMIT_NPROC of the program's user (processes plus threads), which
        stops fork bombs. Each worker slot runs under its own uid when root.
    max_file_bytes: RLIMIT_FSIZE, the largest file a program may write; its private /tmp
        holds at most 4x this in total.
    max_restarts: after a test hangs or kills its process, a fresh child re-runs ``code``
        and goes on with the next test, at most this many times per program; a program
        therefore takes at most (1 + max_restarts) * timeout_s.
    isolate_network: run programs in an empty network namespace (no network at all).
    isolate_filesystem: run programs in mount and IPC namespaces with a read-only root and
        a private, empty /tmp as working directory.
    isolate_processes: run each program as PID 1 of its own PID namespace, so that every
        process it starts dies with it; False: escaped processes are found and killed by a
        sweep of the worker's descendants (the worker is a child subreaper).
    uid_base: uids ``uid_base + slot`` are used for programs when running as root; None
        picks a block of 1024 uids from the creating process id.
    preload: modules imported in each worker before it forks programs.
    random_seed: the ``random`` module's state at the start of every run, so that verdicts
        are reproducible (``os.urandom`` and ``secrets`` stay truly random); None seeds
        it from os.urandom in each run, as a fresh interpreter would.
    require_full_isolation: raise at start-up instead of running with weaker isolation
        (e.g. when not root and user namespaces are unavailable).
    """

    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    timeout_s: float = 3.0
    memory_mb: int = 1024
    cpu_s: int | None = None
    max_output_bytes: int = 64 * 1024
    max_processes: int = 16
    max_file_bytes: int = 16 * _MIB
    max_restarts: int = 2
    isolate_network: bool = True
    isolate_filesystem: bool = True
    isolate_processes: bool = True
    uid_base: int | None = None
    preload: tuple[str, ...] = DEFAULT_PRELOAD
    random_seed: int | None = 0
    require_full_isolation: bool = False

    def __post_init__(self) -> None:
        if self.uid_base is None:
            object.__setattr__(self, "uid_base", _default_uid_base())
        object.__setattr__(self, "preload", tuple(self.preload))
        _require(
            isinstance(self.workers, int) and 1 <= self.workers <= 1024,
            f"workers={self.workers!r} must be an int in [1, 1024]; pass e.g. os.cpu_count()",
        )
        _check_timeout(self.timeout_s, "timeout_s")
        _require(
            isinstance(self.memory_mb, int) and 128 <= self.memory_mb <= 1 << 20,
            f"memory_mb={self.memory_mb!r} must be an int in [128, 1048576]: below 128 MiB "
            "the Python interpreter itself cannot start its allocations",
        )
        _require(
            self.cpu_s is None or (isinstance(self.cpu_s, int) and 1 <= self.cpu_s <= 86400),
            f"cpu_s={self.cpu_s!r} must be None (ceil(timeout)+1) or whole seconds in [1, 86400]",
        )
        _require(
            isinstance(self.max_output_bytes, int) and 0 <= self.max_output_bytes <= 64 * _MIB,
            f"max_output_bytes={self.max_output_bytes!r} must be an int in [0, 64 MiB]",
        )
        _require(
            isinstance(self.max_processes, int) and 1 <= self.max_processes <= 4096,
            f"max_processes={self.max_processes!r} must be an int in [1, 4096] (it counts "
            "threads too; 1 forbids fork and threads)",
        )
        _require(
            isinstance(self.max_file_bytes, int) and 0 <= self.max_file_bytes <= 1 << 40,
            f"max_file_bytes={self.max_file_bytes!r} must be an int in [0, 1 TiB]",
        )
        _require(
            isinstance(self.max_restarts, int) and 0 <= self.max_restarts <= 100,
            f"max_restarts={self.max_restarts!r} must be an int in [0, 100]",
        )
        _require(
            isinstance(self.uid_base, int) and self.uid_base >= 1000 and self.uid_base + self.workers < 2**31,
            f"uid_base={self.uid_base!r} must be >= 1000 (an unprivileged uid) with "
            f"uid_base + workers < 2**31; pick a block of unused uids, e.g. 60000",
        )
        _require(
            self.random_seed is None or isinstance(self.random_seed, int),
            f"random_seed={self.random_seed!r} must be an int or None",
        )
        bad = [m for m in self.preload if not isinstance(m, str) or not m.replace(".", "").replace("_", "").isalnum()]
        _require(not bad, f"preload contains {bad!r}, which are not module names")

    def cpu_limit(self, timeout_s: float) -> int:
        """RLIMIT_CPU in whole seconds for a run with wall-clock limit ``timeout_s``."""
        return self.cpu_s if self.cpu_s is not None else math.ceil(timeout_s) + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def pool(cls, timeout_s: float, workers: int | None = None, **fields: Any) -> SandboxConfig:
        """A config with this time limit and pool size (None: the default, the CPU count)."""
        if workers is not None:
            fields["workers"] = workers
        return cls(timeout_s=timeout_s, **fields)


def _check_timeout(value: object, name: str) -> None:
    _require(
        isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 3600 and math.isfinite(value),
        f"{name}={value!r} must be a number of seconds in (0, 3600]",
    )


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
