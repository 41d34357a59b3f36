"""Messages between the sandbox (parent) and its workers: 4-byte length + JSON.

Both ends are trusted; untrusted programs never hold these pipes (each child closes
every descriptor but its own stdio and its result channel before the program runs).
"""

from __future__ import annotations

import json
import os

MAX_MESSAGE_BYTES = 1 << 30


def send(fd: int, message: dict) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    buf = memoryview(len(data).to_bytes(4, "big") + data)
    while buf:
        buf = buf[os.write(fd, buf) :]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv(fd: int) -> dict | None:
    """The next message, or None at end of stream (the other side is gone)."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    size = int.from_bytes(head, "big")
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {size} bytes exceeds {MAX_MESSAGE_BYTES}: the stream is corrupt")
    body = _read_exact(fd, size)
    if body is None:
        return None
    return json.loads(body)


class Inbox:
    """Non-blocking reader of messages on ``fd``: the worker pumps it while a program
    runs, so a parent sending ahead never blocks on a full pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self._buf = bytearray()
        os.set_blocking(fd, False)

    def pump(self) -> None:
        """Read whatever is available now."""
        while not self.eof:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return
            if not chunk:
                self.eof = True
                return
            self._buf += chunk

    def pop(self) -> dict | None:
        """A complete message if one is buffered, else None."""
        if len(self._buf) < 4:
            return None
        size = int.from_bytes(self._buf[:4], "big")
        if size > MAX_MESSAGE_BYTES:
            raise ValueError(f"message of {size} bytes exceeds {MAX_MESSAGE_BYTES}: the stream is corrupt")
        if len(self._buf) < 4 + size:
            return None
        body = bytes(self._buf[4 : 4 + size])
        del self._buf[: 4 + size]
        return json.loads(body)

    def wait(self) -> dict | None:
        """The next message, blocking; None once the other side has closed the pipe."""
        import select

        while True:
            msg = self.pop()
            if msg is not None or self.eof:
                return msg
            select.select([self.fd], [], [])
            self.pump()
