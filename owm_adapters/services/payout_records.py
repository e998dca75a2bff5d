"""The pending outbox record of a payout to a payee (SRS-LN-04, SRS-LN-08): what the payment
dispatcher (:class:`~owm_adapters.services.payouts.PayoutDispatcher`) stores before anything
is paid.

:class:`PayeeRecords` makes it from what the payee gave: a BOLT11 invoice for exactly the
amount (checked here: decodable, that amount, not expired), or a Lightning node's public key,
whose invoice is asked of the :class:`~owm_core.ports.invoices.InvoiceSource`; when that node
has no invoice to give (it runs no OWM node daemon) and is no registered node's (those are paid
by invoice, SRS-LN-04: their daemons hand invoices in) the payout is recorded as a keysend payout
instead (:meth:`~owm_adapters.services.payout_sending.PayoutSender.keysend_record`), with its
payment hash fixed by its payment id. Every record is stored pending, idempotent by its hash.

The invoice source has by then recorded the payout as waiting for an invoice
(``payout_requests``); a keysend record is stored in the same transaction that withdraws that
row (:func:`withdraw_request`), so no node is asked to invoice a payout that goes by keysend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
import bolt11

from owm_adapters.services.payout_sending import PayoutSender
from owm_core.errors import InvalidValue, LightningUnavailable
from owm_core.payments.invoices import payout_request_id
from owm_core.payments.keysend import PayeeKind
from owm_core.payments.lightning import Invoice, InvoiceState
from owm_core.payments.outbox import INVOICE_EXPIRY_S
from owm_core.payments.records import RewardPayment
from owm_core.payments.renewals import deadline
from owm_core.ports.clock import Clock
from owm_core.ports.invoices import InvoiceSource
from owm_core.ports.repositories import PaymentRepository, Repositories

log = logging.getLogger(__name__)


def _no_checkpoint(_name: str) -> None:
    return None


def payment_fields(payment: RewardPayment) -> dict[str, object]:
    """A payment's facts as structured log fields (``--log-format json``)."""
    return {"payment_hash": payment.payment_hash, "task_id": payment.task_id,
            "node_id": payment.node_id, "amount_msat": payment.amount_msat,
            "state": payment.state.value, "attempt": payment.attempts}


def withdraw_request(repositories: Repositories, payment: RewardPayment,
                     memo: str | None = None) -> bool:
    """Remove the "waiting for an invoice" row the invoice source keeps for ``payment`` (asked
    of ``payee_pubkey`` with ``memo``, the record's own by default), if any: the payout is paid
    another way or settled. Whether there was one."""
    if payment.payee_pubkey is None:
        return False
    text = payment.memo or "" if memo is None else memo
    request_id = payout_request_id(payment.payee_pubkey, payment.amount_msat, text)
    return repositories.payout_requests.withdraw(request_id)


