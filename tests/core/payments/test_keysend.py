"""The keysend rules (SRS-LN-04, SRS-LN-08): which payouts go by keysend, and the preimage
derived per payout so that every retry sends the same payment hash."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.payments.keysend import (
    KeysendKey,
    PayeeKind,
    checked_preimage,
    choose_method,
    keysend_payment,
    payment_hash_of,
)
from owm_core.payments.records import PayoutMethod, RewardPayment

PUBKEY = "03" + "cd" * 32
payment_ids = st.text(min_size=1, max_size=128)
secrets = st.binary(min_size=32, max_size=64)


@given(st.booleans(), st.sampled_from(PayeeKind), st.booleans())
def test_keysend_is_chosen_only_for_a_bare_node_with_no_invoice_while_it_is_on(
    invoice_available: bool, payee: PayeeKind, enabled: bool
) -> None:
    method = choose_method(invoice_available=invoice_available, payee=payee,
                           keysend_enabled=enabled)
    expected_keysend = not invoice_available and payee is PayeeKind.BARE_NODE and enabled
    assert (method is PayoutMethod.KEYSEND) is expected_keysend


@given(st.booleans(), st.booleans())
def test_a_node_of_the_network_is_always_paid_by_invoice(available: bool, enabled: bool) -> None:
    assert choose_method(invoice_available=available, payee=PayeeKind.NETWORK_NODE,
                         keysend_enabled=enabled) is PayoutMethod.INVOICE


@given(secrets, payment_ids)
def test_a_payouts_preimage_is_the_same_every_time_and_hashes_to_its_payment_hash(
    secret: bytes, payment_id: str
) -> None:
    key, again = KeysendKey(secret), KeysendKey(bytes(secret))
    preimage = key.preimage(payment_id)
    assert preimage == again.preimage(payment_id)
    assert len(bytes.fromhex(preimage)) == 32
    assert key.payment_hash(payment_id) == hashlib.sha256(bytes.fromhex(preimage)).hexdigest()


@given(secrets, payment_ids, payment_ids)
def test_two_payouts_never_share_a_preimage(secret: bytes, first: str, second: str) -> None:
    key = KeysendKey(secret)
    assert (key.preimage(first) == key.preimage(second)) is (first == second)


@given(secrets, secrets, payment_ids)
def test_another_secret_gives_another_preimage(a: bytes, b: bytes, payment_id: str) -> None:
    assert (KeysendKey(a).preimage(payment_id) == KeysendKey(b).preimage(payment_id)) is (a == b)


def test_the_key_comes_from_a_signature_and_shows_nothing_of_its_secret() -> None:
    key = KeysendKey.from_signature(b"\x42" * 64)
    assert KeysendKey.from_signature(b"\x42" * 64).preimage("p") == key.preimage("p")
    assert KeysendKey.from_signature(b"\x43" * 64).preimage("p") != key.preimage("p")
    assert "42" not in repr(key) and repr(key) == "KeysendKey(<secret>)"
    with pytest.raises(InvalidValue):
        KeysendKey(b"short")
    with pytest.raises(InvalidValue):
        KeysendKey.from_signature(b"")


def test_a_keysend_record_names_its_payee_holds_no_invoice_and_checks_its_key() -> None:
    key = KeysendKey(b"\x01" * 32)
    payment = keysend_payment(key, payment_id="bn-1", task_id="bounty:b1", payee_pubkey=PUBKEY,
                              amount_msat=5_000, now=100, memo="OWM bounty")
    assert payment.method is PayoutMethod.KEYSEND and payment.bolt11 is None
    assert payment.payee_pubkey == payment.node_id == PUBKEY
    assert payment.payment_hash == key.payment_hash("bn-1")
    assert payment_hash_of(checked_preimage(key, payment)) == payment.payment_hash
    with pytest.raises(InvalidValue, match="another coordinator key"):
        checked_preimage(KeysendKey(b"\x02" * 32), payment)


@pytest.mark.parametrize("changes", [{"payee_pubkey": None}, {"bolt11": "lnbcrt1..."}])
def test_a_keysend_record_without_a_payee_or_with_an_invoice_is_refused(
    changes: dict[str, object],
) -> None:
    fields: dict[str, object] = dict(
        payment_id="bn-1", task_id="bounty:b1", node_id=PUBKEY, amount_msat=5_000,
        payment_hash="ab" * 32, created_at=1, updated_at=1, payee_pubkey=PUBKEY,
        method=PayoutMethod.KEYSEND,
    )
    fields.update(changes)
    with pytest.raises(InvalidValue):
        RewardPayment(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("preimage", ["", "ab" * 31, "AB" * 32, "zz" * 32, "ab" * 33])
def test_a_malformed_preimage_is_an_invalid_value(preimage: str) -> None:
    with pytest.raises(InvalidValue):
        payment_hash_of(preimage)
