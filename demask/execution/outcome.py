"""From runs (attempts) of one program to its verdicts: pure bookkeeping, no processes.

A program is ``code`` (part 0) plus tests (parts 1..n). One attempt is one forked child;
it reports a verdict per part it finished and may end early (timeout, signal, exit).
Rules:
- ``code`` not passing decides everything: every test gets its verdict.
- A test during which the child ended gets the reason it ended (timeout, memory,
  killed); a fresh attempt then re-runs ``code`` and continues with the next test, at
  most ``max_restarts`` times. Tests never reached get the last reason, marked "not run".
- The program passes only if every part reported ``passed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .types import Verdict

PASSED = Verdict.PASSED.value


@dataclass
class Attempt:
    """What one child reported. ``stop``: (verdict, message) when it did not finish."""

    first_test: int
    records: dict[int, tuple[str, str]] = field(default_factory=dict)
    done: bool = False
    stop: tuple[str, str] | None = None


@dataclass
class ProgramOutcome:
    n_tests: int
    max_restarts: int
    code: tuple[str, str] | None = None
    tests: dict[int, tuple[str, str]] = field(default_factory=dict)  # 0-based test index
    attempts: int = 0

    def add(self, attempt: Attempt) -> int | None:
        """Record one attempt; returns the test index to restart from, or None if done."""
        self.attempts += 1
        stop = attempt.stop or (Verdict.KILLED.value, "ended without reporting (harness failure)")
        code = attempt.records.get(0)
        if code is None or code[0] != PASSED:
            reason = code if code is not None else stop
            if self.attempts == 1:
                self.code = reason
            else:  # code passed before but not on this restart: the rest cannot run
                self._rest(attempt.first_test, reason[0], f"not run: code failed on restart: {reason[1]}")
            return None
        if self.code is None:
            self.code = code
        for part, rec in attempt.records.items():
            if part >= 1:
                self.tests[part - 1] = rec
        if attempt.done:
            return None
        hung = next((k for k in range(attempt.first_test, self.n_tests) if k not in self.tests), None)
        if hung is None:  # everything reported, then died before "done": results stand
            return None
        self.tests[hung] = stop
        if hung + 1 >= self.n_tests:
            return None
        if self.attempts > self.max_restarts:
            self._rest(hung + 1, stop[0], f"not run: restarts exhausted after test {hung + 1}: {stop[1]}")
            return None
        return hung + 1

    def _rest(self, start: int, verdict: str, message: str) -> None:
        for k in range(start, self.n_tests):
            self.tests.setdefault(k, (verdict, message))

    def finish(self) -> dict:
        """The result fields: verdict, per_test, tests_passed, tests_total, error."""
        code = self.code or (Verdict.KILLED.value, "no attempt ran")
        if code[0] != PASSED:
            per_test = [code[0]] * self.n_tests
            return dict(
                verdict=code[0], per_test=per_test, tests_passed=0, tests_total=self.n_tests, error=code[1] or code[0]
            )
        per_test = [self.tests.get(k, (Verdict.KILLED.value, "not run"))[0] for k in range(self.n_tests)]
        failing = next((k for k, v in enumerate(per_test) if v != PASSED), None)
        error = None
        verdict = PASSED
        if failing is not None:
            verdict, message = self.tests.get(failing, (per_test[failing], "not run"))
            error = f"test {failing + 1}: {message or verdict}"
        return dict(
            verdict=verdict,
            per_test=per_test,
            tests_passed=sum(v == PASSED for v in per_test),
            tests_total=self.n_tests,
            error=error,
        )
