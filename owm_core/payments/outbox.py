"""The reward outbox rules: what is owed, when to try, and what a backend answer means.

Pure rules behind the payment dispatcher (``owm_adapters.services.payouts``), SRS-LN-04/05/08:

* **What is owed.** :func:`reward_amount_msat` turns a market settlement (the negotiated price
  the node was promised, ``Settlement.amount_msat``) into the reward: price × reliability ×
  stake bonus (:func:`owm_core.payments.rewards.task_reward_msat`), capped at the price (the
  task's escrow funded the price, never more). :func:`reward_payment_id` and
  :func:`bounty_payment_id` are deterministic, so one reward (one bounty) can own only one
  outbox record: a second invoice for the same reward is refused by the store (``payment_id``
  is unique), which makes a duplicate payment impossible even if two enqueues race.
* **When to try.** A payment is *due* (:func:`due_at`) when pending, when in flight (its fate
  must be looked up) and, once failed, after an exponential backoff: 5 s after the first
  failure, doubling, capped at 10 minutes (:func:`retry_delay_s`). The Lightning backend being
  down counts as a failure, so nothing is lost and nothing hammers a dead node.
* **What to do.** :func:`decide` is the one place that decides whether money may be sent. The
  record is moved to ``in_flight`` (and stored) *before* ``pay`` is called, so after a crash
  every payment that might have been sent has ``attempts > 0`` and is first looked up
  (``Lightning.lookup_payment``, a keysend payout's ``lookup_keysend``): a succeeded hash is
  recorded as paid and never sent again, an in-flight one is waited for, and only a hash the
  backend reports failed or never saw is (re)sent. ``pay`` is idempotent by payment hash as
  well; the rules do not rely on it.
* **An invoice that expired unpaid** is renewed (:mod:`owm_core.payments.renewals`); the
  hashes of the replaced invoices are looked up too before anything is sent (``decide``'s
  ``earlier``), so the new invoice is never paid when an old one was.

Times are int POSIX seconds; money is int msat.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from typing import Any

import attrs

from owm_core.errors import InvalidTransition, InvalidValue
from owm_core.payments.keysend import (
    KEYSEND_REFUSED,
    is_keysend_refused,
    refusal_reason,
    refused,
)
from owm_core.payments.lightning import PaymentResult, PaymentStatus
from owm_core.payments.records import (
    MAX_ERROR_LEN,
    PaymentState,
    RewardPayment,
    fail,
    is_forfeited,
    start_attempt,
    succeed,
)
from owm_core.payments.rewards import task_reward_msat

RETRY_BASE_S = 5
"""Delay before the first retry of a failed payment."""
RETRY_CAP_S = 600
"""Longest delay between two attempts (10 minutes)."""
INVOICE_EXPIRY_S = 30 * 24 * 3600
"""Expiry asked of reward invoices: long, so that a backend outage does not expire them."""
BOUNTY_TASK_PREFIX = "bounty:"
"""``task_id`` of a bounty payment: this prefix and the bounty id (SRS-LN-08)."""


def retry_delay_s(failures: int) -> int:
    """Seconds to wait after the ``failures``-th failed attempt: 5 · 2^(n−1), capped at 600."""
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise InvalidValue("failures", f"must be an integer ≥ 0, got {failures!r}")
    if failures == 0:
        return 0
    return min(RETRY_BASE_S << min(failures - 1, 16), RETRY_CAP_S)


def due_at(payment: RewardPayment) -> int | None:
    """When the dispatcher should next act on ``payment``; None once it has succeeded."""
    if payment.state is PaymentState.SUCCEEDED or is_forfeited(payment):
        return None
    if payment.state is PaymentState.FAILED:
        return payment.updated_at + retry_delay_s(payment.attempts)
    return payment.updated_at


def is_due(payment: RewardPayment, now: int) -> bool:
    """Whether the dispatcher should act on ``payment`` at ``now``."""
    when = due_at(payment)
    return when is not None and when <= now


def needs_lookup(payment: RewardPayment) -> bool:
    """Whether money may already have gone out for this hash (then look it up before paying)."""
    return payment.attempts > 0 and payment.state is not PaymentState.SUCCEEDED


def max_fee_msat(amount_msat: int) -> int:
    """Routing-fee cap of a payout: 1 000 msat + 1 % of the amount (direct channels pay 0)."""
    return 1_000 + amount_msat // 100


def reward_amount_msat(price_msat: int, reliability_ppm: int, stake_bonus_bps: int) -> int:
    """The reward for a settled task: negotiated price × reliability × stake bonus (SRS-LN-04),
    never more than the price: the task's escrow funded the price, so a stake bonus lifts a
    reward at most back up to it."""
    return min(task_reward_msat(price_msat, reliability_ppm, stake_bonus_bps), price_msat)


def _digest_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]
    return f"{prefix}-{digest}"


def reward_payment_id(task_id: str, node_id: str) -> str:
    """The one outbox id of the reward of ``node_id`` for ``task_id`` (deterministic)."""
    return _digest_id("rw", task_id, node_id)


def bounty_payment_id(bounty_id: str) -> str:
    """The one outbox id of a bounty's payout (a bounty is paid once, SRS-LN-08)."""
    return _digest_id("bn", bounty_id)


