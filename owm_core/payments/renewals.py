"""Renewing a payout's invoice that expired unpaid (SRS-LN-04, SRS-LN-08).

A payout is paid by paying an invoice the payee issued (:mod:`owm_core.payments.invoices`),
asked with a long expiry (``INVOICE_EXPIRY_S``, 30 days). When the treasury's node was down,
or no route was found, for that long, the invoice expires and can no longer be paid: the payee
is then asked for a new invoice of the same amount, the same way the first was asked, and the
outbox record takes it in place of the old one. These are the rules; the dispatcher
(``owm_adapters.services.payouts``) does the asking and the storing.

* **When.** :func:`renewal` is the one place that decides it: only an unpaid, not forfeited,
  due payment whose invoice has expired or stays payable for less than ``MIN_PAYABLE_S`` (on
  the coordinator's clock, counted from the invoice's arrival: :func:`deadline`), and
  only once the Lightning backend, asked by the *old* payment hash, reports that payment
  failed or never saw it. An old hash that succeeded is recorded paid instead, and one in
  flight is waited for (:func:`owm_core.payments.outbox.decide`).
* **What.** :func:`renewed` is the record with the new invoice: the same payment (id, task,
  node, amount, attempts), the new hash and BOLT11, and the old hash appended to
  ``replaced_hashes``. A new invoice for another amount, or one that is itself about to
  expire, is refused. The store writes it in place of the old record in one write
  (:func:`owm_core.payments.records.check_replacement`).
* **How.** :func:`renewal` is the one rule that says when *and how*: an invoice the payee's
  node was asked for is asked for again (INVOICE); a contributor's own BOLT11 (a bounty claim
  or a payee that named an invoice) cannot be asked for again, so while keysend is on it is
  paid by keysend to the invoice's payee node, for the same amount (KEYSEND,
  :func:`keysend_renewed`, the keysend hash derived from the payout's id as in
  :mod:`owm_core.payments.keysend`); and a keysend payout whose payee refused keysend goes back
  to waiting for an invoice from its invoice source (INVOICE); a keysend payout recorded under
  another coordinator key (the signing key was replaced) moves to the hash the current key
  derives (KEYSEND, :func:`rekeyable`), never back to a hash it used before. Each switch needs
  the same proof as a renewal: the current hash failed or was never seen.
* **Exactly once.** The replaced hashes stay on the record until it is paid, and every one of
  them is looked up before anything is sent under the new hash (``decide``'s ``earlier``): an
  old payment that succeeded after all is recorded as the payment, one in flight is waited
  for. A crash between asking the new invoice and storing it loses only an unpaid invoice
  (the old record is renewed again); a crash between storing it and paying leaves a pending
  record that is paid once, after the same lookups.

Times are int POSIX seconds; money is int msat.
"""

from __future__ import annotations

from typing import Any

from owm_core import fields
from owm_core.errors import InvalidValue
from owm_core.payments.invoices import MIN_PAYABLE_S
from owm_core.payments.keysend import (
    KEYSEND_REFUSED,
    KeysendKey,
    PayeeKind,
    choose_method,
    is_keysend_refused,
)
from owm_core.payments.lightning import Invoice, PaymentResult, PaymentStatus
from owm_core.payments.outbox import is_due
from owm_core.payments.records import (
    PaymentState,
    PayoutMethod,
    RewardPayment,
    fail,
    is_forfeited,
    replaced_keysend_after,
    start_attempt,
)

NOT_RENEWED = "invoice expired unpaid; no new invoice from the payee yet"
"""Start of ``last_error`` of a payment whose expired invoice could not be renewed."""
WAITING_FOR_INVOICE = "waiting for an invoice from the payee"
"""Part of ``last_error`` of a payout whose payee refused keysend and has handed in no invoice."""


def deadline(invoice: Invoice, received_at: int) -> int:
    """When, on the coordinator's clock, ``invoice`` (received at ``received_at``) is no longer
    payable at the latest: ``received_at`` + its expiry.

    Counted from its arrival, not from the timestamp the payee wrote into it, so that a payee
    whose clock differs from ours never makes a payable invoice look expired (nor the new one
    too: a renewal that followed such a clock would go round for ever). An invoice older than
    it looks is refused by the Lightning backend first (its payment fails and is retried) and
    renewed once this deadline passes: late, never early.
    """
    return received_at + invoice.expiry_s


