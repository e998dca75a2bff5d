"""Lightning values: invoices, payment results and channels as any Lightning node reports them.

Frozen, with money as integers (msat for payments and invoices, sat for channel capacities
and balances). The port that produces them is :class:`owm_core.ports.lightning.Lightning`
(SRS-LN-01, SRS-STAKE-01).
"""

from __future__ import annotations

import enum
import re
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue

CHANNEL_POINT = r"[0-9a-f]{64}:[0-9]+"
"""A funding outpoint ``txid:output_index`` (txid in the usual byte-reversed hex)."""


# ----------------------------------------------------------------- arguments of the port calls
# The adapters of :class:`owm_core.ports.lightning.Lightning` (LND, Core Lightning) check what
# they are asked for with these, so that every backend refuses a bad argument the same way.


def require_int(name: str, value: object, *, minimum: int) -> None:
    """Refuse ``value`` unless it is an ``int`` (not a bool) of at least ``minimum`` (0 or 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise InvalidValue(name, f"must be a {kind} integer")


def require_payment_hash(payment_hash: str) -> bytes:
    """The 32 bytes of ``payment_hash``, which must be 64 lower-case hex characters."""
    if not re.fullmatch(r"[0-9a-f]{64}", payment_hash):
        raise InvalidValue("payment_hash", "must be 64 lower-case hex characters")
    return bytes.fromhex(payment_hash)


def require_peer_pubkey(peer_pubkey: str) -> None:
    """Refuse a ``peer_pubkey`` that is not a Lightning node id (:data:`fields.LN_PUBKEY`)."""
    if not re.fullmatch(fields.LN_PUBKEY, peer_pubkey):
        raise InvalidValue("peer_pubkey", "must be a 33-byte compressed pubkey in hex")


def require_channel_point(channel_point: str) -> None:
    """Refuse a ``channel_point`` that is not ``txid:output_index`` (:data:`CHANNEL_POINT`)."""
    if not re.fullmatch(CHANNEL_POINT, channel_point):
        raise InvalidValue("channel_point", "must be txid:output_index")


class InvoiceState(enum.Enum):
    """Where an invoice stands: LND's four states (CLN's unpaid/paid/expired map onto them)."""

    OPEN = "open"
    SETTLED = "settled"
    CANCELED = "canceled"
    ACCEPTED = "accepted"


class PaymentStatus(enum.Enum):
    """Where an outgoing payment stands; IN_FLIGHT is neither success nor failure yet."""

    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


_HEX32 = fields.hex_digest(32)


def _optional_hex32(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _HEX32(_instance, attribute, value)


@attrs.frozen
class Invoice:
    """A BOLT11 invoice this node issued, with its current state (SRS-LN-07, SRS-API-03)."""

    bolt11: str = attrs.field(validator=fields.text(max_len=8_000, pattern=r"ln[0-9a-z]+"))
    payment_hash: str = attrs.field(validator=fields.hex_digest(32))
    amount_msat: int = attrs.field(validator=fields.money(minimum=1))
    expiry_s: int = attrs.field(validator=fields.integer(minimum=1))
    created_at: int = attrs.field(validator=fields.timestamp())
    state: InvoiceState = attrs.field(validator=fields.instance_of(InvoiceState))
    memo: str = attrs.field(default="", validator=fields.text(min_len=0, max_len=640))
    amount_paid_msat: int = attrs.field(default=0, validator=fields.money())
    settled_at: int | None = attrs.field(default=None)

    @property
    def expires_at(self) -> int:
        """POSIX second after which the invoice can no longer be paid."""
        return self.created_at + self.expiry_s


@attrs.frozen
class PaymentResult:
    """The outcome of paying one invoice, keyed by its payment hash (SRS-LN-04/05)."""

    payment_hash: str = attrs.field(validator=fields.hex_digest(32))
    status: PaymentStatus = attrs.field(validator=fields.instance_of(PaymentStatus))
    amount_msat: int = attrs.field(default=0, validator=fields.money())
    fee_msat: int = attrs.field(default=0, validator=fields.money())
    preimage: str | None = attrs.field(default=None, validator=_optional_hex32)
    failure_reason: str | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.status is PaymentStatus.SUCCEEDED and self.preimage is None:
            raise InvalidValue("preimage", "a succeeded payment carries its preimage")
        if self.status is PaymentStatus.FAILED and not self.failure_reason:
            raise InvalidValue("failure_reason", "a failed payment says why")


@attrs.frozen
class Channel:
    """An open channel as the local node sees it: the unit of stake (SRS-STAKE-01)."""

    channel_id: str = attrs.field(validator=fields.text(max_len=100))
    channel_point: str = attrs.field(validator=fields.text(max_len=80, pattern=CHANNEL_POINT))
    peer_pubkey: str = attrs.field(validator=fields.text(max_len=66, pattern=fields.LN_PUBKEY))
    capacity_sat: int = attrs.field(validator=fields.money())
    local_balance_sat: int = attrs.field(validator=fields.money())
    remote_balance_sat: int = attrs.field(validator=fields.money())
    active: bool = attrs.field(validator=fields.instance_of(bool))
    confirmations: int | None = attrs.field(default=None)