def bounty_task_id(bounty_id: str) -> str:
    """The ``task_id`` a bounty payout is recorded under."""
    return BOUNTY_TASK_PREFIX + bounty_id


def bounty_refund_payment_id(bounty_id: str) -> str:
    """The one outbox id of the refund of a sponsored bounty (refunded once, SRS-LN-08)."""
    return _digest_id("br", bounty_id)


def bounty_refund_task_id(bounty_id: str) -> str:
    """The ``task_id`` a sponsor's refund is recorded under (not ``bounty:``: a refund never
    marks the bounty paid)."""
    return "bounty-refund:" + bounty_id


class Action(enum.Enum):
    """What the dispatcher does after :func:`decide`."""

    SEND = "send"
    """Store the returned record (in flight), then call ``pay``."""
    RECORD = "record"
    """Store the returned record; nothing is sent."""
    NOTHING = "nothing"
    """Nothing to store or send (paid already, or not due)."""


@attrs.frozen
class Decision:
    """The next record of a payment and whether money may be sent for it now."""

    payment: RewardPayment
    action: Action


def decide(
    payment: RewardPayment,
    looked_up: PaymentResult | None,
    now: int,
    earlier: Mapping[str, PaymentResult | None] | None = None,
) -> Decision:
    """Decide one dispatcher step for a due ``payment`` (see the module docstring).

    ``looked_up`` is the backend's answer to ``lookup_payment`` when :func:`needs_lookup` is
    true (None: the backend never saw this hash); it is ignored otherwise. ``earlier`` maps
    each of the payment's ``replaced_hashes`` (its expired invoices,
    :mod:`owm_core.payments.renewals`) to the backend's answer for it, and must answer every
    one: an earlier invoice paid after all is the payment, one in flight is waited for. SEND is
    returned only when no earlier send can have succeeded or be in flight, with the record
    moved to in flight and its attempt counted.
    """
    if payment.state is PaymentState.SUCCEEDED:
        return Decision(payment, Action.NOTHING)
    for_earlier = _earlier_status(payment, earlier or {})
    if for_earlier is PaymentStatus.SUCCEEDED:
        return Decision(_arrived(payment, now), Action.RECORD)
    if for_earlier is PaymentStatus.IN_FLIGHT:
        return Decision(payment, Action.NOTHING)
    if needs_lookup(payment) and looked_up is not None:
        if looked_up.payment_hash != payment.payment_hash:
            raise InvalidValue("looked_up", "is the result of another payment hash")
        if looked_up.status is PaymentStatus.SUCCEEDED:
            return Decision(_arrived(payment, now), Action.RECORD)
        if looked_up.status is PaymentStatus.IN_FLIGHT:
            if payment.state is PaymentState.IN_FLIGHT:
                return Decision(payment, Action.NOTHING)
            return Decision(_evolve(payment, now, state=PaymentState.IN_FLIGHT), Action.RECORD)
    if not is_due(payment, now) and payment.state is not PaymentState.IN_FLIGHT:
        return Decision(payment, Action.NOTHING)
    if payment.state is PaymentState.IN_FLIGHT:
        # Sent before and the backend reports it failed or never saw it: a new attempt.
        again = _evolve(payment, now, attempts=payment.attempts + 1)
        return Decision(again, Action.SEND)
    return Decision(start_attempt(payment, now), Action.SEND)