def payable_until_late_enough(expires_at: int, now: int) -> bool:
    """Whether an invoice expiring at ``expires_at`` can still be paid: ``MIN_PAYABLE_S`` left."""
    return expires_at >= now + MIN_PAYABLE_S


def may_need_renewal(payment: RewardPayment, expires_at: int | None, now: int) -> bool:
    """Whether ``payment``'s invoice (expiring at ``expires_at``; None: not known) is too close
    to its expiry to be paid while the payment is still owed: then the dispatcher looks the
    old hash up and asks :func:`renewal`."""
    if payment.settled or is_forfeited(payment) or expires_at is None:
        return False
    return not payable_until_late_enough(expires_at, now)


def rekeyable(payment: RewardPayment, keysend_hash: str | None) -> bool:
    """Whether the keysend ``payment`` was recorded under another coordinator key and may move
    to ``keysend_hash``, the hash the current key derives for it (None: no key): that hash is
    new to this payout (never moved back to a hash it used before) and the payee has not
    refused keysend. :func:`renewal` moves it once its own hash is known failed or unsent."""
    return (
        payment.method is PayoutMethod.KEYSEND
        and not is_keysend_refused(payment)
        and keysend_hash is not None
        and not _used_before(payment, keysend_hash)
    )


def renewal(
    payment: RewardPayment,
    expires_at: int | None,
    looked_up: PaymentResult | None,
    now: int,
    *,
    keysend: bool = False,
    payee: PayeeKind = PayeeKind.BARE_NODE,
    keysend_hash: str | None = None,
) -> PayoutMethod | None:
    """How to renew ``payment`` now, or None: not now (module docstring).

    ``looked_up`` is the Lightning backend's answer for ``payment.payment_hash``
    (``lookup_payment``, or ``lookup_keysend`` for a keysend payout; None: it never saw it).
    A renewal is due only when the payment is owed and due,
    its current hash is definitively neither paid nor in flight, and either its invoice cannot
    be paid any more (or not for long enough) or it is a keysend payout its payee refused
    (:func:`~owm_core.payments.keysend.is_keysend_refused`). Then: INVOICE (ask the payee's
    node, ``payee_pubkey``, for an invoice) for an asked invoice or a refused keysend; for a
    contributor's own invoice (no ``payee_pubkey``), KEYSEND when
    :func:`~owm_core.payments.keysend.choose_method` allows it for ``payee`` (the invoice's
    node: a bare node, keysend on), else INVOICE, which cannot be asked (the payout waits).
    A keysend payout recorded under another coordinator key (``keysend_hash``, the hash the
    current key derives for it, differs: :func:`rekeyable`) is KEYSEND: moved to that hash
    (:func:`keysend_renewed`), the old one kept and looked up before every send.
    """
    if looked_up is not None and looked_up.payment_hash != payment.payment_hash:
        raise InvalidValue("looked_up", "is the result of another payment hash")
    if payment.method is PayoutMethod.KEYSEND:
        if not is_keysend_refused(payment) and not rekeyable(payment, keysend_hash):
            return None
    elif not may_need_renewal(payment, expires_at, now):
        return None
    if payment.state is not PaymentState.IN_FLIGHT and not is_due(payment, now):
        return None
    if looked_up is not None and looked_up.status is not PaymentStatus.FAILED:
        return None
    if rekeyable(payment, keysend_hash):
        return PayoutMethod.KEYSEND
    if payment.method is PayoutMethod.KEYSEND or payment.payee_pubkey is not None:
        return PayoutMethod.INVOICE
    return choose_method(invoice_available=False, payee=payee, keysend_enabled=keysend)


