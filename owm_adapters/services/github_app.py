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
   failures are logged without losing the event.

``github`` is the :class:`owm_core.ports.github.GitHub` port the handlers call back through.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

from owm_adapters.services.github_analysis import AnalysisRunner
from owm_adapters.services.workers import Worker
from owm_core.errors import DomainError, InvalidValue, SignatureInvalid
from owm_core.governance.github_app import (
    DELIVERY_PATTERN,
    EVENT_PATTERN,
    WebhookEvent,
    parse_webhook,
    signature_matches,
)
from owm_core.ports.clock import Clock
from owm_core.ports.content_store import ContentStore
from owm_core.ports.github import GitHub
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

EventHandler = Callable[[WebhookEvent], None]
"""Hears of each stored webhook event (after it is stored, before it is acknowledged)."""

_DELIVERY = re.compile(DELIVERY_PATTERN)
_EVENT = re.compile(EVENT_PATTERN)


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
            try:
                handler(stored)
            except DomainError as exc:
                log.warning("github delivery %s: %s", stored.delivery_id, exc.message)
        return stored

    def deliveries(self, limit: int = 100) -> Sequence[WebhookEvent]:
        """The latest stored deliveries, newest first."""
        return self._repositories.webhook_events.list(limit)
