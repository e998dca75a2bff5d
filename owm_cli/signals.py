"""SIGTERM and Ctrl-C as a ``threading.Event`` the long-running commands stop on.

A handler that calls ``Event.set()`` can deadlock: Python runs signal handlers in the main
thread between bytecodes, and when the signal lands while that thread is inside
``stop.wait()`` holding the event's (non-reentrant) lock, ``set()`` waits on a lock its own
thread holds, and the process never stops. Here the handler only writes a byte to a pipe;
a watcher thread reads it and sets the event.

A second signal ends the process at once (exit status 128 + the signal's number), as an
operator pressing Ctrl-C again expects while a node drains a long task: nothing is lost that a
crash would not lose (the coordinator reassigns what a node did not report; SRS-NODE-09).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stopped_by_signals(
    signals: tuple[signal.Signals, ...] = STOP_SIGNALS,
) -> Iterator[threading.Event]:
    """An event set once any of ``signals`` arrives; the previous handlers come back on exit.

    Call from the main thread (Python delivers signals only there).
    """
    stop = threading.Event()
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    received = 0

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal received
        received += 1
        if received > 1:
            os.write(2, b"stopped at once: a second signal while stopping\n")
            os._exit(128 + signum)
        with contextlib.suppress(BlockingIOError):
            os.write(write_fd, b"\0")

    def _watch() -> None:
        if os.read(read_fd, 1):  # empty: the write end closed without a signal
            stop.set()

    watcher = threading.Thread(target=_watch, name="owm-signals", daemon=True)
    watcher.start()
    previous = {signum: signal.signal(signum, _on_signal) for signum in signals}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(write_fd)
        watcher.join()
        os.close(read_fd)
