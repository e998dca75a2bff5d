"""Renewing the invoices of payouts that expired unpaid: the I/O side (SRS-LN-04, SRS-LN-08).

The rules are :mod:`owm_core.payments.renewals`; this is what the payment dispatcher
(:class:`~owm_adapters.services.payouts.PayoutDispatcher`) asks before each step of a payment:

* :meth:`InvoiceRenewals.prepare` looks the payment's hash up when the outbox rules want it
  (``needs_lookup``) *or* its invoice is about to expire (a keysend payout's, and each replaced
  keysend hash, with ``Lightning.lookup_keysend``; every other hash with ``lookup_payment``, by
  the hash alone); when :func:`renewal` says so it asks
  the payee for a new invoice of the same amount, the way the first was asked (the Lightning
  node ``payee_pubkey`` through the same ``InvoiceSource``, with the same memo), and stores it
  in place of the old one in one write (``PaymentRepository.replace_invoice``), with a log
  line naming both hashes (never a preimage or a BOLT11 string). Then it looks up every
  replaced hash, so that ``decide`` sends nothing while an old invoice is paid or in flight.
* A contributor's own invoice (it cannot be asked for again) that expired unpaid is paid by
  keysend to the invoice's payee node instead, when :func:`renewal` allows it (keysend on, that
  node no registered node's): the record is stored under the keysend hash in one write, the
  invoice's hash kept in ``replaced_hashes`` and looked up before every keysend attempt.
* A keysend payout whose payee refused keysend is renewed the other way: its invoice source is
  asked for an invoice (``payee_pubkey``, the same memo), and the record takes it in place of
  the keysend hash, which stays in ``replaced_hashes``.
* A keysend payout recorded under another coordinator key (the signing key was replaced) is
  moved to the hash this key derives, once its own hash is looked up and known failed or never
  sent (an attempt in flight is waited for, one that arrived is the payment); the old hash stays
  in ``replaced_hashes`` and ``replaced_keysend`` and is looked up before every send.
* A payee that gives no new invoice (its node offline, a contributor's own invoice that cannot
  be asked for again while keysend is off, a node that refused keysend and has handed in no
  invoice yet) leaves the record failed with the reason, retried after the outbox's backoff
  (5 s doubling to 10 minutes) like any other failure; nothing is lost.

Records stored before renewals existed (migration 0031) do not say how their invoice was asked
or when it expires; their BOLT11 string says both (its payee and description).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
import bolt11

from owm_core.errors import DomainError, InvalidValue, LightningUnavailable, StoreUnavailable
from owm_core.payments.keysend import KeysendKey, PayeeKind
from owm_core.payments.lightning import PaymentResult
from owm_core.payments.outbox import INVOICE_EXPIRY_S, needs_lookup, unavailable
from owm_core.payments.records import (
    PaymentState,
    PayoutMethod,
    RewardPayment,
    start_attempt,
)
from owm_core.payments.renewals import (
    NOT_RENEWED,
    WAITING_FOR_INVOICE,
    keysend_renewed,
    may_need_renewal,
    not_renewed,
    renewal,
    renewed,
)
from owm_core.ports.clock import Clock
from owm_core.ports.invoices import InvoiceSource
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

DEFAULT_BOLT11_EXPIRY_S = 3600
"""BOLT11's expiry when an invoice carries none."""


@attrs.frozen
class Prepared:
    """A payment ready for ``decide``: the record, the backend's answer for its hash and the
    answers for its replaced hashes. Or, instead, ``renewed`` (the record holds a new invoice,
    stored: take the next step with it) or ``refused`` (the treasury's node could not be asked,
    or the invoice expired and the payee gave no new one: the record is failed with why, to
    be stored)."""

    payment: RewardPayment
    looked_up: PaymentResult | None = None
    earlier: dict[str, PaymentResult | None] = attrs.field(factory=dict)
    renewed: bool = False
    refused: bool = False


def _no_checkpoint(_name: str) -> None:
    return None


