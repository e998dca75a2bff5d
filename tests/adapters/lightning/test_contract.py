"""The Lightning contract: the embedded ledger, LND (gRPC/TLS/macaroons) and CLN (JSON-RPC socket)
adapters all behave the same way (SRS-LN-*, SRS-STAKE-01/05, SRS-SEC-13).

Each test runs three times: against the embedded ledger directly, against LndLightning talking
to a local LND gRPC server built from LND's own protos, and against ClnLightning talking to a
local server speaking CLN's JSON-RPC wire format; the two servers are backed by the ledger.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bolt11
import pytest
from coincurve import PrivateKey

from owm_core.errors import (
    ChannelNotFound,
    ForceCloseNotPermitted,
    InvalidValue,
    InvoiceNotFound,
)
from owm_core.payments.lightning import InvoiceState, PaymentStatus
from tests.adapters.lightning.lightning_contract import (
    BACKENDS,
    CAPACITY_SAT,
    PUSH_SAT,
    World,
    lightning_world,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    with lightning_world(request.param, tmp_path) as built:
        yield built


def _local_balance_sat(world: World, peer_pubkey: str) -> int:
    (channel,) = world.treasury.channels_with(peer_pubkey)
    return channel.local_balance_sat


def test_the_node_reports_its_identity_and_uri(world: World) -> None:
    pubkey = world.treasury.node_pubkey()
    assert re.fullmatch(r"0[23][0-9a-f]{64}", pubkey)
    assert world.treasury.node_uri() == f"{pubkey}@127.0.0.1:9735"


def test_an_invoice_is_a_real_bolt11_signed_by_the_node(world: World) -> None:
    invoice = world.treasury.create_invoice(21_000, "owm api query", 600)
    decoded = bolt11.decode(invoice.bolt11)
    assert decoded.amount_msat == invoice.amount_msat == 21_000
    assert decoded.payment_hash == invoice.payment_hash
    assert decoded.payee == world.treasury.node_pubkey()
    assert decoded.description == invoice.memo == "owm api query"
    assert decoded.expiry == invoice.expiry_s == 600
    assert invoice.state is InvoiceState.OPEN
    assert world.treasury.lookup_invoice(invoice.payment_hash) == invoice


def test_an_invoice_settles_when_paid_and_the_preimage_proves_it(world: World) -> None:
    invoice = world.treasury.create_invoice(50_000, "access for 24 h", 600)
    payment = world.peer.pay(invoice.bolt11, max_fee_msat=0, timeout_s=5)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.preimage is not None
    assert hashlib.sha256(bytes.fromhex(payment.preimage)).hexdigest() == invoice.payment_hash
    settled = world.treasury.wait_invoice(invoice.payment_hash, timeout_s=5)
    assert settled.state is InvoiceState.SETTLED
    assert settled.amount_paid_msat == 50_000
    assert settled.settled_at is not None


def test_waiting_on_an_unpaid_invoice_returns_it_open_after_the_timeout(world: World) -> None:
    invoice = world.treasury.create_invoice(1_000, "", 600)
    assert world.treasury.wait_invoice(invoice.payment_hash, timeout_s=0.2).state is (
        InvoiceState.OPEN
    )


def test_waiting_returns_as_soon_as_the_invoice_is_paid(world: World) -> None:
    invoice = world.treasury.create_invoice(3_000, "wait for me", 600)
    payer = threading.Timer(0.3, world.peer.pay, args=(invoice.bolt11, 0, 5))
    payer.start()
    started = time.monotonic()
    try:
        settled = world.treasury.wait_invoice(invoice.payment_hash, timeout_s=10)
    finally:
        payer.join()
    assert settled.state is InvoiceState.SETTLED
    assert time.monotonic() - started < 5


def test_looking_up_an_unknown_invoice_raises_invoice_not_found(world: World) -> None:
    with pytest.raises(InvoiceNotFound):
        world.treasury.lookup_invoice("ab" * 32)


def test_paying_a_peer_moves_the_channel_balance_and_returns_the_preimage(world: World) -> None:
    peer_pubkey = world.peer.node_pubkey()
    before = _local_balance_sat(world, peer_pubkey)
    invoice = world.peer.create_invoice(30_000_000, "reward for task 7", 600)
    result = world.treasury.pay(invoice.bolt11, max_fee_msat=10_000, timeout_s=10)
    assert result.status is PaymentStatus.SUCCEEDED
    assert result.payment_hash == invoice.payment_hash
    assert result.amount_msat == 30_000_000 and result.fee_msat == 0
    assert result.preimage is not None
    assert hashlib.sha256(bytes.fromhex(result.preimage)).hexdigest() == invoice.payment_hash
    assert _local_balance_sat(world, peer_pubkey) == before - 30_000
    assert world.peer.lookup_invoice(invoice.payment_hash).state is InvoiceState.SETTLED
    assert world.treasury.lookup_payment(invoice.payment_hash) == result


def test_paying_the_same_invoice_twice_pays_only_once(world: World) -> None:
    peer_pubkey = world.peer.node_pubkey()
    before = _local_balance_sat(world, peer_pubkey)
    invoice = world.peer.create_invoice(5_000_000, "bounty", 600)
    first = world.treasury.pay(invoice.bolt11, max_fee_msat=1_000, timeout_s=10)
    second = world.treasury.pay(invoice.bolt11, max_fee_msat=1_000, timeout_s=10)
    assert first.status is second.status is PaymentStatus.SUCCEEDED
    assert second.preimage == first.preimage
    assert _local_balance_sat(world, peer_pubkey) == before - 5_000


def test_a_payment_with_no_route_fails_with_a_reason_and_can_be_retried(world: World) -> None:
    stranger = world.ledger.lightning(world.ledger.add_node("stranger"))
    invoice = stranger.create_invoice(10_000, "", 600)
    failed = world.treasury.pay(invoice.bolt11, max_fee_msat=10_000, timeout_s=5)
    assert failed.status is PaymentStatus.FAILED and failed.failure_reason
    assert failed.preimage is None
    world.ledger.open_channel(world.treasury.node_pubkey(), stranger.node_pubkey(), 100_000)
    retried = world.treasury.pay(invoice.bolt11, max_fee_msat=10_000, timeout_s=5)
    assert retried.status is PaymentStatus.SUCCEEDED


def test_a_routed_payment_pays_hop_fees_only_within_the_limit(world: World) -> None:
    invoice = world.far.create_invoice(2_000_000, "via the hub", 600)
    too_cheap = world.treasury.pay(invoice.bolt11, max_fee_msat=0, timeout_s=5)
    assert too_cheap.status is PaymentStatus.FAILED
    routed = world.treasury.pay(invoice.bolt11, max_fee_msat=5_000, timeout_s=5)
    assert routed.status is PaymentStatus.SUCCEEDED
    assert 0 < routed.fee_msat <= 5_000


def test_a_payment_never_attempted_is_not_found(world: World) -> None:
    assert world.treasury.lookup_payment("cd" * 32) is None


def test_an_undecodable_invoice_is_an_invalid_value(world: World) -> None:
    with pytest.raises(InvalidValue):
        world.treasury.pay("lnbcrt1notaninvoice", max_fee_msat=0, timeout_s=1)


def test_channels_with_a_peer_show_capacity_and_both_balances(world: World) -> None:
    (channel,) = world.treasury.channels_with(world.peer.node_pubkey())
    assert channel.peer_pubkey == world.peer.node_pubkey()
    assert channel.channel_point == world.stake_channel_point
    assert channel.capacity_sat == CAPACITY_SAT
    assert channel.remote_balance_sat == PUSH_SAT
    assert channel.local_balance_sat == CAPACITY_SAT - PUSH_SAT
    assert channel.active
    assert channel.channel_id
    assert channel.confirmations in (None, 6)
    nobody = world.ledger.lightning(world.ledger.add_node("nobody")).node_pubkey()
    assert world.treasury.channels_with(nobody) == []


def test_force_close_closes_the_stake_channel_and_returns_the_closing_txid(world: World) -> None:
    """Slashing force-closes through this one call (SRS-LN-12): LND's CloseChannel with force set,
    CLN's close with unilateraltimeout=1 over clnrest; the channel is closed unilaterally."""
    txid = world.treasury.force_close(world.stake_channel_point)
    assert re.fullmatch(r"[0-9a-f]{64}", txid)
    assert world.ledger.closed_channel(world.stake_channel_point) == (txid, True)
    assert world.treasury.channels_with(world.peer.node_pubkey()) == []


