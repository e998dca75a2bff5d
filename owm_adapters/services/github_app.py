"""The GitHub App's webhook intake: check the signature, refuse replays, store, then answer.

GitHub posts each event to ``POST /v1/github/webhook``. :meth:`GitHubApp.receive` takes the
raw body and three headers and, in this order (SRS-SEC-08):

1. checks ``X-Hub-Signature-256`` against the raw bytes with the webhook secret in constant
   time — before anything parses the body, so an unsigned body never reaches a parser
   (SignatureInvalid → 401);
2. parses the body (InvalidValue → 422 naming what is wrong);
3. stores the event under its ``X-GitHub-Delivery`` id — a stored id is a replay (Conflict →
   409) — and only then lets the caller acknowledge it: an event the store could not keep is
   answered with an error, so GitHub delivers it again;
4. hands the stored event to the handlers (bounty commands, contribution rewards), whose
   failures are logged without losing the event. A handler that fails for a passing reason
   — GitHub or the store unreachable, a payee's Lightning node that has not handed in its
   invoice yet — is tried again with that event (every handler is idempotent: payouts have
   deterministic ids) by the :attr:`GitHubApp.retries` worker, 5 s, 10 s, … up to 10 minutes
   apart, for :data:`RETRY_FOR_S`; GitHub's own redelivery would be refused as a replay, so
   this is what keeps a merged pull request's bounty or reward from being lost.

``github`` is the :class:`owm_core.ports.github.GitHub` port the handlers call back through.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence

import attrs

from owm_adapters.services.github_analysis import AnalysisRunner
from owm_adapters.services.workers import Loop, Worker
from owm_core.errors import (
    DomainError,
    GitHubUnavailable,
    InvalidValue,
    LightningUnavailable,
    SignatureInvalid,
    StoreUnavailable,
)
from owm_core.governance.github_app import (
    DELIVERY_PATTERN,
    EVENT_PATTERN,
    WebhookEvent,
    parse_webhook,
    signature_matches,
)
from owm_core.payments.outbox import retry_delay_s
from owm_core.ports.clock import Clock
from owm_core.ports.content_store import ContentStore
from owm_core.ports.github import GitHub
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

RETRY_FOR_S = 24 * 3_600
"""How long a handler that failed for a passing reason is tried again."""
RETRY_PERIOD_S = 5.0
TRANSIENT = (GitHubUnavailable, LightningUnavailable, StoreUnavailable)
"""The failures worth another try."""

EventHandler = Callable[[WebhookEvent], None]
"""Hears of each stored webhook event (after it is stored, before it is acknowledged)."""

_DELIVERY = re.compile(DELIVERY_PATTERN)
_EVENT = re.compile(EVENT_PATTERN)


@attrs.define
class _Retry:
    """One handler to run again with one event."""

    handler: EventHandler
    event: WebhookEvent
    first_at: int
    failures: int = 0
    next_at: int = 0


class GitHubApp:
    """The App's webhook intake and its GitHub port (see the module docstring)."""

    def __init__(
        self,
        repositories: Repositories,
        clock: Clock,
        webhook_secret: bytes,
        github: GitHub | None = None,
        handlers: Sequence[EventHandler] = (),
        content: ContentStore | None = None,
    ) -> None:
        if len(webhook_secret) < 16:
            raise InvalidValue("webhook_secret", "must be at least 16 bytes")
        self._repositories = repositories
        self._clock = clock
        self._secret = webhook_secret
        self.github = github
        self._handlers = list(handlers)
        #: The content-addressed store the contribution flow keeps archives and proofs in.
        self.content = content
        #: Runs ``POST /v1/github/analyze`` requests through ``github``.
        self.analyses = AnalysisRunner(repositories, clock, github)
        #: The handlers' workers, by name, that run on one coordinator at a time (wired by
        #: bootstrap into the coordinator's singleton jobs): the bounty desk's lapses.
        self.workers: list[tuple[str, Worker]] = []
        self._retrying: list[_Retry] = []
        self._retry_lock = threading.Lock()
        #: Tries failed handlers again (every coordinator runs its own: the list is in memory).
        self.retries = Loop("github-handler-retries", self.retry_due, RETRY_PERIOD_S)

    def add_handler(self, handler: EventHandler) -> None:
        """Let ``handler`` hear of every event stored from now on (wired by bootstrap)."""
        self._handlers.append(handler)

    def receive(
        self, signature: str | None, delivery_id: str | None, event: str | None, raw: bytes
    ) -> WebhookEvent:
        """Check, store and dispatch one delivery (see the module docstring)."""
        if not signature_matches(self._secret, raw, signature):
            raise SignatureInvalid(
                "X-Hub-Signature-256 is missing or does not match the body under the webhook "
                "secret"
            )
        if not delivery_id or not _DELIVERY.fullmatch(delivery_id):
            raise InvalidValue("X-GitHub-Delivery", "is required: the delivery's GUID")
        if not event or not _EVENT.fullmatch(event):
            raise InvalidValue("X-GitHub-Event", "is required: the event's name")
        stored = parse_webhook(delivery_id, event, raw, self._clock.now())
        self._repositories.webhook_events.add(stored)
        log.info("github delivery %s stored (%s %s, %s)", stored.delivery_id, stored.event,
                 stored.action or "-", stored.repository or "-")
        for handler in self._handlers:
            self._handle(handler, stored, _Retry(handler, stored, self._clock.now()))
        return stored

    def _handle(self, handler: EventHandler, event: WebhookEvent, retry: _Retry) -> None:
        try:
            handler(event)
        except TRANSIENT as exc:
            retry.failures += 1
            retry.next_at = self._clock.now() + retry_delay_s(retry.failures)
            log.warning("github delivery %s: %s; tried again in %d s", event.delivery_id,
                        exc.message, retry.next_at - self._clock.now())
            with self._retry_lock:
                self._retrying.append(retry)
        except DomainError as exc:
            log.warning("github delivery %s: %s", event.delivery_id, exc.message)

    def retry_due(self) -> int:
        """Run again the failed handlers that are due; how many were run. Those that fail
        again wait longer; those failing for :data:`RETRY_FOR_S` are given up, logged."""
        now = self._clock.now()
        with self._retry_lock:
            due = [r for r in self._retrying if r.next_at <= now]
            self._retrying = [r for r in self._retrying if r.next_at > now]
        for retry in due:
            if now - retry.first_at > RETRY_FOR_S:
                log.error("github delivery %s: given up after %d tries",
                          retry.event.delivery_id, retry.failures)  # fmt: skip
                continue
            self._handle(retry.handler, retry.event, retry)
        return len(due)

    def waiting(self) -> int:
        """How many failed handler runs wait to be tried again."""
        with self._retry_lock:
            return len(self._retrying)

    def deliveries(self, limit: int = 100) -> Sequence[WebhookEvent]:
        """The latest stored deliveries, newest first."""
        return self._repositories.webhook_events.list(limit)
