"""Reward payments: the outbox record of one Lightning payment owed to a node, and its log.

This module owns the durable side of paying a node for a task (SRS-LN-04, SRS-LN-05):

* :class:`RewardPayment` is an *outbox* record. It is written in the same transaction that
  settles the task, before any money moves, and a dispatcher later pays it. Its
  ``payment_hash`` is the idempotency key: the Lightning port never pays a hash twice, and the
  repository stores one record per hash, so a crash between "paid" and "recorded" can only
  lead to a harmless retry of the same hash, never to a second payment.
* The record's states::

      pending ──start_attempt──▶ in_flight ──succeed──▶ succeeded
         ▲                           │
         └────── retry ◀── failed ◀──┘ fail

  ``attempts`` counts the attempts started; ``last_error`` keeps the reason of the last failure.
* An invoice that expired unpaid is *renewed* (:mod:`owm_core.payments.renewals`): the record
  takes the new invoice's hash and keeps the old ones in ``replaced_hashes``, which are looked
  up before anything is sent under the new hash, so a payment is never made twice. Those of
  them that were keysend hashes are named in ``replaced_keysend`` as well: they are looked up as
  keysend attempts (``Lightning.lookup_keysend``), the others by hash only.
* A payout to a bare Lightning node that hands in no invoice is sent by *keysend*
  (:class:`PayoutMethod`, :mod:`owm_core.payments.keysend`): the record holds no invoice, the
  payee's node key, and the hash of a preimage derived from its ``payment_id``, so the same
  hash is sent again after any crash and looked up first, exactly as an invoice's.
* :class:`PaymentAttempt` is one line of the payment log SRS-LN-05 asks for: task id, node id,
  amount, timestamp and outcome of every attempt, success and failure.

Money is integer msat; times are POSIX seconds passed in by the caller.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import Conflict, InvalidTransition, InvalidValue

_ID = fields.text(max_len=128)
_HASH = fields.hex_digest(32)
MAX_ERROR_LEN = 1_000
"""Longest failure reason kept; longer ones are cut (they come from remote nodes)."""
MAX_RENEWALS = 1_000
"""Most invoices one payment replaces (one a month would take 80 years)."""


class PaymentState(enum.Enum):
    """Where a reward payment stands."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PayoutMethod(enum.Enum):
    """How a payout is sent: by paying the payee's BOLT11 invoice, or by keysend to its node
    (a spontaneous payment carrying its own preimage, :mod:`owm_core.payments.keysend`)."""

    INVOICE = "invoice"
    KEYSEND = "keysend"


class AttemptOutcome(enum.Enum):
    """What one payment attempt came to (SRS-LN-05 logs attempts, successes and failures)."""

    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def _optional(check: fields.Validator) -> fields.Validator:
    def validate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            check(instance, attribute, value)

    return validate


def _optional_text(max_len: int, min_len: int = 1) -> fields.Validator:
    return _optional(fields.text(min_len=min_len, max_len=max_len))


