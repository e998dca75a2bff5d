"""Bounty commands and outcomes from the GitHub App's webhook events (SRS-LN-08).

:class:`BountyDesk` hears every stored webhook event (a :class:`~owm_adapters.services.
github_app.GitHubApp` handler) and acts on three:

* ``issue_comment`` ``created``: ``/bounty <sats>`` by a maintainer opens a treasury bounty on
  the issue; ``/claim <node key>`` claims the issue's open bounty for the commenter;
* ``pull_request`` ``closed``: for each issue the pull request closes (``Fixes #3``), a merged
  pull request by the bounty's claimant enqueues the bounty's payout in the outbox — once,
  under the bounty's deterministic payment id — and the worker pays it at once; unmerged,
  nothing is paid;
* ``issues`` ``closed``: a bounty still waiting is cancelled, a sponsor refunded through the
  outbox; a claimed one first waits an hour for its claimant's merge, since GitHub delivers
  the merge's ``pull_request`` event and the ``issues`` event of the issue it closed in no set
  order (:attr:`BountyDesk.lapses`, a worker, cancels it after that). The same worker cancels
  (or refunds) bounties nobody claimed in time and sponsored ones never paid, webhook or not.

Each outcome and each refusal (with its reason) is answered as a comment on the issue or pull
request when the App has a GitHub port; the webhook's answer never waits on GitHub.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, ClassVar, Protocol

import attrs

from owm_adapters.services.bounty_book import BountyBook, bounty_key
from owm_adapters.services.sweep_cursor import SweepCursor
from owm_adapters.services.workers import Loop
from owm_core.errors import DomainError, GitHubUnavailable, NotFound, RoleRequired
from owm_core.governance.bounty_rules import (
    CLAIM_GRACE_S,
    MAINTAINER_ASSOCIATIONS,
    ClaimCommand,
    OpenCommand,
    Outcome,
    claim_lapsed,
    closing_issues,
    on_issue_closed,
    on_pull_request_closed,
    parse_command,
)
from owm_core.governance.contributions import Bounty, BountyStatus
from owm_core.governance.github_app import WebhookEvent
from owm_core.payments.outbox import (
    bounty_payment_id,
    bounty_refund_payment_id,
    bounty_refund_task_id,
    bounty_task_id,
)
from owm_core.payments.records import RewardPayment
from owm_core.ports.github import GitHub
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

_WAITING = (BountyStatus.OPEN, BountyStatus.FUNDING)
LAPSE_BATCH = 1_000
"""Open bounties one run of :meth:`BountyDesk.lapse` looks at for a claim whose time is up."""
LAPSE_PERIOD_S = 60.0


class BountyPayouts(Protocol):
    """What the desk needs of the payout dispatcher (:class:`~owm_adapters.services.payouts.
    PayoutDispatcher`)."""

    def bounty_merged(self, bounty_id: str, pr_ref: str, payee: str) -> RewardPayment:
        """Enqueue a bounty's payout (idempotent)."""
        ...

    def enqueue_to(
        self, payee: str, payment_id: str, task_id: str, amount_msat: int, memo: str
    ) -> RewardPayment:
        """Enqueue one payment to ``payee`` (idempotent by ``payment_id``)."""
        ...