def renewed(payment: RewardPayment, invoice: Invoice, now: int) -> RewardPayment:
    """``payment`` paying ``invoice`` (received ``now``) instead of its expired one: pending,
    the old hash kept in ``replaced_hashes``; InvalidValue (field ``invoice``) unless
    ``invoice`` is a new invoice for exactly the payment's amount, payable for at least
    ``MIN_PAYABLE_S`` (:func:`deadline`)."""
    if isinstance(now, bool) or not isinstance(now, int) or now < 0:
        raise InvalidValue("now", f"must be an integer ≥ 0, got {now!r}")
    if invoice.amount_msat != payment.amount_msat:
        raise InvalidValue(
            "invoice",
            f"is for {invoice.amount_msat} msat; the payout is exactly {payment.amount_msat} msat",
        )
    if _used_before(payment, invoice.payment_hash):
        raise InvalidValue("invoice", "is not a new invoice: its payment hash was used before")
    if not payable_until_late_enough(deadline(invoice, now), now):
        raise InvalidValue(
            "invoice", f"expires too soon; it must stay payable for at least {MIN_PAYABLE_S} s"
        )
    return _moved(
        payment, invoice.payment_hash, PayoutMethod.INVOICE, now,
        bolt11=invoice.bolt11, invoice_expires_at=deadline(invoice, now),
    )


def not_renewed(payment: RewardPayment, now: int, why: str) -> RewardPayment:
    """``payment`` failed (one more attempt counted, so the backoff grows: 5 s doubling to
    10 minutes) because it could not be renewed: its expired invoice got no new one, or its
    payee, having refused keysend, has handed in no invoice yet; then it stays
    ``keysend_refused`` (its error still says so), so it is never sent by keysend again."""
    tried = payment if payment.state is PaymentState.IN_FLIGHT else start_attempt(payment, now)
    if payment.method is PayoutMethod.KEYSEND:
        return fail(tried, now, f"{KEYSEND_REFUSED}; {WAITING_FOR_INVOICE}: {why}")
    return fail(tried, now, f"{NOT_RENEWED}: {why}")


def keysend_renewed(
    payment: RewardPayment, key: KeysendKey, payee_pubkey: str, now: int
) -> RewardPayment:
    """``payment`` paid by keysend to ``payee_pubkey`` for the same amount: pending, no
    invoice, the hash of the preimage ``key`` derives from its ``payment_id``, the old hash
    kept in ``replaced_hashes`` (and in ``replaced_keysend`` when it was a keysend hash);
    InvalidValue when that hash was used before by this payment. ``payment`` is a
    contributor's own invoice that expired unpaid (``payee_pubkey``: the invoice's payee node),
    or a keysend payout recorded under another coordinator key (its own payee node)."""
    if isinstance(now, bool) or not isinstance(now, int) or now < 0:
        raise InvalidValue("now", f"must be an integer ≥ 0, got {now!r}")
    payment_hash = key.payment_hash(payment.payment_id)
    if _used_before(payment, payment_hash):
        raise InvalidValue("payment_hash", "this payout was sent by keysend before")
    return _moved(
        payment, payment_hash, PayoutMethod.KEYSEND, now,
        bolt11=None, invoice_expires_at=None, payee_pubkey=payee_pubkey,
    )


def _used_before(payment: RewardPayment, payment_hash: str) -> bool:
    """Whether ``payment`` was ever sent, or meant to be, under ``payment_hash``."""
    return payment_hash == payment.payment_hash or payment_hash in payment.replaced_hashes


def _moved(
    payment: RewardPayment, payment_hash: str, method: PayoutMethod, now: int, **changes: Any
) -> RewardPayment:
    """``payment`` moved to ``payment_hash``, sent by ``method``: pending again with no error
    and no keysend refusal, its old hash kept (and looked up before every send, as a keysend
    attempt when it was one), plus ``changes`` (the new invoice, or its absence)."""
    return fields.evolve(
        payment,
        payment_hash=payment_hash,
        replaced_hashes=(*payment.replaced_hashes, payment.payment_hash),
        replaced_keysend=replaced_keysend_after(payment),
        keysend_refused=False,
        state=PaymentState.PENDING,
        last_error=None,
        updated_at=max(payment.updated_at, now),
        method=method,
        **changes,
    )


__all__ = [
    "NOT_RENEWED",
    "WAITING_FOR_INVOICE",
    "deadline",
    "keysend_renewed",
    "may_need_renewal",
    "not_renewed",
    "payable_until_late_enough",
    "rekeyable",
    "renewal",
    "renewed",
]
