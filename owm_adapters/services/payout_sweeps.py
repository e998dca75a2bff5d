"""What the periodic payout sweeps share (SRS-LN-08): the data contributors' credits
(:mod:`~owm_adapters.services.data_payouts`) and the miners' FPPS credits
(:mod:`~owm_adapters.services.pool_payouts`) are both paid by a sweep a worker runs every
``period_s``, each payout enqueued in the payout outbox under the deterministic ids of the
payee's ``n``-th payout, ``n`` being how many payouts the payee has had (all of them are
counted, :func:`numbered_payouts`), so a sweep repeated after a crash finds the record and pays
nothing twice.

A sweep reads a payee's whole payout history once, then only what is new: its
:class:`PayoutTally` keeps what the records read so far add up to (their number, sum and newest
time never change once stored) and re-reads only the ones not yet settled. So a sweep's reads
grow with the payees and what changed since the previous sweep, not with every payout ever made
(a miner paid hourly has 8,760 payouts a year).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar, Protocol, TypeVar

import attrs

from owm_adapters.services.sweep_failures import SweepFailures
from owm_adapters.services.workers import Loop
from owm_core.errors import DomainError
from owm_core.payments.records import RewardPayment
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories

PAGE = 500
"""How many of a payee's payouts :func:`numbered_payouts` looks up at once, at most."""
FIRST_LOOKUP = 16
"""How many it looks up first (then twice as many each time, up to :data:`PAGE`)."""
PAYEES_PAGE = 1_000
"""How many payees :func:`every_payee` reads at once."""

T = TypeVar("T")


class EnqueuesPayouts(Protocol):
    """What the sweep needs of the payout dispatcher."""

    def enqueue_to(
        self, payee: str, payment_id: str, task_id: str, amount_msat: int, memo: str
    ) -> RewardPayment:
        """Enqueue one payment to ``payee`` (idempotent by ``payment_id``)."""
        ...


def numbered_payouts(
    repositories: Repositories,
    ids: Callable[[int], tuple[str, str]],
    page: int = PAGE,
    start: int = 0,
) -> list[RewardPayment]:
    """Every outbox record of one payee's payouts from number ``start`` on, in order: payout
    ``n`` is stored under ``ids(n)`` (payment id, task id), and the first ``n`` with no record
    ends the list.

    However many there are: ``start`` plus the list's length is the number the payee's next
    payout takes, so a list cut short would name a payout already made and the payee would
    never be paid again (SRS-LN-08). Looked up at most ``page`` ids at a time, the first
    lookups smaller (most sweeps find no new payout, or one)."""
    found: list[RewardPayment] = []
    size = min(page, FIRST_LOOKUP)
    while True:
        first = start + len(found)
        wanted = [ids(n)[0] for n in range(first, first + size)]
        stored = {p.payment_id: p for p in repositories.payments.with_payment_ids(wanted)}
        for payment_id in wanted:
            if payment_id not in stored:
                return found
            found.append(stored[payment_id])
        size = min(page, 2 * size)


def every_payee(read: Callable[..., Sequence[T]], key: Callable[[T], str]) -> Iterator[T]:
    """Every value of a listing read ``PAYEES_PAGE`` at a time by key (``read(limit=,
    after=)``: miners' credits, data payees): a sweep must reach every payee, not the first
    page's (SRS-POOL-07, SRS-LN-08)."""
    after = ""
    while True:
        page = read(limit=PAYEES_PAGE, after=after)
        yield from page
        if len(page) < PAYEES_PAGE:
            return
        after = key(page[-1])


@attrs.define
class PayoutTally:
    """One payee's numbered payouts as far as read (see the module docstring): ``count`` (the
    next payout's number), ``enqueued_msat`` (their sum), ``newest_at`` (the latest
    ``created_at``) and the payment ids of those not settled when last read."""

    count: int = 0
    enqueued_msat: int = 0
    newest_at: int | None = None
    unsettled: list[str] = attrs.Factory(list)

    def read(
        self, repositories: Repositories, ids: Callable[[int], tuple[str, str]]
    ) -> list[RewardPayment]:
        """Bring the tally up to date; the records read to do it: the ones unsettled when last
        read, then the new ones (on the first call, all of them)."""
        pending, ask = self.unsettled, repositories.payments.with_payment_ids
        again = [p for at in range(0, len(pending), PAGE) for p in ask(pending[at : at + PAGE])]
        new = numbered_payouts(repositories, ids, start=self.count)
        for payment in new:
            self.count += 1
            self.enqueued_msat += payment.amount_msat
            if self.newest_at is None or payment.created_at > self.newest_at:
                self.newest_at = payment.created_at
        read = again + new
        self.unsettled = [p.payment_id for p in read if not p.settled]
        return read


@attrs.define(eq=False)
class PayoutSweep:
    """A sweep over the store that enqueues what is due through the payout outbox, run by a
    worker every ``period_s`` between :meth:`start` and :meth:`stop`."""

    #: The worker thread's name.
    loop_name: ClassVar[str]
    _repositories: Repositories
    _clock: Clock
    _payouts: EnqueuesPayouts
    period_s: float = attrs.field(default=60.0, kw_only=True)
    _loop: Loop = attrs.field(init=False)
    _tallies: dict[str, PayoutTally] = attrs.field(init=False, factory=dict)
    #: Payees whose payout could not be enqueued (their node has not handed in the invoice
    #: asked for yet, or is out of reach): tried again next sweep, while it goes on to the
    #: others; logged by the sweep's own module, once per payee and kind of failure.
    _waiting: SweepFailures = attrs.field(init=False)

    @_loop.default
    def _sweeps(self) -> Loop:
        return Loop(self.loop_name, self.sweep, self.period_s)

    @_waiting.default
    def _waiting_log(self) -> SweepFailures:
        return SweepFailures(self._log, logging.INFO)

    @property
    def _log(self) -> logging.Logger:
        return logging.getLogger(type(self).__module__)

    def _enqueued(
        self, payee: str, what: str, destination: str, ids: tuple[str, str], msat: int,
        memo: str,
    ) -> RewardPayment | None:  # fmt: skip
        """``what`` (``msat`` to ``payee`` under the outbox ``ids``: payment id, task id)
        enqueued to ``destination``; None while it cannot be (a node that has not handed in
        the invoice asked for yet, one out of reach): tried again next sweep, logged once
        per payee and kind of failure, while the sweep goes on to the others."""
        try:
            payment = self._payouts.enqueue_to(destination, *ids, msat, memo)
        except DomainError as error:
            self._waiting.failed(payee, f"{what} waits: {error.message}",
                                 kind=type(error).__name__)  # fmt: skip
            return None
        self._waiting.succeeded(payee)
        self._log.info("%s: %d msat enqueued as %s", what, msat, payment.payment_hash)
        return payment

    def sweep(self) -> Sequence[RewardPayment]:
        """Enqueue the payouts due now; the ones enqueued."""
        raise NotImplementedError

    def _payouts_read(
        self, payee: str, ids: Callable[[int], tuple[str, str]]
    ) -> tuple[PayoutTally, list[RewardPayment]]:
        """``payee``'s :class:`PayoutTally`, brought up to date, and the records read to do it
        (:meth:`PayoutTally.read`)."""
        tally = self._tallies.setdefault(payee, PayoutTally())
        return tally, tally.read(self._repositories, ids)

    def start(self) -> None:
        """Start the sweep's worker thread."""
        self._loop.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop it."""
        self._loop.stop(timeout_s)
