"""What goes into the sandbox and what comes out. Plain data; no process handling here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Verdict(str, enum.Enum):
    """Outcome of one program (or one test of it). Only PASSED counts as a pass."""

    PASSED = "passed"
    FAILED = "failed"  # an AssertionError
    ERROR = "error"  # any other exception (type and message in ExecutionResult.error)
    TIMEOUT = "timeout"  # wall clock or CPU time limit
    MEMORY = "memory"  # MemoryError or the address-space limit
    KILLED = "killed"  # died by a signal, exited early, closed its channel, or crashed

    def __str__(self) -> str:  # json.dumps(Verdict.PASSED) -> "passed"
        return self.value


@dataclass(frozen=True)
class Program:
    """An untrusted program: ``code`` runs first, then each test in the same namespace.

    tests: separate snippets (e.g. one assert each); each gets its own verdict and the
        result's pass rate is the fraction that passed. An empty tuple means the program
        itself is the test (it passes if ``code`` runs to the end without an exception).
    timeout_s: wall-clock limit for one run of the program (``code`` plus its tests); None =
        the sandbox's default. After a test hangs, the remaining tests get a fresh run
        (at most ``SandboxConfig.max_restarts`` of them).
    """

    code: str
    tests: tuple[str, ...] = ()
    timeout_s: float | None = None


@dataclass
class ExecutionResult:
    verdict: Verdict
    tests_passed: int = 0
    tests_total: int = 0
    per_test: list[Verdict] = field(default_factory=list)
    error: str | None = None  # "ExceptionType: message" of the first failing part
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    isolation: str = ""  # e.g. "netns+mountns+rlimits" or "rlimits only: no network namespace"

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASSED

    @property
    def pass_rate(self) -> float:
        """Fraction of tests passed; for a program without tests, 1.0 if it passed."""
        if self.tests_total == 0:
            return 1.0 if self.passed else 0.0
        return self.tests_passed / self.tests_total
