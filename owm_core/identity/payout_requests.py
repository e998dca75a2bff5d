"""Payout requests signed by the coordinator (SRS-SEC-01/03, SRS-LN-04).

A pending payout makes a node create an invoice on its own Lightning node, so, like a task
assignment (:mod:`owm_core.identity.assignments`), the node acts only on the ones its
coordinator signed. The coordinator key (``[coordinator] public_key``) signs::

    PAYOUT_REQUEST_DOMAIN ‖ canonical JSON {the payout's fields, recipient key}
"""

from __future__ import annotations

import attrs

from owm_core.identity import coordinator_signed
from owm_core.identity.keys import Identity
from owm_core.payments.invoices import PendingPayout

PAYOUT_REQUEST_DOMAIN = b"owm/payout-request/v1\x00"


def payout_statement(payout: PendingPayout, recipient_public_key_hex: str) -> bytes:
    """The bytes the coordinator signs for ``payout`` sent to ``recipient_public_key_hex``."""
    return coordinator_signed.statement(
        PAYOUT_REQUEST_DOMAIN,
        coordinator_signed.signed_fields(payout),
        recipient_public_key_hex,
        "payout",
    )


def sign_payout_request(
    coordinator: Identity, payout: PendingPayout, recipient_public_key_hex: str
) -> PendingPayout:
    """``payout`` carrying the coordinator's signature for its recipient node."""
    signature = coordinator.sign(payout_statement(payout, recipient_public_key_hex))
    return attrs.evolve(payout, signature=signature)


def verify_payout_request(
    coordinator_public_key_hex: str, payout: PendingPayout, recipient_public_key_hex: str
) -> None:
    """Raise :class:`SignatureInvalid` unless the coordinator signed ``payout`` for this node."""
    coordinator_signed.check(
        coordinator_public_key_hex,
        payout_statement(payout, recipient_public_key_hex),
        payout.signature,
        "payout request",
    )
