"""Opening, funding and claiming bounties: the one place bounties are written, for the API and
the GitHub App alike (rules: :mod:`owm_core.governance.bounty_rules`).

A treasury bounty is open at once if the treasury's bounty budget holds it; a sponsored one
waits in ``funding`` with a treasury invoice for its amount and opens when
:meth:`BountyBook.settle_funding` finds that invoice paid (the sponsor's node is where a refund
goes). Every bounty is capped (``max_bounty_sat``), opened only on a repository the GitHub App
is installed on, from the treasury only by a maintainer, and each refusal names its reason.
:meth:`BountyBook.lapsed` names the bounties whose time is up (nobody claimed them within
``unclaimed_lapse_s``, or their sponsor never paid), which the bounty desk's worker closes.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence

import attrs

from owm_adapters.services.sweep_cursor import SweepCursor
from owm_core.errors import Conflict, DomainError, InvalidTransition, must_exist
from owm_core.governance.bounty_rules import (
    Funding,
    check_amount,
    check_budget,
    check_opener,
    check_payee,
    funding_lapsed,
    unclaimed_lapsed,
)
from owm_core.governance.contributions import Bounty, BountyStatus, open_bounty
from owm_core.payments.lightning import Invoice, InvoiceState
from owm_core.ports.clock import Clock
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

SPONSOR_INVOICE_EXPIRY_S = 3_600
FUNDING_GRACE_S = 600
"""How long after its invoice expired an unpaid sponsored bounty is cancelled (a payment in
flight at the expiry settles or fails within it)."""
LAPSE_BATCH = 1_000
"""Bounties of each status one look for lapses reads: the next page after its cursor."""


@attrs.frozen
class BountyTerms:
    """The caps: one bounty's largest amount, what the treasury's open bounties may hold, and
    how long an open bounty waits for a claimant before it lapses (30 days by default)."""

    max_bounty_sat: int = 10_000_000
    budget_sat: int = 100_000_000
    unclaimed_lapse_s: int = attrs.field(default=30 * 86_400, validator=attrs.validators.ge(60))


def app_installation(repositories: Repositories, repository: str) -> int | None:
    """The GitHub App's installation on ``repository``, from its latest stored webhook
    delivery; None when the App has heard nothing from it (not installed there)."""
    return repositories.webhook_events.installation_of(repository)


@attrs.frozen
class Opened:
    """A bounty just opened, and the invoice its sponsor pays first (None: the treasury's)."""

    bounty: Bounty
    invoice: Invoice | None = None


@attrs.define(eq=False)
class BountyBook:
    """Open, fund and claim bounties (see the module docstring)."""

    _repositories: Repositories
    _clock: Clock
    _treasury: Lightning
    terms: BountyTerms = BountyTerms()
    _entropy: Callable[[int], bytes] = os.urandom
    _funding: SweepCursor[str] = attrs.field(init=False, factory=lambda: SweepCursor(""))
    _open: SweepCursor[str] = attrs.field(init=False, factory=lambda: SweepCursor(""))

    def open(
        self,
        created_by: str,
        repository: str,
        issue_number: int,
        title: str,
        amount_sat: int,
        *,
        sponsor_payee: str = "",
        installation_id: int | None = None,
        maintainer: bool = False,
    ) -> Opened:
        """Open a bounty on a repository under the App's installation ``installation_id``: from
        the treasury's budget (a ``maintainer`` only), or (``sponsor_payee`` given) waiting for
        its sponsor's invoice. PolicyViolation over the cap or the budget, or without an
        installation; RoleRequired for a treasury bounty by anyone else (SRS-LN-08)."""
        funding = Funding.SPONSOR if sponsor_payee else Funding.TREASURY
        check_opener(funding, maintainer, installation_id)
        check_amount(amount_sat, self.terms.max_bounty_sat)
        bounty = open_bounty(
            bounty_id="bnt_" + self._entropy(8).hex(), repository=repository,
            issue_number=issue_number, title=title, amount_sat=amount_sat,
            created_by=created_by, now=self._clock.now(),
        )  # fmt: skip
        bounty = attrs.evolve(bounty, installation_id=installation_id)
        if sponsor_payee:
            invoice = self._treasury.create_invoice(
                amount_sat * 1_000, f"OWM bounty {bounty.bounty_id} sponsorship",
                SPONSOR_INVOICE_EXPIRY_S,
            )  # fmt: skip
            bounty = attrs.evolve(
                bounty, status=BountyStatus.FUNDING, funding=Funding.SPONSOR,
                sponsor_payee=check_payee(sponsor_payee),
                sponsor_invoice_hash=invoice.payment_hash,
            )  # fmt: skip
            self._repositories.bounties.add(bounty)
            return Opened(bounty, invoice)
        with self._repositories.atomic():
            committed = self._repositories.bounties.committed_treasury_sat()
            check_budget(committed, amount_sat, self.terms.budget_sat)
            self._repositories.bounties.add(bounty)
        return Opened(bounty)

    def settle_funding(self, limit: int = 100) -> Sequence[Bounty]:
        """Open the (newest ``limit``) sponsored bounties whose invoices are paid; the ones
        opened now."""
        funding = self._repositories.bounties.list(BountyStatus.FUNDING, limit)
        return [opened for b in funding if (opened := self._paid(b)) is not None]

    def _paid(self, bounty: Bounty) -> Bounty | None:
        """``bounty`` opened if its sponsor's invoice is paid, else None (DomainError when the
        treasury's node cannot say)."""
        invoice = self._treasury.lookup_invoice(bounty.sponsor_invoice_hash)
        if invoice.state is not InvoiceState.SETTLED:
            return None
        funded = attrs.evolve(bounty, status=BountyStatus.OPEN)
        self._repositories.bounties.save(funded)
        return funded

    def lapsed(self) -> list[Bounty]:
        """The bounties whose time is up: open ones nobody claimed within
        ``unclaimed_lapse_s``, and sponsored ones whose invoice expired unpaid (looked up
        first, so one paid at the last moment opens instead; one the treasury's node cannot
        look up now waits for a later call).

        Each call looks at the next :data:`LAPSE_BATCH` bounties of each status after the last
        one it saw (by id, from the start again at the end), so every waiting bounty is looked
        at within ``ceil(waiting / LAPSE_BATCH) + 1`` calls, however many others wait: claimed
        ones waiting for their merge never keep an abandoned one from lapsing (SRS-LN-08)."""
        now = self._clock.now()
        funding = self._funding.page(self._waiting(BountyStatus.FUNDING), bounty_key, LAPSE_BATCH)
        waiting = []
        for bounty in funding:
            try:
                if self._paid(bounty) is not None:
                    continue
            except DomainError as exc:
                log.warning("bounty %s: sponsor invoice not looked up: %s", bounty.bounty_id,
                            exc.code)
                continue
            if funding_lapsed(bounty.created_at, now, SPONSOR_INVOICE_EXPIRY_S + FUNDING_GRACE_S):
                waiting.append(bounty)
        return waiting + [
            b for b in self._open.page(self._waiting(BountyStatus.OPEN), bounty_key, LAPSE_BATCH)
            if unclaimed_lapsed(b.created_at, b.claimant, now, self.terms.unclaimed_lapse_s)
        ]

    def _waiting(self, status: BountyStatus) -> Callable[[str, int], Sequence[Bounty]]:
        return functools.partial(self._repositories.bounties.after, status)

    def claim(self, bounty_id: str, login: str, payee: str) -> Bounty:
        """``login`` claims an open bounty, to be paid at the Lightning node ``payee``.
        InvalidTransition unless open; Conflict if someone else claimed it first; the creator
        cannot claim their own bounty."""
        checked = check_payee(payee)
        with self._repositories.atomic():
            bounty = self.get(bounty_id)
            if bounty.status is not BountyStatus.OPEN:
                raise InvalidTransition(f"bounty {bounty_id} is {bounty.status.value}")
            if login.lower() == bounty.created_by.removeprefix("github:").lower():
                raise InvalidTransition("the creator of a bounty cannot claim it")
            if bounty.claimant and bounty.claimant.lower() != login.lower():
                raise Conflict(f"bounty {bounty_id} is claimed by @{bounty.claimant}")
            claimed = attrs.evolve(bounty, claimant=login, claimant_payee=checked)
            self._repositories.bounties.save(claimed)
        return claimed

    def get(self, bounty_id: str) -> Bounty:
        """The bounty ``bounty_id``; NotFound if unknown."""
        return must_exist(self._repositories.bounties.get(bounty_id), f"no bounty {bounty_id}")

    def now(self) -> int:
        """The book's clock, in POSIX seconds."""
        return self._clock.now()

    def mark_issue_closed(self, bounty: Bounty) -> Bounty:
        """Store that ``bounty``'s issue closed now, while it waits for its claimant's merge."""
        changed = attrs.evolve(bounty, issue_closed_at=self._clock.now())
        self._repositories.bounties.save(changed)
        return changed

    def set_status(self, bounty: Bounty, status: BountyStatus) -> Bounty:
        """Store ``bounty`` with ``status``."""
        changed = attrs.evolve(bounty, status=status)
        self._repositories.bounties.save(changed)
        return changed


def bounty_key(bounty: Bounty) -> str:
    """A bounty's key in a sweep's walk (:meth:`BountyRepository.after`): its id."""
    return bounty.bounty_id