@attrs.define(eq=False)
class PayeeRecords:
    """Makes and stores the pending record of one payout (module docstring)."""

    payments: PaymentRepository
    invoices: InvoiceSource
    clock: Clock
    sender: PayoutSender
    #: Whether a Lightning node key is a registered node's (paid by invoice only, SRS-LN-04).
    network_node: Callable[[str], bool] = attrs.field(default=lambda _key: False, kw_only=True)
    checkpoint: Callable[[str], None] = attrs.field(default=_no_checkpoint, kw_only=True)
    #: The whole store, to withdraw a keysend payout's waiting row with its record (optional).
    repositories: Repositories | None = attrs.field(default=None, kw_only=True)

    def to_payee(
        self, payee: str, payment_id: str, task_id: str, amount: int, memo: str
    ) -> RewardPayment:
        """The pending record of a payout to ``payee``: a BOLT11 invoice for exactly
        ``amount``; else a Lightning node's key, whose invoice is asked for; else, when that
        node has none to give and is not a registered node's, a keysend payout (if keysend
        is on; LightningUnavailable otherwise: the caller retries)."""
        if payee.strip().lower().startswith("ln"):
            invoice, node_id = _decoded(payee.strip(), amount, self.clock.now())
            return self.record(payment_id, task_id, node_id, invoice)
        pubkey = payee.strip().lower().partition("@")[0]
        try:
            issued = self.invoices.invoice_for(pubkey, amount, memo, INVOICE_EXPIRY_S)
        except LightningUnavailable as no_invoice:  # a bare node: keysend, if it is on
            kind = PayeeKind.NETWORK_NODE if self.network_node(pubkey) else PayeeKind.BARE_NODE
            keysend = self.sender.keysend_record(payment_id, task_id, pubkey, amount, memo,
                                                 self.clock.now(), kind)
            if keysend is None:
                raise
            log.info("payee %s… hands in no invoice (%s): paid by keysend", pubkey[:16],
                     no_invoice)
            return self.stored(keysend, memo)
        return self.record(payment_id, task_id, pubkey, issued, (pubkey, memo))

    def record(
        self, payment_id: str, task_id: str, node_id: str, invoice: Invoice,
        asked: tuple[str, str] | None = None,
    ) -> RewardPayment:
        """Store ``invoice``'s record; ``asked``: of which node, with which memo (renewals)."""
        self.checkpoint("after-invoice")
        now = self.clock.now()
        payment = RewardPayment(
            payment_id=payment_id,
            task_id=task_id,
            node_id=node_id,
            amount_msat=invoice.amount_msat,
            payment_hash=invoice.payment_hash,
            created_at=now,
            updated_at=now,
            bolt11=invoice.bolt11,
            payee_pubkey=None if asked is None else asked[0],
            memo=None if asked is None else asked[1][:640],
            invoice_expires_at=deadline(invoice, now),
        )
        return self.stored(payment)

    def stored(self, payment: RewardPayment, asked_memo: str | None = None) -> RewardPayment:
        """Store a new pending record (idempotent by its hash); a keysend one together with
        the withdrawal of its waiting row (asked with ``asked_memo``)."""
        if self.repositories is None or payment.payee_pubkey is None or asked_memo is None:
            stored = self.payments.upsert(payment)
        else:
            with self.repositories.atomic():
                stored = self.payments.upsert(payment)
                withdraw_request(self.repositories, stored, asked_memo)
        log.info("payment %s enqueued (%s): task %s node %s amount %d msat",
                 stored.payment_hash, stored.method.value, stored.task_id, stored.node_id,
                 stored.amount_msat, extra=payment_fields(stored))
        self.checkpoint("after-record")
        return stored


def _decoded(bolt11_text: str, amount_msat: int, now: int) -> tuple[Invoice, str]:
    """A contributor's invoice, checked: decodable, for exactly ``amount_msat``, not expired."""
    try:
        decoded = bolt11.decode(bolt11_text)
    except Exception:
        raise InvalidValue("payee", "not a valid BOLT11 invoice") from None
    if decoded.amount_msat is None or int(decoded.amount_msat) != amount_msat:
        raise InvalidValue("payee", f"the invoice must be for exactly {amount_msat} msat")
    hash_tag = decoded.tags.get(bolt11.TagChar.payment_hash)
    payee_tag = decoded.tags.get(bolt11.TagChar.payee)
    expiry_tag = decoded.tags.get(bolt11.TagChar.expire_time)
    expiry = int(expiry_tag.data) if expiry_tag is not None else 3600
    if decoded.date + expiry <= now:
        raise InvalidValue("payee", "the invoice has expired")
    if hash_tag is None or payee_tag is None:
        raise InvalidValue("payee", "the invoice lacks a payment hash or payee")
    invoice = Invoice(
        bolt11=bolt11_text.lower(),
        payment_hash=str(hash_tag.data),
        amount_msat=amount_msat,
        expiry_s=expiry,
        created_at=int(decoded.date),
        state=InvoiceState.OPEN,
    )
    return invoice, str(payee_tag.data)


__all__ = ["PayeeRecords", "payment_fields", "withdraw_request"]
