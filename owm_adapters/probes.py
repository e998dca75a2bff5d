"""Readiness probes: named checks of the outside systems a process depends on, each bounded.

A probe is a callable that returns when its part is usable and raises otherwise (its
:class:`NotReady` names why in words safe for anonymous callers). :class:`Readiness` runs them
all at once, each in its own daemon thread, and waits at most ``timeout_s`` for the lot: a hung
Lightning node or database answers ``timeout`` instead of hanging the readiness endpoint, and a
probe still stuck from an earlier check is not started again (so hung probes cannot pile up
threads). A public endpoint reuses a result for ``max_age_s`` so that anonymous callers cannot
turn each request into calls on the treasury's Lightning node and the database. The result names
only the parts and a status word — never an exception's text, which
could carry an internal host or a credential (docs/security.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

OK = "ok"
TIMEOUT = "timeout"
UNAVAILABLE = "unavailable"
DEFAULT_TIMEOUT_S = 2.0

Probe = Callable[[], None]


class NotReady(Exception):
    """A probe's part answered but is not usable; ``status`` is a short safe word."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class Readiness:
    """Runs ``probes`` (part name → probe) in parallel, each bounded by ``timeout_s``; a result
    younger than ``max_age_s`` (by ``clock``) is answered again without probing."""

    def __init__(
        self,
        probes: Mapping[str, Probe],
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        max_age_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probes = dict(probes)
        self.timeout_s = timeout_s
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[str, threading.Thread] = {}
        self._last: tuple[float, dict[str, str]] | None = None

    def check(self) -> dict[str, str]:
        """Each part's status: ``ok``, ``timeout``, ``unavailable`` or a probe's own word."""
        with self._lock:
            last = self._last
        if last is not None and self._clock() - last[0] < self.max_age_s:
            return dict(last[1])
        parts = self._probe()
        with self._lock:
            self._last = (self._clock(), parts)
        return dict(parts)

    def _probe(self) -> dict[str, str]:
        results: dict[str, str] = {}
        started: dict[str, threading.Thread] = {}
        with self._lock:
            for part, probe in self.probes.items():
                stuck = self._running.get(part)
                if stuck is not None and stuck.is_alive():
                    results[part] = TIMEOUT
                    continue
                thread = threading.Thread(
                    target=self._run, args=(part, probe, results),
                    name=f"owm-probe-{part}", daemon=True,
                )
                self._running[part] = started[part] = thread
                thread.start()
        deadline = time.monotonic() + self.timeout_s
        for part, thread in started.items():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                results[part] = TIMEOUT
        return {part: results.get(part, TIMEOUT) for part in self.probes}

    @staticmethod
    def _run(part: str, probe: Probe, results: dict[str, str]) -> None:
        try:
            probe()
        except NotReady as exc:
            results.setdefault(part, exc.status)
        except Exception:  # the details go to the log only: they may name hosts
            log.warning("readiness probe %s failed", part, exc_info=True)
            results.setdefault(part, UNAVAILABLE)
        else:
            results.setdefault(part, OK)


def failing(parts: Mapping[str, str]) -> list[str]:
    """The names of the parts that are not ``ok``, sorted."""
    return sorted(part for part, status in parts.items() if status != OK)
