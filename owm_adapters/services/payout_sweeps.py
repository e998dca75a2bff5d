"""What the periodic payout sweeps share (SRS-LN-08): the data contributors' credits
(:mod:`~owm_adapters.services.data_payouts`) and the miners' FPPS credits
(:mod:`~owm_adapters.services.pool_payouts`) are both paid by a sweep a worker runs every
``period_s``, each payout enqueued in the payout outbox under the deterministic ids of the
payee's ``n``-th payout, ``n`` being how many payouts the payee has had (all of them are read,
:func:`numbered_payouts`), so a sweep repeated after a crash finds the record and pays nothing
twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol

import attrs

from owm_adapters.services.workers import Loop
from owm_core.payments.records import RewardPayment
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories

PAGE = 500
"""How many of a payee's payouts :func:`numbered_payouts` looks up at once."""


class EnqueuesPayouts(Protocol):
    """What the sweep needs of the payout dispatcher."""

    def enqueue_to(
        self, payee: str, payment_id: str, task_id: str, amount_msat: int, memo: str
    ) -> RewardPayment:
        """Enqueue one payment to ``payee`` (idempotent by ``payment_id``)."""
        ...


def numbered_payouts(
    repositories: Repositories, ids: Callable[[int], tuple[str, str]], page: int = PAGE
) -> list[RewardPayment]:
    """Every outbox record of one payee's payouts, in order: payout ``n`` is stored under
    ``ids(n)`` (payment id, task id), and the first ``n`` with no record ends the list.

    However many there are: the list's length is the number the payee's next payout takes, so
    a list cut short would name a payout already made and the payee would never be paid again
    (SRS-LN-08). Looked up ``page`` ids at a time."""
    found: list[RewardPayment] = []
    while True:
        wanted = [ids(n)[0] for n in range(len(found), len(found) + page)]
        stored = {p.payment_id: p for p in repositories.payments.with_payment_ids(wanted)}
        for payment_id in wanted:
            if payment_id not in stored:
                return found
            found.append(stored[payment_id])


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

    @_loop.default
    def _sweeps(self) -> Loop:
        return Loop(self.loop_name, self.sweep, self.period_s)

    def sweep(self) -> Sequence[RewardPayment]:
        """Enqueue the payouts due now; the ones enqueued."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the sweep's worker thread."""
        self._loop.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop it."""
        self._loop.stop(timeout_s)