@attrs.define(eq=False)
class BountyDesk:
    """Turns webhook events into bounty actions (see the module docstring)."""

    name: ClassVar[str] = "bounties"
    """The name its retries are stored under."""

    _repositories: Repositories
    book: BountyBook
    _payouts: BountyPayouts
    _github: GitHub | None = None
    #: The worker that runs :meth:`lapse` every minute (one coordinator at a time).
    lapses: Loop = attrs.field(init=False)
    _claims: SweepCursor[str] = attrs.field(init=False, factory=lambda: SweepCursor(""))

    @lapses.default
    def _lapse_loop(self) -> Loop:
        return Loop("bounty-lapses", self.lapse, LAPSE_PERIOD_S)

    def __call__(self, event: WebhookEvent) -> None:
        """Act on one stored webhook event (others are ignored)."""
        kind = (event.event, event.action)
        if kind == ("issue_comment", "created"):
            self._comment(event, event.body())
        elif kind == ("pull_request", "closed"):
            self._pull_closed(event, event.body())
        elif kind == ("issues", "closed"):
            number = int((event.body().get("issue") or {}).get("number") or 0)
            for bounty in self.issue_closed(event.repository, number):
                if bounty.status is BountyStatus.OPEN:
                    self._say(event, number, f"Issue closed: bounty `{bounty.bounty_id}` waits "
                              f"{CLAIM_GRACE_S // 60} minutes for the merge of a pull request "
                              f"by @{bounty.claimant}, then is cancelled.")

    # ------------------------------------------------------------------ commands

    def _comment(self, event: WebhookEvent, body: dict[str, Any]) -> None:
        comment, issue = body.get("comment") or {}, body.get("issue") or {}
        number = int(issue.get("number") or 0)
        login = str((comment.get("user") or {}).get("login") or "")
        try:
            command = parse_command(str(comment.get("body") or ""))
            if isinstance(command, OpenCommand):
                if comment.get("author_association") not in MAINTAINER_ASSOCIATIONS:
                    raise RoleRequired("only a maintainer of the repository opens bounties")
                opened = self.book.open(
                    f"github:{login}", event.repository, number,
                    str(issue.get("title") or f"#{number}")[:200], command.amount_sat,
                    installation_id=event.installation_id, maintainer=True,
                ).bounty  # fmt: skip
                self._say(event, number, f"Bounty `{opened.bounty_id}` opened: "
                          f"{opened.amount_sat} sat from the treasury. Claim it with "
                          "`/claim <your Lightning node's public key>`.")
            elif isinstance(command, ClaimCommand):
                bounty = self._waiting(event.repository, number)
                claimed = self.book.claim(bounty.bounty_id, login, command.payee)
                self._say(event, number, f"@{login} claimed bounty `{claimed.bounty_id}` "
                          f"({claimed.amount_sat} sat); it is paid when a pull request by "
                          f"@{login} that closes #{number} is merged.")
        except DomainError as refused:
            self._say(event, number, f"Bounty command refused: {refused.message}")

    def _waiting(self, repository: str, number: int) -> Bounty:
        for bounty in self._repositories.bounties.for_issue(repository, number):
            if bounty.status in _WAITING:
                return bounty
        raise NotFound(f"issue #{number} has no open bounty")

    # ------------------------------------------------------------------ outcomes

    def _pull_closed(self, event: WebhookEvent, body: dict[str, Any]) -> None:
        pull = body.get("pull_request") or {}
        number = int(pull.get("number") or body.get("number") or 0)
        merged = bool(pull.get("merged"))
        author = str((pull.get("user") or {}).get("login") or "")
        for issue in sorted(closing_issues(str(pull.get("body") or ""))):
            for bounty in self._repositories.bounties.for_issue(event.repository, issue):
                if bounty.status is not BountyStatus.OPEN:
                    continue
                outcome = on_pull_request_closed(merged, author, bounty.claimant or None)
                if outcome is Outcome.PAY:
                    paid = self._payouts.bounty_merged(
                        bounty.bounty_id, f"{event.repository}#{number}", bounty.claimant_payee
                    )
                    self._say(event, number, f"Bounty `{bounty.bounty_id}`: "
                              f"{paid.amount_msat // 1_000} sat to @{author} over Lightning, "
                              f"payment hash `{paid.payment_hash}`.")
                elif merged:
                    who = f"claimed by @{bounty.claimant}" if bounty.claimant else "unclaimed"
                    self._say(event, number, f"Bounty `{bounty.bounty_id}` is not paid: it "
                              f"is {who}.")
                else:
                    self._say(event, number, f"Closed without merge: bounty "
                              f"`{bounty.bounty_id}` is not paid and stays open.")

    def issue_closed(self, repository: str, number: int) -> list[Bounty]:
        """An issue closed: its waiting bounties are cancelled, sponsors refunded (once); a
        claimed one waits :data:`CLAIM_GRACE_S` for its claimant's merge (:meth:`lapse`)."""
        changed = []
        for bounty in self._repositories.bounties.for_issue(repository, number):
            if bounty.status not in _WAITING:
                continue
            claimed = bounty.status is BountyStatus.OPEN and bool(bounty.claimant)
            outcome = on_issue_closed(bounty.funding, self._enqueued(bounty), claimed)
            if outcome is Outcome.WAIT:
                if bounty.issue_closed_at is None:
                    changed.append(self.book.mark_issue_closed(bounty))
                continue
            changed.extend(self._close(bounty, outcome))
        return changed

    def lapse(self) -> list[Bounty]:
        """Cancel (or refund) the claimed bounties whose issue closed :data:`CLAIM_GRACE_S` ago
        without their claimant's merge, the open ones nobody claimed in the book's
        ``unclaimed_lapse_s`` and the sponsored ones never paid (:meth:`BountyBook.lapsed`), so
        their budget is freed without any webhook; the ones changed. A worker runs it every
        minute.

        Each run looks at the next :data:`LAPSE_BATCH` open bounties after the last one it saw
        (by id, from the start again at the end), and one that cannot be closed now (its
        sponsor's refund not enqueued) is left for a later run: a bounty waits at most
        ``ceil(open / LAPSE_BATCH) + 1`` runs past its time however many others are open
        (SRS-LN-08)."""
        changed: list[Bounty] = []
        now = self.book.now()
        waiting = functools.partial(self._repositories.bounties.after, BountyStatus.OPEN)
        claimed = self._claims.page(waiting, bounty_key, LAPSE_BATCH)
        due = [b for b in claimed if claim_lapsed(b.issue_closed_at, now)]
        seen: set[str] = set()
        for bounty in due + self.book.lapsed():
            if bounty.bounty_id in seen:
                continue
            seen.add(bounty.bounty_id)
            try:
                outcome = on_issue_closed(bounty.funding, self._enqueued(bounty))
                changed.extend(self._close(bounty, outcome))
            except DomainError as exc:
                log.warning("bounty %s not closed: %s", bounty.bounty_id, exc.code)
        return changed

    def _enqueued(self, bounty: Bounty) -> bool:
        return any(
            p.payment_id == bounty_payment_id(bounty.bounty_id)
            for p in self._repositories.payments.for_task(bounty_task_id(bounty.bounty_id))
        )

    def _close(self, bounty: Bounty, outcome: Outcome) -> list[Bounty]:
        if outcome is Outcome.REFUND and bounty.status is BountyStatus.OPEN:
            self._payouts.enqueue_to(
                bounty.sponsor_payee, bounty_refund_payment_id(bounty.bounty_id),
                bounty_refund_task_id(bounty.bounty_id), bounty.amount_sat * 1_000,
                f"OWM bounty {bounty.bounty_id} refund",
            )  # fmt: skip
            return [self.book.set_status(bounty, BountyStatus.REFUNDED)]
        if outcome is not Outcome.NOTHING:  # cancelled (an unpaid sponsor pays nothing)
            return [self.book.set_status(bounty, BountyStatus.CANCELLED)]
        return []

    def _say(self, event: WebhookEvent, number: int, text: str) -> None:
        log.info("github %s#%d: %s", event.repository, number, text)
        if self._github is None or event.installation_id is None or number < 1:
            return
        try:
            self._github.comment(event.installation_id, event.repository, number, text)
        except (GitHubUnavailable, NotFound) as exc:
            log.warning("github %s#%d: comment not posted: %s", event.repository, number,
                        exc.message)