@attrs.frozen
class RewardPayment:
    """A payment owed to ``node_id`` for ``task_id``: the outbox record (SRS-LN-04).

    ``payment_hash`` (64 hex) identifies the Lightning payment and is the idempotency key;
    ``bolt11`` is the node's invoice once known. ``updated_at`` never precedes ``created_at``.

    How the invoice was obtained, so that an expired one can be asked for again the same way
    (:mod:`owm_core.payments.renewals`): ``payee_pubkey`` is the Lightning node it was asked of
    with ``memo`` (None: the payee handed in an invoice of its own, which cannot be asked for
    again); ``invoice_expires_at`` is when it stops being payable (None: a record stored before
    these were kept, whose invoice the dispatcher reads). ``replaced_hashes`` are the hashes of
    its earlier, expired invoices, oldest first: kept, and looked up, until it is paid;
    ``replaced_keysend`` are those of them that were keysend hashes (the record was a keysend
    payout under that hash), looked up as keysend attempts. ``keysend_refused``: a keysend
    payout whose payee's node refused keysend; it is never sent by keysend again and waits for
    an invoice (:mod:`owm_core.payments.keysend`).
    """

    payment_id: str = attrs.field(validator=_ID)
    task_id: str = attrs.field(validator=_ID)
    node_id: str = attrs.field(validator=_ID)
    amount_msat: int = attrs.field(validator=fields.money(minimum=1))
    payment_hash: str = attrs.field(validator=_HASH)
    created_at: int = attrs.field(validator=fields.timestamp())
    updated_at: int = attrs.field(validator=fields.timestamp())
    bolt11: str | None = attrs.field(default=None, validator=_optional_text(4_096))
    state: PaymentState = attrs.field(
        default=PaymentState.PENDING, validator=fields.instance_of(PaymentState)
    )
    attempts: int = attrs.field(default=0, validator=fields.integer(minimum=0))
    last_error: str | None = attrs.field(default=None, validator=_optional_text(MAX_ERROR_LEN))
    payee_pubkey: str | None = attrs.field(
        default=None, validator=_optional(fields.text(max_len=66, pattern=fields.LN_PUBKEY))
    )
    memo: str | None = attrs.field(default=None, validator=_optional_text(640, min_len=0))
    invoice_expires_at: int | None = attrs.field(
        default=None, validator=_optional(fields.timestamp())
    )
    replaced_hashes: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    method: PayoutMethod = attrs.field(
        default=PayoutMethod.INVOICE, validator=fields.instance_of(PayoutMethod)
    )
    replaced_keysend: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    keysend_refused: bool = attrs.field(default=False, validator=fields.instance_of(bool))

    def __attrs_post_init__(self) -> None:
        """Times move forward; a payment that was tried has counted its attempts; an invoice
        replaced is never the current one, nor replaced twice; the replaced keysend hashes are
        replaced hashes; a keysend payout names its payee's node and holds no invoice; only
        a keysend payout is refused keysend."""
        if self.updated_at < self.created_at:
            raise InvalidValue("updated_at", "cannot precede created_at")
        if self.state is not PaymentState.PENDING and self.attempts == 0:
            raise InvalidValue("attempts", f"a {self.state.value} payment was attempted")
        if len(self.replaced_hashes) > MAX_RENEWALS:
            raise InvalidValue("replaced_hashes", f"at most {MAX_RENEWALS} invoices are replaced")
        for old in self.replaced_hashes:
            _HASH(self, attrs.fields(RewardPayment).replaced_hashes, old)
        if len({*self.replaced_hashes, self.payment_hash}) != len(self.replaced_hashes) + 1:
            raise InvalidValue("replaced_hashes", "repeat a hash or hold the current one")
        if len(set(self.replaced_keysend)) != len(self.replaced_keysend) or not set(
            self.replaced_keysend
        ) <= set(self.replaced_hashes):
            raise InvalidValue("replaced_keysend", "must name replaced hashes, each once")
        if self.method is PayoutMethod.KEYSEND and (
            self.payee_pubkey is None or self.bolt11 is not None
        ):
            raise InvalidValue("method", "a keysend payout names its payee's node, no invoice")
        if self.keysend_refused and self.method is not PayoutMethod.KEYSEND:
            raise InvalidValue("keysend_refused", "only a keysend payout is refused keysend")

    @property
    def settled(self) -> bool:
        """Whether the money has arrived (nothing more will ever be sent for this hash)."""
        return self.state is PaymentState.SUCCEEDED


def _check_now(payment: RewardPayment, now: int) -> None:
    if isinstance(now, bool) or not isinstance(now, int) or now < 0:
        raise InvalidValue("now", f"must be an integer ≥ 0, got {now!r}")


def _touch(payment: RewardPayment, now: int, **changes: Any) -> RewardPayment:
    _check_now(payment, now)
    return fields.evolve(payment, updated_at=max(payment.updated_at, now), **changes)


def start_attempt(payment: RewardPayment, now: int) -> RewardPayment:
    """Begin an attempt (pending | failed → in_flight), counting it."""
    if payment.state not in (PaymentState.PENDING, PaymentState.FAILED):
        raise InvalidTransition(
            f"payment {payment.payment_id} is {payment.state.value}; it cannot be attempted"
        )
    return _touch(payment, now, state=PaymentState.IN_FLIGHT, attempts=payment.attempts + 1)


def succeed(payment: RewardPayment, now: int) -> RewardPayment:
    """The attempt in flight arrived (in_flight → succeeded); the error is cleared."""
    if payment.state is not PaymentState.IN_FLIGHT:
        raise InvalidTransition(f"payment {payment.payment_id} is not in flight")
    return _touch(payment, now, state=PaymentState.SUCCEEDED, last_error=None)


def fail(payment: RewardPayment, now: int, error: str) -> RewardPayment:
    """The attempt in flight failed (in_flight → failed) with ``error`` (cut to 1000 chars)."""
    if payment.state is not PaymentState.IN_FLIGHT:
        raise InvalidTransition(f"payment {payment.payment_id} is not in flight")
    reason = (error or "unknown error")[:MAX_ERROR_LEN]
    return _touch(payment, now, state=PaymentState.FAILED, last_error=reason)


@attrs.frozen
class PaymentAttempt:
    """One line of the payment log (SRS-LN-05): who, for what, how much, when, and how it went."""

    payment_hash: str = attrs.field(validator=_HASH)
    task_id: str = attrs.field(validator=_ID)
    node_id: str = attrs.field(validator=_ID)
    amount_msat: int = attrs.field(validator=fields.money(minimum=1))
    at: int = attrs.field(validator=fields.timestamp())
    outcome: AttemptOutcome = attrs.field(validator=fields.instance_of(AttemptOutcome))
    error: str | None = attrs.field(default=None, validator=_optional_text(MAX_ERROR_LEN))