def _earlier_status(
    payment: RewardPayment, earlier: Mapping[str, PaymentResult | None]
) -> PaymentStatus | None:
    """SUCCEEDED if a replaced invoice of ``payment`` was paid, IN_FLIGHT if one is in flight,
    else None; InvalidValue unless ``earlier`` answers exactly the replaced hashes."""
    if set(earlier) != set(payment.replaced_hashes):
        raise InvalidValue("earlier", "must answer for every replaced payment hash, only them")
    statuses = set()
    for payment_hash, result in earlier.items():
        if result is None:
            continue
        if result.payment_hash != payment_hash:
            raise InvalidValue("earlier", "holds the result of another payment hash")
        statuses.add(result.status)
    for status in (PaymentStatus.SUCCEEDED, PaymentStatus.IN_FLIGHT):
        if status in statuses:
            return status
    return None


def after_pay(payment: RewardPayment, result: PaymentResult, now: int) -> RewardPayment:
    """The record after ``pay`` answered ``result`` for the in-flight ``payment``; a keysend
    its payee refuses is marked so (:func:`owm_core.payments.keysend.refusal_reason`)."""
    if payment.state is not PaymentState.IN_FLIGHT:
        raise InvalidTransition(f"payment {payment.payment_id} is not in flight")
    if result.payment_hash != payment.payment_hash:
        raise InvalidValue("result", "is the result of another payment hash")
    if result.status is PaymentStatus.SUCCEEDED:
        return succeed(payment, now)
    if result.status is PaymentStatus.FAILED:
        failed = fail(payment, now, refusal_reason(payment, result.failure_reason))
        if refused(payment, result.failure_reason):
            return attrs.evolve(failed, keysend_refused=True)
        return failed
    return payment


def unavailable(payment: RewardPayment, now: int, error: str) -> RewardPayment:
    """The backend could not be asked while ``payment`` was in flight: retry after backoff.

    Safe because a retry looks the hash up first and ``pay`` is idempotent by hash. A keysend
    payout its payee refused stays ``keysend_refused`` (it waits for an invoice, never keysend
    again), and its error still says so.
    """
    reason = f"lightning unavailable: {error}"
    if is_keysend_refused(payment):
        reason = f"{KEYSEND_REFUSED}; {reason}"
    reason = reason[:MAX_ERROR_LEN]
    return fail(payment, now, reason)


def _arrived(payment: RewardPayment, now: int) -> RewardPayment:
    if payment.state is PaymentState.IN_FLIGHT:
        return succeed(payment, now)
    return _evolve(payment, now, state=PaymentState.SUCCEEDED, last_error=None,
                   attempts=max(payment.attempts, 1))


def _evolve(payment: RewardPayment, now: int, **changes: Any) -> RewardPayment:
    if isinstance(now, bool) or not isinstance(now, int) or now < 0:
        raise InvalidValue("now", f"must be an integer ≥ 0, got {now!r}")
    return attrs.evolve(payment, updated_at=max(payment.updated_at, now), **changes)


__all__ = [
    "BOUNTY_TASK_PREFIX",
    "INVOICE_EXPIRY_S",
    "RETRY_BASE_S",
    "RETRY_CAP_S",
    "Action",
    "Decision",
    "after_pay",
    "bounty_payment_id",
    "bounty_refund_payment_id",
    "bounty_refund_task_id",
    "bounty_task_id",
    "decide",
    "due_at",
    "is_due",
    "max_fee_msat",
    "needs_lookup",
    "retry_delay_s",
    "reward_amount_msat",
    "reward_payment_id",
    "unavailable",
]
