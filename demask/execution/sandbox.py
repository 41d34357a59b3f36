"""The sandbox: a warm pool of worker processes that run untrusted programs under limits.

    with Sandbox(SandboxConfig(workers=2, timeout_s=3.0)) as sb:
        sb.run(Program("def f(x): return 2 * x", tests=("assert f(2) == 4",))).verdict
        for index, result in sb.run_many(programs):   # as they complete
            ...

Each worker is a fresh interpreter started once (worker.py; it imports nothing else of
demask). Per program it forks an isolated child, so a program costs a fork, not an
interpreter start or a multiprocessing.Manager. The parent keeps two programs in flight
per worker (the worker buffers the second while the first runs) and hands the next one
out before yielding a result, so workers stay busy while the caller consumes results.

Not covered: thread-parallel use of one Sandbox (calls from several threads take turns;
one thread must finish or close a ``run_many`` iterator before calling ``run`` again),
and Windows/macOS (Linux system calls throughout).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import wire
from .config import SandboxConfig, _check_timeout
from .types import ExecutionResult, Program, Verdict

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
# The worker loads this directory as a private package, so ``demask/__init__.py`` and
# the rest of demask (torch...) are never imported into it.
_BOOT = (
    "import sys, types\n"
    "if sys.path and sys.path[0] in ('', '.'):\n"
    "    del sys.path[0]\n"
    "pkg = types.ModuleType('_demask_sandbox')\n"
    "pkg.__path__ = [sys.argv[1]]\n"
    "sys.modules['_demask_sandbox'] = pkg\n"
    "from _demask_sandbox.worker import main\n"
    "main(sys.argv[2:])\n"
)
_HELLO_TIMEOUT_S = 120.0
# Programs sent ahead to each worker: it reads the next one while the current one runs
# (worker.py buffers its input), so it never waits on a round trip through the parent.
_DEPTH = 2


@dataclass
class _Handle:
    slot: int
    proc: subprocess.Popen
    rfd: int
    wfd: int
    # Programs sent, oldest (running) first: (index, program, hang limit in seconds).
    queue: deque = field(default_factory=deque)
    deadline: float = 0.0  # when the oldest must have answered, or the worker is hung


class Sandbox:
    """A pool of ``config.workers`` warm workers; start on first use or ``with``.

    isolation: what each run gets, in words ("full isolation [root]: ..." or
        "WEAKER isolation ...; MISSING: ..."), also copied into every result.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._handles: list[_Handle] = []
        self._lock = threading.Lock()  # one run_many at a time
        self._start_lock = threading.Lock()
        self._owner: int | None = None
        self._hello: dict = {}
        self._finalizer: weakref.finalize | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Start the workers (idempotent); raises if one cannot start."""
        with self._start_lock:
            if self._handles:
                return
            started = [self._spawn(slot) for slot in range(self.config.workers)]
            try:
                for h in started:
                    self._hello = self._await_hello(h)
            except BaseException:
                _shutdown(started, grace_s=0.0)
                raise
            self._handles = started
            self._finalizer = weakref.finalize(self, _shutdown, list(started))

    def close(self) -> None:
        """Stop the workers (idempotent). In-flight programs are abandoned."""
        handles, self._handles = self._handles, []
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        _shutdown(handles)

    @property
    def isolation(self) -> str:
        self.start()
        return self._hello["isolation"]

    @property
    def isolation_plan(self) -> dict:
        """The features in effect (pid_ns, net_ns, mount_ns, ipc_ns, uid_drop, ...)."""
        self.start()
        return dict(self._hello["plan"])

    @property
    def uids(self) -> tuple[int, ...]:
        """The uids programs run as (empty when not root: they keep the owner's uid)."""
        if not self.isolation_plan["uid_drop"]:
            return ()
        uid_base = self.config.uid_base
        assert uid_base is not None  # SandboxConfig.__post_init__ always sets it
        return tuple(uid_base + h.slot for h in self._handles)

    @property
    def worker_pids(self) -> tuple[int, ...]:
        return tuple(h.proc.pid for h in self._handles)

    def _spawn(self, slot: int) -> _Handle:
        cmd = [
            sys.executable or "python3",
            "-s",
            "-B",
            "-c",
            _BOOT,
            _PACKAGE_DIR,
            json.dumps(self.config.to_dict()),
            str(slot),
        ]
        # The worker's environment is the program's memory too: keep it free of secrets.
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd="/", close_fds=True, start_new_session=True
        )
        assert proc.stdout is not None and proc.stdin is not None  # both are PIPE
        return _Handle(slot, proc, proc.stdout.fileno(), proc.stdin.fileno())

    def _await_hello(self, h: _Handle) -> dict:
        ready, _, _ = select.select([h.rfd], [], [], _HELLO_TIMEOUT_S)
        msg = wire.recv(h.rfd) if ready else None
        if msg is None:
            h.proc.kill()
            raise RuntimeError(
                f"sandbox worker {h.slot} did not start (exit status "
                f"{h.proc.poll()}); its error, if any, is on stderr above"
            )
        if not msg.get("hello"):
            raise RuntimeError(
                f"sandbox worker {h.slot} refused to start: {msg.get('error')}; "
                "set require_full_isolation=False to run with what is available"
            )
        return msg

    def _restart(self, h: _Handle) -> None:
        _shutdown([h], grace_s=0.0)
        fresh = self._spawn(h.slot)
        self._await_hello(fresh)
        h.proc, h.rfd, h.wfd, h.queue = fresh.proc, fresh.rfd, fresh.wfd, deque()
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _shutdown, list(self._handles))

    # ------------------------------------------------------------------ running
    def run(self, program: Program | str) -> ExecutionResult:
        return self.map([program])[0]

    def map(self, programs: Iterable[Program | str]) -> list[ExecutionResult]:
        """All results, in input order."""
        out: dict[int, ExecutionResult] = dict(self.run_many(programs))
        return [out[i] for i in range(len(out))]

    def run_many(self, programs: Iterable[Program | str]) -> Iterator[tuple[int, ExecutionResult]]:
        """Yield ``(index, result)`` as programs complete (not in input order).

        ``programs`` is consumed lazily, one per free worker, so it may be a generator of
        any length. Closing the iterator early waits for the programs in flight."""
        self.start()
        with self._exclusive():
            yield from self._schedule(iter(enumerate(programs)))

    @contextmanager
    def _exclusive(self):
        me = threading.get_ident()
        if self._owner == me:
            raise RuntimeError(
                "this thread is already inside a run_many loop of this Sandbox; "
                "finish or close that iterator first (or use a second Sandbox)"
            )
        with self._lock:
            self._owner = me
            try:
                yield
            finally:
                self._owner = None

    def _schedule(self, source: Iterator) -> Iterator[tuple[int, ExecutionResult]]:
        retry: deque = deque()  # sent to a worker that died before starting them
        exhausted = False

        def fill() -> None:
            nonlocal exhausted
            for depth in range(1, _DEPTH + 1):  # first one each, then a second each
                for h in self._handles:
                    while len(h.queue) < depth and (retry or not exhausted):
                        item = retry.popleft() if retry else next(source, None)
                        if item is None:
                            exhausted = True
                            break
                        self._submit(h, *item)

        try:
            while True:
                fill()
                busy = [h for h in self._handles if h.queue]
                if not busy:
                    return
                done = self._collect(busy, retry)
                fill()  # before handing results out, so workers never wait on the caller
                yield from done
        finally:
            while any(h.queue for h in self._handles):  # closed early: finish what was sent
                self._collect([h for h in self._handles if h.queue], retry)

    def _submit(self, h: _Handle, index: int, program: Program | str) -> None:
        program = _as_program(program)
        timeout = program.timeout_s if program.timeout_s is not None else self.config.timeout_s
        _check_timeout(timeout, f"programs[{index}].timeout_s")
        msg = {"id": index, "code": program.code, "tests": list(program.tests), "timeout_s": timeout}
        # The worker's own clock is authoritative; this only catches a worker that hangs.
        limit = (1 + self.config.max_restarts) * (timeout + 5.0) + 30.0
        if not h.queue:
            h.deadline = time.monotonic() + limit
        h.queue.append((index, program, limit))
        try:
            wire.send(h.wfd, msg)
        except OSError:
            pass  # the worker is gone; _collect sees it and restarts it

    def _collect(self, busy: list[_Handle], retry: deque) -> list[tuple[int, ExecutionResult]]:
        """Wait until at least one worker answers (or is found dead or hung)."""
        while True:
            wait = max(0.0, min(h.deadline for h in busy) - time.monotonic())
            ready, _, _ = select.select([h.rfd for h in busy], [], [], wait)
            out = []
            for h in busy:
                if h.rfd in ready:
                    out.append(self._receive(h, retry))
                elif time.monotonic() > h.deadline:
                    out.append(self._lost(h, retry, f"sandbox worker {h.slot} stopped answering"))
            if out:
                return out

    def _receive(self, h: _Handle, retry: deque) -> tuple[int, ExecutionResult]:
        try:
            msg = wire.recv(h.rfd)
        except (OSError, ValueError):
            msg = None
        index, _, _ = h.queue[0]
        if msg is None or msg.get("id") != index:
            return self._lost(
                h, retry, f"sandbox worker {h.slot} died while running this program (status {h.proc.poll()})"
            )
        h.queue.popleft()
        if h.queue:
            h.deadline = time.monotonic() + h.queue[0][2]
        return index, ExecutionResult(
            verdict=Verdict(msg["verdict"]),
            tests_passed=msg["tests_passed"],
            tests_total=msg["tests_total"],
            per_test=[Verdict(v) for v in msg["per_test"]],
            error=msg["error"],
            stdout=msg["stdout"],
            stderr=msg["stderr"],
            duration_s=msg["duration_s"],
            isolation=msg["isolation"],
        )

    def _lost(self, h: _Handle, retry: deque, why: str) -> tuple[int, ExecutionResult]:
        """The worker died or hung: its running program is KILLED, the ones queued behind
        it go to another worker, and a fresh worker takes the slot."""
        (index, _, _), *waiting = h.queue
        retry.extend((i, p) for i, p, _ in waiting)
        self._restart(h)
        return index, _killed(f"{why}; it was restarted")


def _as_program(program: Program | str) -> Program:
    if isinstance(program, str):
        return Program(code=program)
    if not isinstance(program, Program):
        raise TypeError(f"expected a Program or a str of code, got {type(program).__name__}")
    if not isinstance(program.code, str) or not all(isinstance(t, str) for t in program.tests):
        raise TypeError("Program.code and every Program.tests entry must be str")
    return program


def _killed(message: str) -> ExecutionResult:
    return ExecutionResult(verdict=Verdict.KILLED, error=message)


def _shutdown(handles: list[_Handle], grace_s: float = 5.0) -> None:
    for h in handles:
        for stream in (h.proc.stdin, h.proc.stdout):
            assert stream is not None  # _spawn opens both as pipes
            try:
                stream.close()
            except OSError:
                pass
    end = time.monotonic() + grace_s
    for h in handles:
        try:
            h.proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        if h.proc.poll() is None:
            try:
                os.killpg(h.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                h.proc.kill()
            h.proc.wait()


def run_programs(programs: Iterable[Program | str], config: SandboxConfig | None = None) -> list[ExecutionResult]:
    """Run programs in a temporary sandbox; results in input order."""
    with Sandbox(config) as sb:
        return sb.map(programs)
