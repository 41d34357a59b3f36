"""The harness: runs inside the sandboxed child, executes ``code`` then each test, and
reports one authenticated record per part on the result channel (see channel.py).

It is written against a hostile program running in the same interpreter:
- everything it calls after the program starts (os.write, os._exit, the HMAC) is bound
  to local variables before the first line of the program runs, so monkeypatching
  modules (``os.write = ...``, ``sys.modules[...]``) does not reach it;
- the program runs in a fresh namespace (``exec(code, ns)``) that holds no key and no fd;
- every exception, including SystemExit and KeyboardInterrupt, is a verdict, never an
  exit; the process always ends with ``os._exit``, so atexit handlers and
  ``sys.excepthook`` never run;
- a 2 MiB reserve of address space (``bytes(n)``: calloc'd, never touched, so it costs no
  page faults) is freed on MemoryError so that the record can still be written.

Not covered: a program that walks the interpreter's frames or memory to find the key
(the key must be in this process to sign records); see docs/sandbox.md.
"""

from __future__ import annotations

import builtins
import os
import sys
from collections.abc import Callable

from .types import Verdict

_HMAC: Callable[[bytes, bytes, str], bytes]
try:
    from _hashlib import hmac_digest as _HMAC
except ImportError:  # pragma: no cover
    from hmac import digest as _HMAC

_PASSED, _FAILED, _ERROR, _MEMORY = (
    Verdict.PASSED.value,
    Verdict.FAILED.value,
    Verdict.ERROR.value,
    Verdict.MEMORY.value,
)
MAX_ERROR_CHARS = 2000


def describe(exc: BaseException, type_=type, str_=str, isinstance_=isinstance) -> str:
    """``"ValueError: bad"``; never raises, whatever the exception's ``__str__`` does.
    (Builtins are bound as defaults: a program may have replaced ``builtins.str``.)"""
    try:
        name = type_(exc).__name__
        text = str_(exc)
    except BaseException:
        name, text = "Exception", "<unprintable>"
    if not isinstance_(text, str_) or not isinstance_(name, str_):
        name, text = "Exception", "<unprintable>"
    return (f"{name}: {text}" if text else name)[:MAX_ERROR_CHARS]


def run(code: str, tests: list[str], first_test: int, key: bytes, fd: int) -> None:
    """Execute the program and report; never returns (ends with ``os._exit``).

    Parts: 0 is ``code``, k >= 1 is ``tests[k - 1]``; this run does part 0 and then the
    tests from index ``first_test`` (0-based) on. If ``code`` does not pass, no test runs.
    """
    # Everything used after the program starts is a local, bound now: module globals
    # (``harness._PASSED``, ``os.write``...) are the program's to change.
    write, exit_, digest, compile_, exec_ = os.write, os._exit, _HMAC, compile, exec
    to_bytes, bytes_, str_, len_ = int.to_bytes, bytes, str, len
    MemoryError_, AssertionError_, BaseException_ = MemoryError, AssertionError, BaseException
    PASSED_, FAILED_, ERROR_, MEMORY_ = _PASSED, _FAILED, _ERROR, _MEMORY
    describe_, flush_ = describe, _flush_streams
    state = {"seq": 0}

    def send(payload: bytes) -> None:
        seq = state["seq"]
        tag = digest(key, to_bytes(seq, 4, "big") + payload, "sha256")
        frame = to_bytes(32 + len_(payload), 4, "big") + tag + payload
        while frame:
            n = write(fd, frame)
            frame = frame[n:]
        state["seq"] = seq + 1

    reserve: bytes | None = bytes_(2 << 20)
    parts = [(0, code, "<code>")] + [(k + 1, tests[k], f"<test {k + 1}>") for k in range(first_test, len(tests))]
    ns = {"__name__": "__sandbox__", "__builtins__": builtins}
    try:
        for part, source, filename in parts:
            verdict, error = PASSED_, ""
            try:
                exec_(compile_(source, filename, "exec"), ns)
            except MemoryError_ as exc:
                reserve = None
                verdict, error = MEMORY_, describe_(exc)
            except AssertionError_ as exc:
                verdict, error = FAILED_, describe_(exc)
            except BaseException_ as exc:
                verdict, error = ERROR_, describe_(exc)
            if reserve is None:
                try:
                    reserve = bytes_(2 << 20)
                except MemoryError_:
                    pass
            encoded = str_(error).encode("utf-8", "replace")[:8000]
            send(b"%d %s %s" % (part, verdict.encode(), bytes_(encoded)))
            if part == 0 and verdict != PASSED_:
                break
        flush_()
        send(b"done")
    except BaseException_:
        exit_(71)
    exit_(0)


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
