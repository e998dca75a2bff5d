"""The jobs that must run on one coordinator at a time, and the thread that decides where.

Several coordinators may serve one network from one PostgreSQL database (SRS-COORD-05). Work
done per request runs wherever the request lands; the jobs here must not run twice at once:
payout dispatch, the data contributors' and the payout-channel sweeps, slashing's resume
loop, FL round scheduling with its OTS upgrades, the market's time-outs, window closings and
expiries, stake re-verification and the retention of shared state. :class:`SingletonJobs`
asks the :class:`~owm_core.ports.leadership.Leadership` port for each job's lead every
``retry_s`` seconds (default 2 s), starts a job when its lead is taken and stops it when the
lead is lost, so a lead held by a coordinator that dies moves to a standby within
``retry_s`` of PostgreSQL ending the dead one's session. On SQLite the process-local twin
grants every lead at once: one coordinator runs everything, as before.

A job is a :class:`~owm_adapters.services.workers.Worker`; :class:`Flag` is the job of work
that lives inside another worker's thread (the market's housekeeping, stake
re-verification): it only tells that thread whether it leads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs

from owm_adapters.services.workers import DEFAULT_STOP_TIMEOUT_S, Loop, Worker
from owm_core.access.ratelimit import DAY_S
from owm_core.market.streams import STREAM_FRESH_S
from owm_core.ports.clock import Clock
from owm_core.ports.leadership import Leadership
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

DEFAULT_RETRY_S = 2.0
"""How often a standby asks for the leads it lacks (and a leader confirms its own)."""


@attrs.define
class Flag:
    """A job with no thread of its own: ``on`` while this coordinator leads it."""

    on: bool = False

    def start(self) -> None:
        """This coordinator leads the job from now on."""
        self.on = True

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Another coordinator may lead it from now on."""
        self.on = False


class SingletonJobs:
    """Runs each named job while this coordinator holds its lead (module docstring)."""

    def __init__(
        self,
        leadership: Leadership,
        jobs: Sequence[tuple[str, Worker]],
        *,
        retry_s: float = DEFAULT_RETRY_S,
    ) -> None:
        self.leadership = leadership
        self.jobs = tuple(jobs)
        self._running: list[str] = []
        self._loop = Loop("owm-singletons", self.step, retry_s)

    def leads(self, name: str) -> bool:
        """Whether this coordinator runs the job ``name`` now."""
        return name in self._running

    def step(self) -> None:
        """Start the jobs whose lead was taken, stop those whose lead was lost."""
        for name, worker in self.jobs:
            if self._loop.stopping:
                return
            held = self.leadership.try_hold(name)
            if held and name not in self._running:
                worker.start()
                self._running.append(name)
                log.info("singleton job %s: runs on this coordinator now", name)
            elif not held and name in self._running:
                self._running.remove(name)
                worker.stop()
                log.warning("singleton job %s: lead lost, stopped here", name)

    def start(self) -> None:
        """Take the leads that are free now (before returning: on SQLite every job runs once
        this returns, as before), then keep asking every ``retry_s``."""
        self.step()
        self._loop.start()

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop asking, stop the jobs this coordinator runs (last started first), release."""
        self._loop.stop(timeout_s)
        by_name = dict(self.jobs)
        for name in reversed(self._running):
            try:
                by_name[name].stop(timeout_s)
            except Exception:
                log.exception("singleton job %s did not stop cleanly", name)
        self._running.clear()
        self.leadership.release()


class Retention:
    """Forgets the shared state that has expired: challenges, used nonces, the daily quota
    counters of days before yesterday, the credits of L402 tokens whose access ended and the
    records of task streams nobody confirmed for four times their freshness (a singleton job:
    one coordinator deletes, every ``period_s`` seconds)."""

    def __init__(self, repositories: Repositories, clock: Clock, period_s: float = 60.0) -> None:
        self.repositories = repositories
        self.clock = clock
        self._loop = Loop("owm-retention", self.sweep, period_s)

    def sweep(self) -> int:
        """Forget what expired before now; how many records went."""
        now = self.clock.now()
        return (
            self.repositories.challenges.forget_expired(now)
            + self.repositories.nonces.forget_expired(now)
            + self.repositories.quotas.forget_before(now // DAY_S - 1)
            + self.repositories.task_streams.forget_before(now - 4 * STREAM_FRESH_S)
            + self.repositories.token_credits.forget_expired(now)
        )

    def start(self) -> None:
        """Start sweeping."""
        self._loop.start()

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop after the current sweep."""
        self._loop.stop(timeout_s)


__all__ = ["DEFAULT_RETRY_S", "Flag", "Retention", "SingletonJobs"]
