"""Data contributors' credits: read them, name where they are paid, and pay them out over
Lightning through the payout outbox (rules: :mod:`owm_core.knowledge.credit_payouts`).

* :class:`DataCreditLedger` — a contributor's statement (credited, enqueued, paid, owed, their
  payouts and latest credits) and their payee, for ``GET /v1/data/credits``,
  ``POST /v1/data/payee`` and ``owm data credits|payee``;
* :class:`DataCreditPayouts` — the sweep a worker runs every ``period_s``: each contributor
  with a payee whose owed credits are due (threshold or timer) gets one payout enqueued under
  the deterministic id of their next payout — numbered by how many payouts they have had, all
  of them counted (:class:`~owm_adapters.services.payout_sweeps.PayoutTally`) — so a repeated
  sweep pays nothing twice.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Sequence

import attrs

from owm_adapters.services.payout_sweeps import PayoutSweep, every_payee, numbered_payouts
from owm_core.errors import InvalidValue
from owm_core.fields import LN_PUBKEY
from owm_core.knowledge.credit_payouts import (
    DataPayee,
    PayoutTerms,
    owed_msat,
    payout_due,
    payout_ids,
)
from owm_core.knowledge.retrieval import DataCredit
from owm_core.payments.records import RewardPayment
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories

MAX_PAYOUTS_LISTED = 1_000
"""How many of a contributor's payouts, the newest, a statement lists (its sums count all)."""
LN_PUBKEY_RE = re.compile(LN_PUBKEY)
_CONTRIBUTOR = operator.attrgetter("contributor")


@attrs.frozen
class CreditStatement:
    """One contributor's credits and payouts: the sums over every payout, ``payouts`` the
    newest :data:`MAX_PAYOUTS_LISTED` of them, oldest first."""

    contributor: str
    credited_msat: int
    enqueued_msat: int
    paid_msat: int
    owed_msat: int
    payee: DataPayee | None
    payouts: tuple[RewardPayment, ...]
    credits: tuple[tuple[str, int, DataCredit], ...]


def _payouts_of(repositories: Repositories, contributor: str) -> list[RewardPayment]:
    return numbered_payouts(repositories, functools.partial(payout_ids, contributor))


@attrs.define(eq=False)
class DataCreditLedger:
    """Statements and payees (see the module docstring)."""

    _repositories: Repositories
    _clock: Clock

    def register_payee(self, contributor: str, ln_pubkey: str) -> DataPayee:
        """Name the Lightning node ``contributor`` is paid at (replacing an earlier one)."""
        key = ln_pubkey.strip().lower().partition("@")[0]
        if not LN_PUBKEY_RE.fullmatch(key):
            raise InvalidValue("ln_node", "must be a Lightning node's public key (66 hex)")
        payee = DataPayee(contributor, key, self._clock.now())
        self._repositories.data_payees.put(payee)
        return payee

    def statement(self, contributor: str, limit: int = 100) -> CreditStatement:
        """``contributor``'s credits, payouts and what is owed."""
        credited = self._repositories.data_credits.total_msat(contributor)
        payouts = _payouts_of(self._repositories, contributor)
        enqueued = sum(p.amount_msat for p in payouts)
        return CreditStatement(
            contributor=contributor,
            credited_msat=credited,
            enqueued_msat=enqueued,
            paid_msat=sum(p.amount_msat for p in payouts if p.settled),
            owed_msat=owed_msat(credited, enqueued),
            payee=self._repositories.data_payees.get(contributor),
            payouts=tuple(payouts[-MAX_PAYOUTS_LISTED:]),
            credits=tuple(self._repositories.data_credits.for_contributor(contributor, limit)),
        )


@attrs.define(eq=False)
class DataCreditPayouts(PayoutSweep):
    """The payout sweep over every contributor with a payee (see the module docstring)."""

    loop_name = "data-credit-payouts"
    terms: PayoutTerms = attrs.Factory(PayoutTerms)

    def sweep(self) -> Sequence[RewardPayment]:
        """Enqueue the payouts due now; the ones enqueued."""
        now = self._clock.now()
        enqueued = []
        for payee in every_payee(self._repositories.data_payees.list, _CONTRIBUTOR):
            contributor = payee.contributor
            done, _ = self._payouts_read(contributor, functools.partial(payout_ids, contributor))
            owed = owed_msat(
                self._repositories.data_credits.total_msat(contributor), done.enqueued_msat
            )
            if not payout_due(owed, done.newest_at, payee.registered_at, now, self.terms):
                continue
            paid = self._enqueued(
                contributor, f"data credits of {contributor}", payee.ln_pubkey,
                payout_ids(contributor, done.count), owed,
                f"OWM data credits of {contributor}"[:200],
            )  # fmt: skip
            enqueued += [paid] if paid is not None else []
        return enqueued
