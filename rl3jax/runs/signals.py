"""How a signal stops a run: SIGINT, SIGTERM and SIGHUP finish the current chunk, write a checkpoint and raise
``TrainingInterrupted`` (``StopSignals``); a second signal aborts at once."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from rl3jax.runs.resume import intact


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal (``signum``: SIGINT for Ctrl-C); its message says truthfully which checkpoint
    a ``--resume`` continues from. The CLI exits with status 128 + ``signum`` (130 for Ctrl-C)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP during training (a context manager; a no-op outside the main thread). The
    first is answered at once on stderr (``when()`` says when the loop stops) and recorded in ``signum``; a
    second aborts at once (status 128 + its number), except the same signal again within ``REPEAT_S`` seconds
    (GNU ``timeout`` and job control deliver one to the process and again to its group). A thread woken by
    ``signal.set_wakeup_fd`` prints, so the lines appear even during a compile or a compiled computation."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    REPEAT_S = 1.0

    def __init__(self, out: str, when):
        self.out, self.when = out, when
        self.signum: int | None = None
        self.old: dict = {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        self.pipe = os.pipe()
        os.set_blocking(self.pipe[1], False)
        self.old = {s: signal.signal(s, lambda *_: None) for s in self.SIGNALS}
        self.old_fd = signal.set_wakeup_fd(self.pipe[1], warn_on_full_buffer=False)
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def _watch(self) -> None:
        while data := os.read(self.pipe[0], 1):
            name = signal.Signals(data[0]).name
            if self.signum is None:
                self.signum, self.first = data[0], time.monotonic()
                print(f"\n{name}: stopping {self.when()}; a second Ctrl-C (or signal) aborts at once",
                      file=sys.stderr, flush=True)
            elif data[0] != self.signum or time.monotonic() - self.first > self.REPEAT_S:
                print(f"\n{name} again: aborting at once; {intact(self.out)}", file=sys.stderr, flush=True)
                os._exit(128 + data[0])
        os.close(self.pipe[0])

    def __exit__(self, *exc) -> None:
        if self.old:
            signal.set_wakeup_fd(self.old_fd)
            for s, handler in self.old.items():
                signal.signal(s, handler)
            os.close(self.pipe[1])  # the watcher reads end-of-file and closes its end