def _with_origin(payment: RewardPayment) -> RewardPayment:
    """``payment`` with how its invoice was asked and when it expires; for a record stored
    before these were kept, as its BOLT11 string says (its payee and description; its expiry
    counted from the record's creation, as ``deadline`` counts it), unchanged when
    unreadable."""
    if payment.invoice_expires_at is not None or not payment.bolt11:
        return payment
    try:
        decoded = bolt11.decode(payment.bolt11)
        expiry = decoded.tags.get(bolt11.TagChar.expire_time)
        payee = decoded.tags.get(bolt11.TagChar.payee)
        memo = decoded.tags.get(bolt11.TagChar.description)
        return attrs.evolve(
            payment,
            invoice_expires_at=payment.created_at
            + (int(expiry.data) if expiry is not None else DEFAULT_BOLT11_EXPIRY_S),
            payee_pubkey=None if payee is None else str(payee.data),
            memo="" if memo is None else str(memo.data)[:640],
        )
    except Exception:  # the library raises many kinds for malformed input
        return payment


@attrs.define(eq=False)
class InvoiceRenewals:
    """Looks payments up and renews the invoices that expired unpaid (module docstring)."""

    repositories: Repositories
    lightning: Lightning
    invoices: InvoiceSource
    clock: Clock
    checkpoint: Callable[[str], None] = attrs.field(default=_no_checkpoint, kw_only=True)
    #: The coordinator's keysend key, and ``[lightning] keysend``: whether an expired
    #: contributor's own invoice may be paid by keysend to its node.
    keysend_key: KeysendKey | None = attrs.field(default=None, kw_only=True)
    keysend: bool = attrs.field(default=False, kw_only=True)
    #: Whether a Lightning node key is a registered node's (never paid by keysend, SRS-LN-04).
    network_node: Callable[[str], bool] = attrs.field(default=lambda _key: False, kw_only=True)

    def prepare(self, payment: RewardPayment, now: int) -> Prepared:
        """Look ``payment`` up and its replaced hashes, or renew its invoice if it expired
        unpaid. When the treasury's node cannot be asked, ``refused``: the record failed with
        a counted attempt, so the next one waits for a longer backoff (safe: a retry looks the
        hashes up first)."""
        try:
            return self._prepare(payment, now)
        except LightningUnavailable as exc:
            tried = payment
            if payment.state is not PaymentState.IN_FLIGHT:
                tried = start_attempt(payment, now)
            return Prepared(unavailable(tried, now, str(exc)), refused=True)

    def _prepare(self, payment: RewardPayment, now: int) -> Prepared:
        origin = _with_origin(payment)
        looked_up = None
        if needs_lookup(payment) or may_need_renewal(origin, origin.invoice_expires_at, now):
            looked_up = self._lookup(payment.payment_hash, payment.method is PayoutMethod.KEYSEND)
        how = renewal(origin, origin.invoice_expires_at, looked_up, now,
                      keysend=self.keysend and self.keysend_key is not None,
                      payee=self._payee_kind(origin, now), keysend_hash=self._keysend_hash(origin))
        if how is not None:
            payment = self._renew(origin, how, now)
            fresh = payment.payment_hash != origin.payment_hash
            return Prepared(payment, renewed=fresh, refused=not fresh)
        earlier = {} if payment.settled else {
            h: self._lookup(h, h in payment.replaced_keysend) for h in payment.replaced_hashes
        }
        return Prepared(payment, looked_up, earlier)

    def _lookup(self, payment_hash: str, keysend: bool) -> PaymentResult | None:
        """The backend's answer for one of a payout's hashes: a keysend hash as a keysend
        attempt (on CLN a read of every pay, so only for those), any other by hash alone."""
        if keysend:
            return self.lightning.lookup_keysend(payment_hash)
        return self.lightning.lookup_payment(payment_hash)

    def _keysend_hash(self, payment: RewardPayment) -> str | None:
        """The hash this coordinator's key derives for a keysend payout (None: not one, or no
        key): another than the record's when the record was made under another key."""
        if payment.method is not PayoutMethod.KEYSEND or self.keysend_key is None:
            return None
        return self.keysend_key.payment_hash(payment.payment_id)

    def _payee_kind(self, payment: RewardPayment, now: int) -> PayeeKind:
        """Whose node a contributor's own expired invoice pays: a registered node's (then never
        keysend, SRS-LN-04) or a bare node; asked of the store only for such an invoice."""
        if payment.payee_pubkey is not None or payment.method is not PayoutMethod.INVOICE:
            return PayeeKind.BARE_NODE
        if not may_need_renewal(payment, payment.invoice_expires_at, now):
            return PayeeKind.BARE_NODE
        payee = _invoice_payee(payment)
        if payee is None or self.network_node(payee):
            return PayeeKind.NETWORK_NODE
        return PayeeKind.BARE_NODE

    def _renew(self, payment: RewardPayment, how: PayoutMethod, now: int) -> RewardPayment:
        """The record with a new invoice (or, for a contributor's own invoice, by keysend),
        stored in place of the old one; or, when the payee gave none, the record failed with
        why (to be stored by the dispatcher)."""
        try:
            if how is PayoutMethod.KEYSEND:
                return self._to_keysend(payment, now)
            if payment.payee_pubkey is None:
                raise InvalidValue("payee", "handed in this invoice itself and must hand in a "
                                   "new one")
            invoice = self.invoices.invoice_for(
                payment.payee_pubkey, payment.amount_msat, payment.memo or "", INVOICE_EXPIRY_S
            )
            self.checkpoint("after-renewal-invoice")
            fresh = renewed(payment, invoice, self.clock.now())
        except StoreUnavailable:
            raise
        except DomainError as exc:  # the payee's node offline, or a wrong invoice
            failed = not_renewed(payment, now, str(exc))
            log.warning("payment %s (%s): %s; retried after its backoff", payment.payment_hash,
                        payment.payment_id, failed.last_error, extra=_fields(failed))
            return failed
        return self._replaced(payment, fresh, "renewed")

    def _to_keysend(self, payment: RewardPayment, now: int) -> RewardPayment:
        """A contributor's own expired invoice paid by keysend to its payee node instead; or a
        keysend payout made under another coordinator key moved to this key's hash."""
        moved = payment.method is PayoutMethod.KEYSEND
        payee = payment.payee_pubkey if moved else _invoice_payee(payment)
        if payee is None or self.keysend_key is None:
            raise InvalidValue("payee", "handed in this invoice itself and names no node to pay "
                               "by keysend")
        self.checkpoint("after-renewal-invoice")
        fresh = keysend_renewed(payment, self.keysend_key, payee, self.clock.now())
        how = "sent by keysend under this coordinator key" if moved else (
            "paid by keysend to its node")
        return self._replaced(payment, fresh, how)

    def _replaced(self, payment: RewardPayment, fresh: RewardPayment, how: str) -> RewardPayment:
        """Store ``fresh`` in place of ``payment`` in one write, and say so in the log."""
        stored = self.repositories.payments.replace_invoice(payment.payment_hash, fresh)
        what = "invoice expired unpaid"
        if payment.method is PayoutMethod.KEYSEND:
            what = ("keysend refused by the payee" if payment.keysend_refused
                    else "keysend recorded under another coordinator key, never paid")
        log.info("payment %s (%s): %s; %s as %s for %d msat", payment.payment_hash,
                 payment.payment_id, what, how, stored.payment_hash, stored.amount_msat,
                 extra={**_fields(stored), "replaced": payment.payment_hash})
        self.checkpoint("after-renewal")
        return stored


def _invoice_payee(payment: RewardPayment) -> str | None:
    """The node id in ``payment``'s BOLT11 (its payee tag, or the signer's recovered key);
    None when it has none or cannot be read."""
    if not payment.bolt11:
        return None
    try:
        payee = bolt11.decode(payment.bolt11).tags.get(bolt11.TagChar.payee)
    except Exception:  # the library raises many kinds for malformed input
        return None
    return None if payee is None else str(payee.data).lower()


def _fields(payment: RewardPayment) -> dict[str, object]:
    """A payment's facts as structured log fields (``--log-format json``)."""
    return {"payment_hash": payment.payment_hash, "payment_id": payment.payment_id,
            "task_id": payment.task_id, "node_id": payment.node_id,
            "amount_msat": payment.amount_msat, "state": payment.state.value}


__all__ = ["NOT_RENEWED", "WAITING_FOR_INVOICE", "InvoiceRenewals", "Prepared"]
