"""How a signal stops a run: SIGINT, SIGTERM and SIGHUP finish the current chunk, write a checkpoint and raise
``TrainingInterrupted`` (``StopSignals``); a second signal aborts at once."""

from __future__ import annotations

import os
import signal
import sys
import threading

from rl3jax.runs.resume import intact


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal (``signum``: SIGINT for Ctrl-C); its message says truthfully which checkpoint
    a ``--resume`` continues from. The CLI exits with status 128 + ``signum`` (130 for Ctrl-C)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP during training (a context manager; only in the main thread, else a no-op).

    The first one is answered at once with one line on stderr (the loop stops at the end of the current chunk,
    ``when()`` says about when, then writes a checkpoint) and recorded in ``signum``; the loop then raises
    ``TrainingInterrupted``. A second one aborts at once (exit status 128 + its number): the last checkpoint
    stays intact (saves are atomic), the iterations since it are lost. The lines are printed by a thread that
    ``signal.set_wakeup_fd`` wakes, so they appear even while the main thread waits in a compiled computation
    or a compile (where Python signal handlers cannot run)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

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
                self.signum = data[0]
                print(f"\n{name}: stopping {self.when()}; a second Ctrl-C (or signal) aborts at once",
                      file=sys.stderr, flush=True)
            else:
                print(f"\n{name} again: aborting at once; {intact(self.out)}", file=sys.stderr, flush=True)
                os._exit(128 + data[0])
        os.close(self.pipe[0])

    def __exit__(self, *exc) -> None:
        if self.old:
            signal.set_wakeup_fd(self.old_fd)
            for s, handler in self.old.items():
                signal.signal(s, handler)
            os.close(self.pipe[1])  # the watcher reads end-of-file and closes its end
