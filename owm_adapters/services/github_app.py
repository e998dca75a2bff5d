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
4. hands the stored event to the handlers (bounty commands, contribution rewards) through
   :class:`~owm_adapters.services.github_retries.HandlerRetries`: each run is recorded in the
   store first, and one that fails for a passing reason, or is cut short by a crash, is run
   again from the stored event by the ``github-handler-retries`` singleton job, for
   :data:`~owm_adapters.services.github_retries.RETRY_FOR_S` — GitHub's own redelivery would
   be refused as a replay, so this is what keeps a merged pull request's bounty or reward
   from being lost. Other failures are logged without losing the event.

``github`` is the :class:`owm_core.ports.github.GitHub` port the handlers call back through.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from owm_adapters.services.github_analysis import AnalysisRunner
from owm_adapters.services.github_retries import EventHandler, HandlerRetries
from owm_adapters.services.workers import Worker
from owm_core.errors import InvalidValue, SignatureInvalid
from owm_core.governance.github_app import (
    DELIVERY_PATTERN,
    EVENT_PATTERN,
    HANDLER_PATTERN,
    WebhookEvent,
    parse_webhook,
    signature_matches,
)
from owm_core.ports.clock import Clock
from owm_core.ports.content_store import ContentStore
from owm_core.ports.github import GitHub
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

_DELIVERY = re.compile(DELIVERY_PATTERN)
_EVENT = re.compile(EVENT_PATTERN)
_HANDLER = re.compile(HANDLER_PATTERN)


def handler_name(handler: EventHandler) -> str:
    """The name ``handler``'s retries are stored under: its ``name`` attribute, else its
    class's name in lower case."""
    name = getattr(handler, "name", None)
    return name if isinstance(name, str) else type(handler).__name__.lower()


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
        self._handlers: dict[str, EventHandler] = {}
        #: The content-addressed store the contribution flow keeps archives and proofs in.
        self.content = content
        #: Runs ``POST /v1/github/analyze`` requests through ``github``.
        self.analyses = AnalysisRunner(repositories, clock, github)
        #: The handlers' workers, by name, that run on one coordinator at a time (wired by
        #: bootstrap into the coordinator's singleton jobs): the handlers' retries and the
        #: bounty desk's lapses.
        self.workers: list[tuple[str, Worker]] = []
        #: Runs the handlers and keeps their retries in the store.
        self.handler_runs = HandlerRetries(repositories, clock, self._handlers)
        #: Runs the due retries; one coordinator at a time, as every worker in ``workers``.
        self.retries = self.handler_runs.worker
        self.workers.append(("github-handler-retries", self.retries))
        for handler in handlers:
            self.add_handler(handler)

    def add_handler(self, handler: EventHandler) -> None:
        """Let ``handler`` hear of every event stored from now on (wired by bootstrap); its
        :func:`handler_name` must be a new one matching ``HANDLER_PATTERN`` (its retries are
        stored under it)."""
        name = handler_name(handler)
        if not _HANDLER.fullmatch(name) or name in self._handlers:
            raise InvalidValue("handler", f"needs a new name matching {HANDLER_PATTERN}: {name}")
        self._handlers[name] = handler

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
        runs = self.handler_runs.first_runs(stored)
        self._repositories.webhook_events.add(stored, list(runs.values()))
        log.info("github delivery %s stored (%s %s, %s)", stored.delivery_id, stored.event,
                 stored.action or "-", stored.repository or "-")
        self.handler_runs.run_first(stored, runs)
        return stored

    def retry_due(self) -> int:
        """Run the due retries of failed handlers now; how many ran (:class:`HandlerRetries`)."""
        return self.handler_runs.run_due()

    def waiting(self) -> int:
        """How many handler runs are stored as not done yet (failed ones waiting, mostly)."""
        return self.handler_runs.waiting()

    def deliveries(self, limit: int = 100) -> Sequence[WebhookEvent]:
        """The latest stored deliveries, newest first."""
        return self._repositories.webhook_events.list(limit)