def test_force_close_without_the_force_close_credential_is_refused(world: World) -> None:
    with pytest.raises(ForceCloseNotPermitted):
        world.payment_only.force_close(world.stake_channel_point)
    assert world.ledger.closed_channel(world.stake_channel_point) is None
    assert len(world.treasury.channels_with(world.peer.node_pubkey())) == 1


def test_force_closing_an_unknown_channel_raises_channel_not_found(world: World) -> None:
    with pytest.raises(ChannelNotFound):
        world.treasury.force_close("ef" * 32 + ":0")


def test_an_invoice_that_expired_unpaid_cannot_be_paid(world: World) -> None:
    now = [1_900_000_000]
    world.ledger.clock = lambda: now[0]
    invoice = world.treasury.create_invoice(1_000, "", 60)
    now[0] += 61
    assert world.treasury.lookup_invoice(invoice.payment_hash).state is InvoiceState.CANCELED
    result = world.peer.pay(invoice.bolt11, max_fee_msat=0, timeout_s=1)
    assert result.status is PaymentStatus.FAILED


def test_a_signed_message_verifies_against_the_node_that_signed_it(world: World) -> None:
    signature = world.treasury.sign_message("owm register challenge 1234")
    assert re.fullmatch(r"[ybndrfg8ejkmcpqxot1uwisza345h769]{104}", signature)
    assert world.treasury.verify_message(
        "owm register challenge 1234", signature, world.treasury.node_pubkey()
    )


