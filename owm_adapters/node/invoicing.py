"""The node hands its own invoices to the coordinator, so that rewards reach nodes on real
Lightning networks (SRS-LN-04).

:class:`PayoutInvoicer` runs in the daemon (thread ``owm-invoices``) when ``[lightning]
backend`` names the node's Lightning node (``lnd``, ``cln``, or ``embedded`` on a devnet).
Every ``invoice_poll_s`` it sends a signed :class:`~owm_core.identity.envelopes.PayoutQuery`
(gRPC ``PendingPayouts``), asks its Lightning node — through the Lightning port's
``create_invoice`` — for an invoice of exactly each pending amount, and hands each in as a
signed :class:`~owm_core.identity.envelopes.PayoutInvoice` (``SubmitInvoice``). The coordinator
checks
amount, payee and expiry before the invoice enters its payment outbox; a refusal is reported
with the coordinator's reason (for example a Lightning node that is not the one registered in
``[lightning] node_uri``). Only invoice rights are needed on the Lightning node (an LND invoice
macaroon); the node's keys stay with it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import attrs

from owm_adapters.node.context import note, poll_errors_logged
from owm_core.errors import InvalidValue, LightningUnavailable, SignatureInvalid
from owm_core.identity import envelopes
from owm_core.identity.envelopes import EnvelopeKind, PayoutInvoice, PayoutQuery
from owm_core.identity.keys import Identity
from owm_core.identity.payout_requests import verify_payout_request
from owm_core.nodes.control_plane import ControlPlaneRefused
from owm_core.payments.invoices import PendingPayout
from owm_core.ports.clock import Clock
from owm_core.ports.control_plane import ControlPlane
from owm_core.ports.lightning import Lightning

log = logging.getLogger(__name__)


@attrs.define
class PayoutInvoicer:
    """Answers the coordinator's pending payouts with this node's invoices (module docstring)."""

    identity: Identity
    control: ControlPlane
    lightning: Lightning
    clock: Clock
    coordinator_public_key: str = attrs.field(kw_only=True)
    """``[coordinator] public_key``: payouts it did not sign are not invoiced (SRS-SEC-01/03)."""
    registered_pubkey: str = attrs.field(default="", kw_only=True)
    say: Callable[[str], None] = attrs.field(default=print, kw_only=True)
    _entropy: Callable[[int], bytes] = attrs.field(default=os.urandom, kw_only=True)
    _checked_pubkey: bool = attrs.field(default=False, init=False)
    refused: dict[str, str] = attrs.field(factory=dict, init=False)
    """Payout ids whose invoice was refused (by the coordinator, or by the node's own Lightning
    node as it was made), with the reason."""

    def _sealed(self, body: PayoutQuery | PayoutInvoice, kind: EnvelopeKind) -> bytes:
        envelope = envelopes.seal(
            self.identity, kind, body, self._entropy(16), self.clock.now(),
            audience=self.coordinator_public_key,
        )
        return envelopes.to_bytes(envelope)

    def _check_pubkey(self) -> None:
        """Warn once when the Lightning node is not the one registered (its invoices would be
        refused: the coordinator pays only the registered node)."""
        if self._checked_pubkey or not self.registered_pubkey:
            return
        actual = self.lightning.node_pubkey()
        self._checked_pubkey = True
        if actual != self.registered_pubkey:
            note(self.say, f"warning: your Lightning node is {actual}, but [lightning] node_uri "
                 f"names {self.registered_pubkey}; the coordinator refuses invoices it did not "
                 "register", level=logging.WARNING, node_id=self.identity.node_id,
                 ln_pubkey=actual, registered_pubkey=self.registered_pubkey)

    def _fields(self, payout: PendingPayout) -> dict[str, Any]:
        """A payout's facts as structured log fields (``--log-format json``)."""
        return {"node_id": self.identity.node_id, "payment_id": payout.payment_id[:64],
                "amount_msat": payout.amount_msat}

    def poll_once(self) -> list[str]:
        """Hand in an invoice for every pending payout; the payment hashes handed in."""
        query = self._sealed(PayoutQuery(node_id=self.identity.node_id),
                             EnvelopeKind.PAYOUT_QUERY)
        pending = self.control.pending_payouts(query)
        if not pending:
            return []
        self._check_pubkey()
        handed: list[str] = []
        for payout in pending:
            try:
                verify_payout_request(
                    self.coordinator_public_key, payout, self.identity.public_key_hex
                )
            except SignatureInvalid:
                log.warning("payout %.40r not signed by the coordinator: not invoiced",
                            payout.payment_id, extra=self._fields(payout))
                continue
            try:  # the node's refusal of one invoice (its amount, say) holds back no other
                invoice = self.lightning.create_invoice(payout.amount_msat, payout.memo,
                                                        payout.expiry_s)  # fmt: skip
                payment_hash = self.control.submit_invoice(self._sealed(
                    PayoutInvoice(payment_id=payout.payment_id, bolt11=invoice.bolt11),
                    EnvelopeKind.PAYOUT_INVOICE,
                ))  # fmt: skip
            except (ControlPlaneRefused, InvalidValue) as exc:
                reason = exc.reason if isinstance(exc, ControlPlaneRefused) else exc.message
                if self.refused.get(payout.payment_id) != reason:
                    note(self.say, f"payout {payout.payment_id}: invoice refused: {reason}",
                         level=logging.WARNING, **self._fields(payout), error=reason)
                self.refused[payout.payment_id] = reason
                continue
            self.refused.pop(payout.payment_id, None)
            handed.append(payment_hash)
            note(self.say, f"payout {payout.payment_id}: invoice for {payout.amount_msat} msat "
                 f"handed in ({payment_hash[:16]}…)", **self._fields(payout),
                 payment_hash=payment_hash)
        return handed

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """Poll every ``interval_s`` until ``stop`` is set; failures are logged, never fatal."""
        node_id = self.identity.node_id
        while not stop.wait(interval_s):
            with poll_errors_logged(log, "payout invoices", node_id):
                try:
                    self.poll_once()
                except LightningUnavailable as exc:
                    log.warning("payout invoices: your Lightning node is unavailable: %s",
                                exc.message, extra={"node_id": node_id, "error": exc.message})


__all__ = ["PayoutInvoicer"]
