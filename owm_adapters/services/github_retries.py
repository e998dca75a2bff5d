"""The GitHub App's webhook handlers, run through the store so that none is lost.

A webhook delivery is acknowledged once stored, and GitHub's "Redeliver" of it is refused as a
replay: whatever a handler (bounty commands, contribution rewards) has not done by the time it
fails, or the coordinator stops, must be done from the stored event. So each delivery is
stored together with (in one transaction) a :class:`~owm_core.governance.github_app.HandlerRetry`
per handler (``handler_retries``), holding its first run as a lease of :data:`LEASE_S`; a run
that ends removes it, a run that fails for a passing reason — GitHub or the store unreachable,
a payee's Lightning node without an invoice yet — stores the next attempt 5 s, 10 s, … up to
10 minutes later with the failure's message, and a run cut short by a crash leaves its lease
to lapse. The ``github-handler-retries`` worker (a singleton job: one coordinator of those
sharing the store) runs the due ones; each is first claimed by compare-and-set, so two workers
never run the same one, and those still failing :data:`RETRY_FOR_S` after the delivery are
given up, logged with the delivery id (SRS-LN-08, SRS-COORD-05).

A handler may thus run twice with one delivery (a crash after it paid, before its retry was
removed): every handler is idempotent — payouts have deterministic ids in the outbox, which
pays each at most once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import attrs

from owm_adapters.services.workers import Loop
from owm_core.errors import (
    DomainError,
    GitHubUnavailable,
    LightningUnavailable,
    StoreUnavailable,
)
from owm_core.governance.github_app import MAX_REASON_CHARS, HandlerRetry, WebhookEvent
from owm_core.payments.outbox import retry_delay_s
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

EventHandler = Callable[[WebhookEvent], None]
"""Hears of each stored webhook event (after it is stored, before it is acknowledged)."""

RETRY_FOR_S = 24 * 3_600
"""How long after its delivery a handler that fails for a passing reason is tried again."""
LEASE_S = 300
"""How long a run holds its retry: one cut short by a crash is run again this long after."""
RETRY_PERIOD_S = 5.0
"""How often the worker looks for due retries."""
DUE_BATCH = 100
TRANSIENT = (GitHubUnavailable, LightningUnavailable, StoreUnavailable)
"""The failures worth another try."""


class HandlerRetries:
    """Runs the handlers with stored deliveries and keeps their retries in the store (see the
    module docstring). ``handlers`` (by name) is read at each run, so handlers added later
    are found."""

    def __init__(
        self, repositories: Repositories, clock: Clock, handlers: Mapping[str, EventHandler]
    ) -> None:
        self._repositories = repositories
        self._clock = clock
        self._handlers = handlers
        #: Runs :meth:`run_due` every :data:`RETRY_PERIOD_S` (a singleton job).
        self.worker = Loop("github-handler-retries", self.run_due, RETRY_PERIOD_S)

    def first_runs(self, event: WebhookEvent) -> dict[str, HandlerRetry]:
        """The retries to store with a new ``event``, by handler name: one per handler, each
        holding its first run (begun now) as a lease."""
        now = self._clock.now()
        return {
            name: HandlerRetry(event.delivery_id, name, 1, now + LEASE_S, now + RETRY_FOR_S)
            for name in self._handlers
        }

    def run_first(self, event: WebhookEvent, retries: dict[str, HandlerRetry]) -> None:
        """Run each handler with a just stored ``event`` (stored with ``retries``)."""
        for name, retry in retries.items():
            self._run(self._handlers[name], event, retry)

    def run_due(self) -> int:
        """Run the due retries this worker could claim; how many ran. Those past their end
        are given up (logged) instead."""
        now = self._clock.now()
        ran = 0
        for seen in self._repositories.handler_retries.due(now, DUE_BATCH):
            handler = self._handlers.get(seen.handler)
            if handler is None and not seen.expired_at(now):
                continue  # a handler this coordinator does not run: given up at its end
            claimed = self._repositories.handler_retries.claim(seen, now + LEASE_S)
            if claimed is None:
                continue  # another worker took it
            event = self._repositories.webhook_events.get(seen.delivery_id)
            if handler is None or event is None or seen.expired_at(now):
                self._give_up(claimed)
                continue
            self._run(handler, event, claimed)
            ran += 1
        return ran

    def waiting(self) -> int:
        """How many handler runs are stored as not done yet."""
        return self._repositories.handler_retries.count()

    def _run(self, handler: EventHandler, event: WebhookEvent, retry: HandlerRetry) -> None:
        try:
            handler(event)
        except TRANSIENT as exc:
            self._later(retry, exc.message)
            return
        except DomainError as exc:
            log.warning("github delivery %s: %s", event.delivery_id, exc.message)
        except Exception as exc:
            log.exception("github delivery %s: the %s handler failed", event.delivery_id,
                          retry.handler)  # fmt: skip
            self._later(retry, f"the handler failed ({type(exc).__name__})")
            return
        self._forget(retry)

    def _later(self, retry: HandlerRetry, reason: str) -> None:
        wait = retry_delay_s(retry.attempts)
        later = attrs.evolve(
            retry, next_at=self._clock.now() + wait, reason=reason[:MAX_REASON_CHARS]
        )
        log.warning("github delivery %s: %s; the %s handler is tried again in %d s",
                    retry.delivery_id, reason, retry.handler, wait)  # fmt: skip
        try:
            self._repositories.handler_retries.save(later)
        except DomainError as exc:
            log.warning("github delivery %s: its retry could not be rescheduled (%s); it is "
                        "tried again when its lease ends", retry.delivery_id, exc.message)

    def _forget(self, retry: HandlerRetry) -> None:
        try:
            self._repositories.handler_retries.remove(retry.delivery_id, retry.handler)
        except DomainError as exc:  # run again when the lease ends: handlers are idempotent
            log.warning("github delivery %s: its done %s handler could not be marked done (%s)",
                        retry.delivery_id, retry.handler, exc.message)  # fmt: skip

    def _give_up(self, retry: HandlerRetry) -> None:
        log.error("github delivery %s: the %s handler is given up after %d tries; last "
                  "failure: %s", retry.delivery_id, retry.handler, retry.attempts - 1,
                  retry.reason or "-")  # fmt: skip
        self._forget(retry)