def test_a_signature_from_another_node_is_verified_as_that_node_only(world: World) -> None:
    """The peer's own embedded node signs; the adapter under test verifies (mutual scheme)."""
    signature = world.peer.sign_message("owm register challenge 5678")
    assert world.treasury.verify_message(
        "owm register challenge 5678", signature, world.peer.node_pubkey()
    )
    assert not world.treasury.verify_message(
        "owm register challenge 5678", signature, world.treasury.node_pubkey()
    )


def test_a_node_without_a_channel_is_verified_by_its_given_pubkey(world: World) -> None:
    """A stake channel may be private: verification must not depend on the gossip graph."""
    loner = world.ledger.lightning(world.ledger.add_node("loner"))
    signature = loner.sign_message("prove me")
    assert world.treasury.verify_message("prove me", signature, loner.node_pubkey())


@pytest.mark.parametrize("tamper", ["message", "signature", "garbage"])
def test_a_tampered_message_or_signature_does_not_verify(world: World, tamper: str) -> None:
    message = "owm register challenge 9"
    signature = world.treasury.sign_message(message)
    if tamper == "message":
        message += "0"
    elif tamper == "signature":
        flipped = "y" if signature[10] != "y" else "b"
        signature = signature[:10] + flipped + signature[11:]
    else:
        signature = "not a zbase32 signature!"
    assert not world.treasury.verify_message(message, signature, world.treasury.node_pubkey())


# ------------------------------------------------------------------ keysend (SRS-LN-08)


def _bare_node(world: World, capacity_sat: int = CAPACITY_SAT) -> str:
    """A Lightning node known only by its public key, with a channel from the treasury."""
    pubkey = PrivateKey().public_key.format(compressed=True).hex()
    world.ledger.open_channel(world.treasury.node_pubkey(), pubkey, capacity_sat)
    return pubkey


def test_keysend_pays_a_bare_node_without_an_invoice_and_is_found_by_its_key(
    world: World,
) -> None:
    bare = _bare_node(world)
    preimage = "11" * 32
    key = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
    result = world.treasury.keysend(bare, 7_000_000, preimage, max_fee_msat=1_000, timeout_s=5)
    assert result.status is PaymentStatus.SUCCEEDED
    assert result.payment_hash == key
    assert result.amount_msat == 7_000_000 and result.fee_msat == 0
    assert _local_balance_sat(world, bare) == CAPACITY_SAT - 7_000
    assert world.treasury.lookup_keysend(key) == result
    if world.backend != "cln":  # CLN's keysend plugin draws its own preimage
        assert result.preimage == preimage


def test_keysend_with_the_same_preimage_twice_pays_only_once(world: World) -> None:
    bare = _bare_node(world)
    first = world.treasury.keysend(bare, 2_000_000, "22" * 32, max_fee_msat=0, timeout_s=5)
    second = world.treasury.keysend(bare, 2_000_000, "22" * 32, max_fee_msat=0, timeout_s=5)
    assert first.status is second.status is PaymentStatus.SUCCEEDED
    assert second == first
    assert _local_balance_sat(world, bare) == CAPACITY_SAT - 2_000


