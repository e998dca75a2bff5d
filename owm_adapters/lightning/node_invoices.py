"""Invoices handed in by the nodes themselves: the coordinator's InvoiceSource for nodes on real
Lightning networks (LND, Core Lightning; SRS-LN-01/04).

:class:`NodeInvoiceSource` implements :class:`owm_core.ports.invoices.InvoiceSource` for the
:class:`~owm_adapters.services.payouts.PayoutDispatcher`:

* ``invoice_for`` — returns the invoice the payee node handed in for this payout, if any. If
  there is none yet it first asks the ``fallback`` source (the embedded ledger on devnets: its
  simulated nodes issue invoices directly); otherwise it records a
  :class:`~owm_core.payments.invoices.PendingPayout` and raises ``LightningUnavailable``, so the
  dispatcher retries with its backoff — by then the node has usually handed one in.
* ``pending_for`` — the gRPC ``PendingPayouts`` call: a node's signed
  :class:`~owm_core.identity.envelopes.PayoutQuery` → the payouts waiting for its invoice.
* ``submit`` — the gRPC ``SubmitInvoice`` call: a node's signed
  :class:`~owm_core.identity.envelopes.PayoutInvoice`; the BOLT11 string is decoded with the
  ``bolt11``
  library (its signature names the payee) and must pass
  :func:`~owm_core.payments.invoices.check_node_invoice`: exactly the payout's amount, payable to
  the Lightning node the signer registered, not (about to be) expired. Otherwise InvalidValue
  naming ``bolt11`` says why, and the payout stays pending.

Both envelopes are verified and replay-guarded. Pending payouts and handed-in invoices are kept
in the store (``repositories.payout_requests``), so that with several coordinators on one
database (SRS-COORD-05) a node may ask any of them and hand its invoice in at any, and the one
that pays finds it; nothing is paid before its record is in the durable outbox.
"""

from __future__ import annotations

import logging
import threading

import attrs
import bolt11

from owm_core.coordination.wire import open_envelope
from owm_core.errors import InvalidValue, LightningUnavailable, NotFound
from owm_core.identity import envelopes
from owm_core.identity.envelopes import EnvelopeKind, PayoutInvoice, PayoutQuery, ReplayGuard
from owm_core.nodes.registry import Node
from owm_core.payments.invoices import (
    DecodedInvoice,
    PendingPayout,
    check_node_invoice,
    payout_request_id,
)
from owm_core.payments.lightning import Invoice, InvoiceState
from owm_core.ports.clock import Clock
from owm_core.ports.invoices import InvoiceSource
from owm_core.ports.repositories import PayoutRequestRepository, Repositories

log = logging.getLogger(__name__)

MAX_PENDING = 100_000
DEFAULT_BOLT11_EXPIRY_S = 3600
"""BOLT11's default when an invoice carries no expiry tag."""


def decode_bolt11(text: str) -> DecodedInvoice:
    """Read a BOLT11 invoice (signature checked, payee recovered); InvalidValue if unreadable."""
    try:
        decoded = bolt11.decode(text.strip())
    except Exception:  # the library raises many kinds for malformed input
        raise InvalidValue("bolt11", "is not a valid BOLT11 invoice") from None
    hash_tag = decoded.tags.get(bolt11.TagChar.payment_hash)
    payee_tag = decoded.tags.get(bolt11.TagChar.payee)
    expiry_tag = decoded.tags.get(bolt11.TagChar.expire_time)
    if hash_tag is None or payee_tag is None:
        raise InvalidValue("bolt11", "lacks a payment hash or a payee")
    amount = decoded.amount_msat
    return DecodedInvoice(
        payment_hash=str(hash_tag.data),
        payee_pubkey=str(payee_tag.data),
        amount_msat=None if amount is None else int(amount),
        created_at=int(decoded.date),
        expiry_s=int(expiry_tag.data) if expiry_tag is not None else DEFAULT_BOLT11_EXPIRY_S,
    )