def attempt_record(payment: RewardPayment, outcome: AttemptOutcome, now: int) -> PaymentAttempt:
    """The log line for ``payment`` (its hash, task, node and amount) at ``now`` with
    ``outcome`` (the error of a failure)."""
    _check_now(payment, now)
    error = payment.last_error if outcome is AttemptOutcome.FAILED else None
    return fields.copied(PaymentAttempt, payment, at=now, outcome=outcome, error=error)


_SAME = ("payment_id", "task_id", "node_id", "amount_msat", "created_at")


def _same_payment(
    stored: RewardPayment, incoming: RewardPayment, named: str, names: tuple[str, ...] = (
        *_SAME, "method")
) -> None:
    """Conflict unless ``incoming`` is the same payment as ``stored`` (by ``names``)."""
    for name in names:
        if getattr(stored, name) != getattr(incoming, name):
            raise Conflict(f"payment {named} is stored with another {name}")


def merge(stored: RewardPayment, incoming: RewardPayment) -> RewardPayment:
    """What storing ``incoming`` over ``stored`` (same payment_hash) keeps (SRS-LN-04).

    The payment hash is the idempotency key, so a different payment under the same hash is a
    Conflict. A record never moves back: a stored success is final, and an incoming record
    with fewer attempts or an older ``updated_at`` is stale (a retried enqueue), so the stored
    one stays.
    """
    _same_payment(stored, incoming, incoming.payment_hash)
    if stored.state is PaymentState.SUCCEEDED:
        return stored
    if (incoming.attempts, incoming.updated_at) < (stored.attempts, stored.updated_at):
        return stored
    return incoming


def check_replacement(stored: RewardPayment, renewed: RewardPayment) -> RewardPayment:
    """What storing ``renewed`` in place of ``stored`` (its invoice renewed) keeps: ``renewed``,
    once it is the same payment (id, task, node, amount, created_at; the method may change:
    an expired own invoice goes by keysend, a refused keysend by invoice), ``stored`` is neither
    paid nor forfeited, and ``renewed`` replaces exactly ``stored``'s hash, keeping its earlier
    ones; otherwise Conflict (another dispatcher renewed or paid it first). See
    :mod:`owm_core.payments.renewals`."""
    _same_payment(stored, renewed, renewed.payment_id, _SAME)
    if stored.settled or is_forfeited(stored):
        state = "paid" if stored.settled else "forfeited"
        raise Conflict(f"payment {stored.payment_id} is {state}; its invoice is not renewed")
    if renewed.replaced_hashes != (*stored.replaced_hashes, stored.payment_hash):
        raise Conflict(f"payment {stored.payment_id}: the renewal does not replace its invoice")
    if renewed.replaced_keysend != replaced_keysend_after(stored):
        raise Conflict(f"payment {stored.payment_id}: the renewal drops or invents a keysend hash")
    return renewed


def replaced_keysend_after(payment: RewardPayment) -> tuple[str, ...]:
    """``replaced_keysend`` of the record that replaces ``payment``'s hash: its own, and its
    current hash when that is a keysend hash (it keeps being looked up as a keysend attempt)."""
    if payment.method is PayoutMethod.KEYSEND:
        return (*payment.replaced_keysend, payment.payment_hash)
    return payment.replaced_keysend


FORFEIT_ERROR = "forfeited: node slashed (SRS-SEC-11)"
"""``last_error`` of a payment forfeited by a slashing; such a payment is never sent."""


def forfeit(payment: RewardPayment, now: int) -> RewardPayment:
    """A slashed node's unpaid reward (pending | failed → failed, :data:`FORFEIT_ERROR`).

    Counted as one attempt so that the record satisfies the payment invariants; the payment
    dispatcher treats it as final (:func:`is_forfeited`, SRS-SEC-11).
    """
    return fail(start_attempt(payment, now), now, FORFEIT_ERROR)


def is_forfeited(payment: RewardPayment) -> bool:
    """Whether ``payment`` was forfeited by a slashing and must never be sent (SRS-SEC-11)."""
    return payment.state is PaymentState.FAILED and payment.last_error == FORFEIT_ERROR


REINSTATED_ERROR = "reinstated: slashing reversed on appeal"
"""``last_error`` of a forfeited payment re-issued by a reversal: failed, so due again."""


def reinstate(payment: RewardPayment, now: int) -> RewardPayment:
    """A forfeited payment made payable again because its slashing was reversed on appeal.

    It stays ``failed`` (it was never sent: the forfeit's attempt is a bookkeeping one), with
    :data:`REINSTATED_ERROR` instead of :data:`FORFEIT_ERROR`, so the dispatcher retries it as
    any failed payment (looked up first, then sent under the same payment hash, once). Only a
    forfeited payment may be reinstated (InvalidTransition otherwise), so reinstating it twice
    is impossible (SRS-SEC-11, SRS-LN-04).
    """
    if not is_forfeited(payment):
        raise InvalidTransition(f"payment {payment.payment_id} is not forfeited")
    return _touch(payment, now, last_error=REINSTATED_ERROR)