def test_keysend_routes_over_hops_within_the_fee_limit(world: World) -> None:
    far = world.far.node_pubkey()
    too_cheap = world.treasury.keysend(far, 1_000_000, "33" * 32, max_fee_msat=0, timeout_s=5)
    assert too_cheap.status is PaymentStatus.FAILED and too_cheap.failure_reason
    routed = world.treasury.keysend(far, 1_000_000, "33" * 32, max_fee_msat=5_000, timeout_s=5)
    assert routed.status is PaymentStatus.SUCCEEDED
    assert 0 < routed.fee_msat <= 5_000


def test_a_node_that_refuses_keysend_fails_it_with_the_backends_reason(world: World) -> None:
    bare = _bare_node(world)
    world.ledger.refuse_keysend(bare)
    preimage = "44" * 32
    key = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
    failed = world.treasury.keysend(bare, 1_000_000, preimage, max_fee_msat=0, timeout_s=5)
    assert failed.status is PaymentStatus.FAILED and failed.preimage is None
    reason = failed.failure_reason or ""
    assert any(text in reason for text in (
        "incorrect payment details",  # embedded
        "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS",  # LND
        "WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS",  # CLN
    )), reason
    looked_up = world.treasury.lookup_keysend(key)
    assert looked_up is not None and looked_up.status is PaymentStatus.FAILED
    assert looked_up.payment_hash == key
    assert _local_balance_sat(world, bare) == CAPACITY_SAT


def test_a_keysend_never_attempted_is_not_found(world: World) -> None:
    _bare_node(world)
    world.treasury.keysend(world.peer.node_pubkey(), 1_000, "66" * 32, 0, 5)
    never = hashlib.sha256(bytes.fromhex("77" * 32)).hexdigest()
    assert world.treasury.lookup_keysend(never) is None


def test_keysend_lookups_find_each_attempt_under_its_own_key_among_others(world: World) -> None:
    """A treasury with many payments, by invoice and by keysend: each keysend is found under
    its key, with its own outcome, and a payment by invoice is found by its hash."""
    bare = _bare_node(world)
    invoice = world.peer.create_invoice(3_000, "by invoice", 3600)
    paid = world.treasury.pay(invoice.bolt11, max_fee_msat=0, timeout_s=5)
    keys = {}
    for digit in "89":
        preimage = digit * 64
        keys[digit] = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        world.treasury.keysend(bare, 4_000, preimage, max_fee_msat=0, timeout_s=5)
    world.ledger.refuse_keysend(bare)
    refused_key = hashlib.sha256(bytes.fromhex("aa" * 32)).hexdigest()
    world.treasury.keysend(bare, 4_000, "aa" * 32, max_fee_msat=0, timeout_s=5)
    for key in keys.values():
        found = world.treasury.lookup_keysend(key)
        assert found is not None and found.status is PaymentStatus.SUCCEEDED
        assert found.payment_hash == key and found.amount_msat == 4_000
    refused = world.treasury.lookup_keysend(refused_key)
    assert refused is not None and refused.status is PaymentStatus.FAILED
    assert world.treasury.lookup_payment(invoice.payment_hash) == paid


def test_a_keysend_key_rejects_what_is_not_a_payment_hash(world: World) -> None:
    with pytest.raises(InvalidValue):
        world.treasury.lookup_keysend("not a hash")


def test_keysend_with_no_route_fails_and_may_be_retried(world: World) -> None:
    stranger = PrivateKey().public_key.format(compressed=True).hex()
    failed = world.treasury.keysend(stranger, 1_000, "55" * 32, max_fee_msat=0, timeout_s=5)
    assert failed.status is PaymentStatus.FAILED
    world.ledger.open_channel(world.treasury.node_pubkey(), stranger, 100_000)
    retried = world.treasury.keysend(stranger, 1_000, "55" * 32, max_fee_msat=0, timeout_s=5)
    assert retried.status is PaymentStatus.SUCCEEDED


@pytest.mark.parametrize("preimage", ["", "zz" * 32, "ab" * 31, "AB" * 32])
def test_keysend_with_a_malformed_preimage_is_an_invalid_value(
    world: World, preimage: str
) -> None:
    with pytest.raises(InvalidValue):
        world.treasury.keysend(world.peer.node_pubkey(), 1_000, preimage, 0, 1)
