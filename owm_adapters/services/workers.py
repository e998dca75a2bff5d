"""Background threads of the application services, owned in one place.

A :class:`Loop` is one daemon thread that calls a ``step`` every ``period_s`` seconds until it
is stopped; :meth:`Loop.wake` runs the next step at once (new work arrived). :class:`Workers`
is the ordered list of what one process runs: started in order, stopped in reverse, so a
service is never stopped while a later one may still call it (svcs' ``on_registry_close``).
A step that finds the database unavailable (a failover, SRS-COORD-06) is logged in one line and
retried next period.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import attrs

from owm_core.errors import StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT_S = 10.0


class Worker(Protocol):
    """Something with a background life: ``start()`` and ``stop(timeout_s)``."""

    def start(self) -> None:
        """Begin working (returns at once)."""
        ...

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Finish the step in progress and end; wait at most ``timeout_s``."""
        ...


@attrs.define(eq=False)
class Loop:
    """One daemon thread calling ``step`` every ``period_s`` (at once after :meth:`wake`).

    ``first`` runs once before the first step (a worker's catch-up after a restart). A step
    that raises is logged and the loop goes on: the next period retries it.
    """

    name: str
    _step: Callable[[], object]
    period_s: float
    _first: Callable[[], object] | None = attrs.field(default=None, kw_only=True)
    _wake: threading.Event = attrs.field(init=False, factory=threading.Event)
    _stop: threading.Event = attrs.field(init=False, factory=threading.Event)
    _thread: threading.Thread | None = attrs.field(init=False, default=None)

    @property
    def stopping(self) -> bool:
        """True between :meth:`stop` and the next :meth:`start`."""
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._thread is not None and not self._stop.is_set()

    def start(self) -> None:
        """Start the thread (a no-op while it runs)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the next step now instead of at the end of the period."""
        self._wake.set()

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Ask the thread to end after its current step and wait at most ``timeout_s``."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        if self._first is not None:
            self._guarded(self._first)
        while not self._stop.is_set():
            self._guarded(self._step)
            self._wake.wait(self.period_s)
            self._wake.clear()

    def _guarded(self, call: Callable[[], object]) -> None:
        try:
            call()
        except StoreUnavailable as exc:
            log.warning("%s: %s; retrying in %.1f s", self.name, exc.message, self.period_s)
        except Exception:
            log.exception("%s failed; retrying", self.name)


@attrs.frozen
class OnStop:
    """A worker with nothing to start whose stop calls ``stop()``: an adapter that starts its
    background threads lazily (the embedded calendar's flusher) and must end them."""

    stop_call: Callable[[], object]

    def start(self) -> None:
        """Nothing: the adapter starts itself on first use."""

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Call the adapter's stop."""
        self.stop_call()


@attrs.frozen
class Workers:
    """What one process runs in the background, in start order (stopped in reverse)."""

    items: tuple[Worker, ...] = ()

    def start(self) -> None:
        """Start every worker in order; on a failure, stop the ones already started."""
        started: list[Worker] = []
        try:
            for worker in self.items:
                worker.start()
                started.append(worker)
        except BaseException:
            for worker in reversed(started):
                worker.stop()
            raise

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop every worker, last started first."""
        for worker in reversed(self.items):
            try:
                worker.stop(timeout_s)
            except Exception:
                log.exception("worker %r did not stop cleanly", worker)

    @contextmanager
    def running(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> Iterator[Workers]:
        """Start the workers for the ``with`` block and stop them (in reverse) after it."""
        self.start()
        try:
            yield self
        finally:
            self.stop(timeout_s)


__all__ = ["DEFAULT_STOP_TIMEOUT_S", "Loop", "OnStop", "Worker", "Workers"]
