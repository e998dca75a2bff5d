"""Invoices for payouts to nodes on real Lightning networks (SRS-LN-04).

The coordinator cannot make a node's LND or Core Lightning issue an invoice, and nodes of the
network are paid by invoice, not keysend (keysend is for bare nodes that hand in none,
:mod:`owm_core.payments.keysend`). So the node does it: the coordinator lists the payouts
waiting for an invoice (:class:`PendingPayout`, one per reward it wants to pay), the node's
daemon asks its own Lightning node for an invoice of exactly that amount and hands it in, signed
(:class:`~owm_core.identity.envelopes.PayoutInvoice`). Before the invoice may enter the payment
outbox it must pass :func:`check_node_invoice`: exactly the payout's amount, payable to the
Lightning node the node registered (``ln_node_uri``; the BOLT11 signature names it), and payable
long enough for the outbox to pay it. A node can therefore neither redirect its reward to
another node nor change its amount.

A payout is identified by :func:`payout_request_id` of what the dispatcher asks for (payee,
amount, memo), so asking again for the same reward finds the same pending payout.
Pure: the adapter decodes the BOLT11 string (``bolt11`` library) into :class:`DecodedInvoice`.
"""

from __future__ import annotations

import hashlib
import re

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue

MIN_PAYABLE_S = 600
"""An invoice handed in must stay payable at least this long (the outbox needs time)."""
MAX_MEMO_CHARS = 600
PAYOUT_ID = re.compile(r"[0-9a-f]{32}")
"""A payout's id (:func:`payout_request_id`): 32 lower-case hex digits."""


def payout_request_id(payee_pubkey: str, amount_msat: int, memo: str) -> str:
    """The 32-hex id of the payout the dispatcher asks an invoice for (stable across asks)."""
    text = f"owm/payout-request/v1\n{payee_pubkey}\n{amount_msat}\n{memo}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@attrs.frozen
class PendingPayout:
    """A payout waiting for the payee node's invoice: what the node must invoice, exactly."""

    payment_id: str = attrs.field(validator=fields.matches(PAYOUT_ID, "32 lower-case hex"))
    payee_pubkey: str = attrs.field(validator=fields.text(max_len=66, pattern=fields.LN_PUBKEY))
    amount_msat: int = attrs.field(validator=fields.money(minimum=1))
    memo: str = attrs.field(validator=fields.text(min_len=0, max_len=MAX_MEMO_CHARS))
    expiry_s: int = attrs.field(validator=fields.integer(minimum=MIN_PAYABLE_S))
    requested_at: int = attrs.field(validator=fields.timestamp())
    #: The coordinator's signature for the payee node (``owm_core.identity.payout_requests``);
    #: nodes invoice only payouts whose signature verifies under ``[coordinator] public_key``.
    signature: bytes = attrs.field(default=b"", repr=False)


@attrs.frozen
class DecodedInvoice:
    """What a BOLT11 invoice says, as read (and signature-checked) by the adapter."""

    payment_hash: str = attrs.field(validator=fields.hex_digest(32))
    payee_pubkey: str
    amount_msat: int | None
    created_at: int
    expiry_s: int

    @property
    def expires_at(self) -> int:
        """POSIX second after which the invoice can no longer be paid."""
        return self.created_at + self.expiry_s


def check_node_invoice(pending: PendingPayout, invoice: DecodedInvoice, now: int) -> None:
    """Raise InvalidValue (field ``bolt11``) unless ``invoice`` pays ``pending`` exactly: its
    amount, to the node's registered Lightning node, payable for at least MIN_PAYABLE_S more."""
    if invoice.amount_msat is None:
        raise InvalidValue(
            "bolt11", f"names no amount; the payout is exactly {pending.amount_msat} msat"
        )
    if invoice.amount_msat != pending.amount_msat:
        raise InvalidValue(
            "bolt11",
            f"is for {invoice.amount_msat} msat; the payout is exactly {pending.amount_msat} msat",
        )
    if invoice.payee_pubkey != pending.payee_pubkey:
        raise InvalidValue(
            "bolt11",
            f"is payable to Lightning node {invoice.payee_pubkey}, not to the node registered "
            f"for this payout ({pending.payee_pubkey})",
        )
    if invoice.expires_at < now + MIN_PAYABLE_S:
        state = "has expired" if invoice.expires_at <= now else "expires too soon"
        raise InvalidValue(
            "bolt11", f"{state}; it must stay payable for at least {MIN_PAYABLE_S} s"
        )


__all__ = [
    "MIN_PAYABLE_S",
    "DecodedInvoice",
    "PendingPayout",
    "check_node_invoice",
    "payout_request_id",
]
