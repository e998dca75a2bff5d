"""The rule a node's invoice must pass before it enters the payment outbox (SRS-LN-04)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.payments.invoices import (
    MIN_PAYABLE_S,
    DecodedInvoice,
    PendingPayout,
    check_node_invoice,
    payout_request_id,
)

PAYEE = "02" + "ab" * 32
OTHER = "03" + "cd" * 32
NOW = 1_800_000_000


def pending(amount_msat: int = 5_000) -> PendingPayout:
    return PendingPayout(payment_id=payout_request_id(PAYEE, amount_msat, "m"),
                         payee_pubkey=PAYEE, amount_msat=amount_msat, memo="m",
                         expiry_s=86_400, requested_at=NOW)


def invoice(amount_msat: int | None = 5_000, payee: str = PAYEE, created_at: int = NOW,
            expiry_s: int = 86_400) -> DecodedInvoice:
    return DecodedInvoice(payment_hash="00" * 32, payee_pubkey=payee, amount_msat=amount_msat,
                          created_at=created_at, expiry_s=expiry_s)


@settings(max_examples=200)
@given(wanted=st.integers(1, 10**12), offered=st.integers(1, 10**12),
       payee=st.sampled_from([PAYEE, OTHER]), age=st.integers(0, 200_000))
def test_only_the_exact_amount_to_the_registered_node_while_payable_passes(
    wanted, offered, payee, age
):
    candidate = invoice(offered, payee, created_at=NOW - age)
    acceptable = (offered == wanted and payee == PAYEE
                  and candidate.expires_at >= NOW + MIN_PAYABLE_S)
    if acceptable:
        check_node_invoice(pending(wanted), candidate, NOW)
    else:
        with pytest.raises(InvalidValue) as refused:
            check_node_invoice(pending(wanted), candidate, NOW)
        assert refused.value.field == "bolt11"


def test_each_refusal_says_what_is_wrong():
    with pytest.raises(InvalidValue, match="names no amount; the payout is exactly 5000 msat"):
        check_node_invoice(pending(), invoice(None), NOW)
    with pytest.raises(InvalidValue, match="is for 4000 msat; the payout is exactly 5000 msat"):
        check_node_invoice(pending(), invoice(4_000), NOW)
    with pytest.raises(InvalidValue, match=f"payable to Lightning node {OTHER}"):
        check_node_invoice(pending(), invoice(payee=OTHER), NOW)
    with pytest.raises(InvalidValue, match="has expired"):
        check_node_invoice(pending(), invoice(created_at=NOW - 90_000), NOW)


def test_the_same_payout_asked_twice_has_the_same_id():
    assert payout_request_id(PAYEE, 5, "m") == payout_request_id(PAYEE, 5, "m")
    assert payout_request_id(PAYEE, 5, "m") != payout_request_id(PAYEE, 6, "m")
    assert len(payout_request_id(PAYEE, 5, "m")) == 32
