"""The Lightning port's values refuse impossible states at construction (money is integer)."""

from __future__ import annotations

import pytest

from owm_core.errors import InvalidValue
from owm_core.payments.lightning import Channel, Invoice, InvoiceState, PaymentResult, PaymentStatus

HASH = "ab" * 32
PUBKEY = "02" + "cd" * 32


def test_a_succeeded_payment_carries_its_preimage_and_a_failed_one_says_why() -> None:
    with pytest.raises(InvalidValue, match="preimage"):
        PaymentResult(payment_hash=HASH, status=PaymentStatus.SUCCEEDED)
    with pytest.raises(InvalidValue, match="failure_reason"):
        PaymentResult(payment_hash=HASH, status=PaymentStatus.FAILED)
    assert PaymentResult(payment_hash=HASH, status=PaymentStatus.IN_FLIGHT).preimage is None


def test_money_fields_refuse_floats_and_negative_amounts() -> None:
    with pytest.raises(InvalidValue, match="amount_msat"):
        Invoice(bolt11="lnbcrt1x", payment_hash=HASH, amount_msat=1.5, expiry_s=60,  # type: ignore[arg-type]
                created_at=0, state=InvoiceState.OPEN)
    with pytest.raises(InvalidValue, match="fee_msat"):
        PaymentResult(payment_hash=HASH, status=PaymentStatus.IN_FLIGHT, fee_msat=-1)
    with pytest.raises(InvalidValue, match="capacity_sat"):
        Channel(channel_id="1", channel_point=f"{HASH}:0", peer_pubkey=PUBKEY,
                capacity_sat=1e6, local_balance_sat=0, remote_balance_sat=0,  # type: ignore[arg-type]
                active=True)


def test_a_channel_names_its_peer_and_funding_outpoint_in_canonical_form() -> None:
    with pytest.raises(InvalidValue, match="peer_pubkey"):
        Channel(channel_id="1", channel_point=f"{HASH}:0", peer_pubkey=PUBKEY.upper(),
                capacity_sat=1, local_balance_sat=1, remote_balance_sat=0, active=True)
    with pytest.raises(InvalidValue, match="channel_point"):
        Channel(channel_id="1", channel_point=HASH, peer_pubkey=PUBKEY,
                capacity_sat=1, local_balance_sat=1, remote_balance_sat=0, active=True)


def test_an_invoice_knows_when_it_expires() -> None:
    invoice = Invoice(bolt11="lnbcrt1x", payment_hash=HASH, amount_msat=1, expiry_s=600,
                      created_at=1_000, state=InvoiceState.OPEN)
    assert invoice.expires_at == 1_600