@attrs.define(eq=False)
class NodeInvoiceSource:
    """Invoices handed in by payee nodes, with an optional fallback source (module docstring)."""

    repositories: Repositories
    clock: Clock
    #: This coordinator's public key: a node's queries and invoices are signed for it
    #: (SRS-SEC-03).
    coordinator_key: str = attrs.field(kw_only=True)
    fallback: InvoiceSource | None = attrs.field(default=None, kw_only=True)
    _guard: ReplayGuard = attrs.field(factory=ReplayGuard, kw_only=True)
    _max_pending: int = attrs.field(default=MAX_PENDING, kw_only=True)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    @property
    def _requests(self) -> PayoutRequestRepository:
        return self.repositories.payout_requests

    # -- the dispatcher's side -------------------------------------------------------------------

    def invoice_for(self, payee_pubkey: str, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        """The payee node's invoice for this payout; LightningUnavailable while it has none."""
        payment_id = payout_request_id(payee_pubkey, amount_msat, memo)
        now = self.clock.now()
        invoice = self._requests.take_invoice(payment_id)
        if invoice is not None and invoice.expires_at > now:
            return invoice
        if self.fallback is not None:
            try:
                return self.fallback.invoice_for(payee_pubkey, amount_msat, memo, expiry_s)
            except LightningUnavailable:
                pass
        self._requests.request(PendingPayout(
            payment_id=payment_id, payee_pubkey=payee_pubkey, amount_msat=amount_msat,
            memo=memo[:600], expiry_s=expiry_s, requested_at=now,
        ), keep=self._max_pending)
        raise LightningUnavailable(
            f"waiting for Lightning node {payee_pubkey[:16]}… to hand in an invoice of "
            f"{amount_msat} msat (payout {payment_id})"
        )

    # -- the node's side ---------------------------------------------------------------------

    def _signer_node(self, raw: bytes, kind: EnvelopeKind) -> tuple[Node, object]:
        envelope = open_envelope(raw, kind, "envelope", self.coordinator_key)
        body = envelopes.open_body(envelope)
        node = self.repositories.nodes.get(envelope.signer_node_id)
        if node is None:  # before the nonce: strangers cannot fill the guard (SRS-SEC-03)
            raise NotFound("no node is registered with this public key")
        with self._lock:
            self._guard.accept_registered(envelope, node.public_key, self.clock.now())
        return node, body

    def pending_for(self, query_envelope: bytes) -> list[PendingPayout]:
        """The payouts awaiting an invoice from the signer's registered Lightning node."""
        node, body = self._signer_node(query_envelope, EnvelopeKind.PAYOUT_QUERY)
        assert isinstance(body, PayoutQuery)
        if body.node_id != node.node_id:
            raise InvalidValue("node_id", "is not the node id of the envelope's signer")
        return list(self._requests.waiting_for(node.ln_node_uri.pubkey))

    def submit(self, invoice_envelope: bytes) -> tuple[str, Invoice]:
        """Accept a node's invoice for one pending payout, after checking it (module doc);
        the payout's id and the invoice."""
        node, body = self._signer_node(invoice_envelope, EnvelopeKind.PAYOUT_INVOICE)
        assert isinstance(body, PayoutInvoice)
        pending = self._requests.get(body.payment_id)
        if pending is None:
            raise NotFound(f"no payout {body.payment_id} awaits an invoice")
        if pending.payee_pubkey != node.ln_node_uri.pubkey:
            raise NotFound(f"no payout {body.payment_id} awaits an invoice from this node")
        now = self.clock.now()
        decoded = decode_bolt11(body.bolt11)
        check_node_invoice(pending, decoded, now)
        invoice = Invoice(
            bolt11=body.bolt11.strip().lower(),
            payment_hash=decoded.payment_hash,
            amount_msat=pending.amount_msat,
            expiry_s=decoded.expiry_s,
            created_at=decoded.created_at,
            state=InvoiceState.OPEN,
            memo=pending.memo,
        )
        self._requests.hand_in(body.payment_id, invoice)  # no longer listed: the node is done
        log.info("node %s handed in invoice %s for payout %s (%d msat)", node.node_id,
                 invoice.payment_hash, body.payment_id, invoice.amount_msat)
        return body.payment_id, invoice

    def pending(self) -> list[PendingPayout]:
        """Every payout awaiting an invoice (operators, metrics)."""
        return list(self._requests.waiting())


__all__ = ["NodeInvoiceSource", "decode_bolt11"]
