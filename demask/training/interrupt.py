"""Ctrl-C during training: finish the step, save, stop (nothing trained is lost).

The first SIGINT sets :attr:`Interrupt.requested`; the loop checks it after each optimizer
step, writes a checkpoint and ends the run (``TrainResult.interrupted``). Where nothing is
left to lose (an evaluation after the step's checkpoint was written) the signal ends that
phase at once (:meth:`Interrupt.abortable`); a second Ctrl-C always aborts at once.

Not covered: several processes (torchrun forwards the signal to every rank, and a rank
saving alone would leave the others in a collective): the handler is installed only for
single-process runs from the main thread; elsewhere Ctrl-C behaves as Python's default.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType


class Interrupt:
    """A graceful-stop request set by SIGINT while :meth:`installed` is active."""

    def __init__(self) -> None:
        self.requested = False
        self._abortable = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested or self._abortable:
            self.requested = True
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupted: finishing this step, then saving a checkpoint and stopping (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)  # fmt: skip

    @contextlib.contextmanager
    def installed(self, enabled: bool = True) -> Iterator[Interrupt]:
        """Handle SIGINT as a stop request inside the block (if ``enabled`` and on the main thread)."""
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def abortable(self) -> Iterator[None]:
        """A phase that Ctrl-C may cut short at once (its KeyboardInterrupt is swallowed here
        and :attr:`requested` is set), because everything it would lose is already saved."""
        self._abortable = True
        try:
            yield
        except KeyboardInterrupt:
            self.requested = True
        finally:
            self._abortable = False
