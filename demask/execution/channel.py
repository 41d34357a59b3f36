"""The result channel: authenticated per-part records from the harness to its worker.

A record is ``length (4 bytes) | tag (32 bytes) | payload`` with
``tag = HMAC-SHA256(key, seq (4 bytes) | payload)``, ``seq`` counting records from 0 and
``key`` 32 random bytes drawn by the worker for this run only. The payload is
``b"<part> <verdict> <error text>"`` (part 0 is ``code``, part k is test k), or
``b"done"`` after the last part, or ``b"setup <error>"`` when isolation could not be set up.

What the program cannot do: print its way to a pass (stdout is another pipe), write a
record without the key (the tag fails and the whole run counts as tampered), replay or
reorder records (``seq`` is inside the tag), or pass by exiting early (missing records
count as not passed). What it can do, deliberately: search its own process (frames,
``gc``, raw memory) for the key, which lives there. See docs/sandbox.md.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

_hmac_digest: Callable[[bytes, bytes, str], bytes]
try:  # the C function, which a program cannot monkeypatch under the harness
    from _hashlib import hmac_digest as _hmac_digest
except ImportError:  # pragma: no cover - Python built without OpenSSL
    _hmac_digest = hmac.digest

TAG_BYTES = 32
MAX_RECORD_BYTES = 16 * 1024
DONE = b"done"
SETUP = b"setup"


def encode(key: bytes, seq: int, payload: bytes) -> bytes:
    """One framed, tagged record."""
    tag = _hmac_digest(key, seq.to_bytes(4, "big") + payload, "sha256")
    return (TAG_BYTES + len(payload)).to_bytes(4, "big") + tag + payload


def part_payload(part: int, verdict: str, error: str = "") -> bytes:
    text = error.encode("utf-8", "replace")[: MAX_RECORD_BYTES - 64]
    return b"%d %s %s" % (part, verdict.encode(), text)


class RecordReader:
    """Worker side: feed raw bytes, get verified payloads; any bad frame marks the channel
    as tampered and stops it (nothing after a forged byte is trusted)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._buf = bytearray()
        self._seq = 0
        self.tampered = False

    def feed(self, data: bytes) -> list[bytes]:
        if self.tampered:
            return []
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= 4:
            size = int.from_bytes(self._buf[:4], "big")
            if not TAG_BYTES <= size <= MAX_RECORD_BYTES + TAG_BYTES:
                self.tampered = True
                return out
            if len(self._buf) < 4 + size:
                break
            tag = bytes(self._buf[4 : 4 + TAG_BYTES])
            payload = bytes(self._buf[4 + TAG_BYTES : 4 + size])
            del self._buf[: 4 + size]
            want = _hmac_digest(self._key, self._seq.to_bytes(4, "big") + payload, "sha256")
            if not hmac.compare_digest(tag, want):
                self.tampered = True
                return out
            self._seq += 1
            out.append(payload)
        return out

    def close(self) -> None:
        """End of stream: a half-written frame left over is tampering too (or a crash in
        the middle of a write, which equally cannot count)."""
        if self._buf:
            self.tampered = True


def parse_part(payload: bytes) -> tuple[int, str, str]:
    """``b"3 failed AssertionError: x"`` -> (3, "failed", "AssertionError: x")."""
    part, verdict, error = payload.split(b" ", 2)
    return int(part), verdict.decode(), error.decode("utf-8", "replace")
