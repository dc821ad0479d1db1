"""How a signal stops a run: SIGINT, SIGTERM and SIGHUP finish the current chunk, write a checkpoint and raise
``TrainingInterrupted`` (``StopSignals``); a second signal aborts at once. No JAX here: ``rl3jax train`` answers
signals from its first line on, before JAX is imported."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal (``signum``: SIGINT for Ctrl-C); its message says truthfully which checkpoint
    a ``--resume`` continues from. The CLI exits with status 128 + ``signum`` (130 for Ctrl-C)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP during training (a context manager; a no-op outside the main thread). The
    first is answered at once on stderr (``when()`` says when the loop stops) and recorded in ``signum``; a
    second aborts at once (status 128 + its number; ``intact()`` says what a resume continues from), except the
    same signal again within ``REPEAT_S`` seconds (GNU ``timeout`` and job control deliver one to the process and
    again to its group). A thread woken by ``signal.set_wakeup_fd`` prints, so the lines appear even during an
    import, a compile or a compiled computation (where Python's own KeyboardInterrupt can be lost: one raised in
    a garbage-collection callback is only printed as ignored).

    ``when=None``: the first signal ends the process at once, as the second does (commands with nothing to save).
    Nested instances share one record: the CLI's, entered at the command's start, answers until the command ends;
    the driver's, inside it, sees a signal that came during the setup and gives its own ``when`` and ``intact``."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    REPEAT_S = 1.0
    _stack: list[StopSignals] = []  # the entered instances, innermost last
    _first: tuple[int, float] | None = None  # (signal number, monotonic time) of the first signal

    def __init__(self, when: Callable[[], str] | None, intact: Callable[[], str]):
        self.when, self.intact = when, intact

    @property
    def signum(self) -> int | None:
        """The first signal's number, or None."""
        return StopSignals._first[0] if StopSignals._first else None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        if not StopSignals._stack:
            self.pipe = os.pipe()
            os.set_blocking(self.pipe[1], False)
            self.old = {s: signal.signal(s, lambda *_: None) for s in self.SIGNALS}
            self.old_fd = signal.set_wakeup_fd(self.pipe[1], warn_on_full_buffer=False)
            threading.Thread(target=self._watch, args=(self.pipe[0],), daemon=True).start()
        StopSignals._stack.append(self)
        return self

    @staticmethod
    def _watch(fd: int) -> None:
        while data := os.read(fd, 1):
            if not StopSignals._stack:  # the outermost is leaving
                continue
            inner, name = StopSignals._stack[-1], signal.Signals(data[0]).name
            if inner.when is None:  # nothing to stop cleanly: at once
                print(f"\n{name}: stopping at once; {inner.intact()}", file=sys.stderr, flush=True)
                os._exit(128 + data[0])
            if StopSignals._first is None:
                StopSignals._first = data[0], time.monotonic()
                print(f"\n{name}: stopping {inner.when()}; a second Ctrl-C (or signal) aborts at once",
                      file=sys.stderr, flush=True)
            elif data[0] != StopSignals._first[0] or time.monotonic() - StopSignals._first[1] > StopSignals.REPEAT_S:
                print(f"\n{name} again: aborting at once; {inner.intact()}", file=sys.stderr, flush=True)
                os._exit(128 + data[0])
        os.close(fd)

    def __exit__(self, *exc) -> None:
        if self not in StopSignals._stack:  # entered outside the main thread
            return
        if StopSignals._stack == [self]:  # the outermost: handlers back, the record cleared
            signal.set_wakeup_fd(self.old_fd)
            for s, handler in self.old.items():
                signal.signal(s, handler)
            os.close(self.pipe[1])  # the watcher reads end-of-file and closes its end
            StopSignals._first = None
        StopSignals._stack.remove(self)
