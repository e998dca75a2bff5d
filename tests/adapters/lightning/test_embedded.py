"""The embedded ledger's own guarantees: persistence, conservation of money, atomic and
idempotent payments under concurrency (SRS-LN-04/06)."""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
import threading
from pathlib import Path

import bolt11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.lightning.embedded import SimLedger
from owm_core.errors import InvalidValue
from owm_core.payments.lightning import InvoiceState, PaymentStatus


def test_state_survives_a_restart(tmp_path: Path) -> None:
    ledger = SimLedger(tmp_path / "ln.sqlite")
    treasury = ledger.add_node("treasury")
    node = ledger.add_node("node")
    channel = ledger.open_channel(treasury, node, 200_000)
    invoice = ledger.lightning("node").create_invoice(10_000_000, "reward", 600)
    paid = ledger.lightning("treasury").pay(invoice.bolt11, 0, 5)

    reopened = SimLedger(tmp_path / "ln.sqlite")
    assert reopened.add_node("treasury") == treasury
    again = reopened.lightning("treasury")
    assert again.lookup_payment(invoice.payment_hash) == paid
    assert again.pay(invoice.bolt11, 0, 5) == paid
    (stake,) = again.channels_with(node)
    assert stake.channel_point == channel.channel_point
    assert stake.local_balance_sat == 190_000
    assert reopened.lightning("node").lookup_invoice(invoice.payment_hash).state is (
        InvoiceState.SETTLED
    )
    fresh = reopened.lightning("node").create_invoice(1_000, "", 60)
    assert bolt11.decode(fresh.bolt11).payee == node


def test_a_deterministic_secret_key_gives_a_stable_node_identity(tmp_path: Path) -> None:
    first = SimLedger(tmp_path / "a.sqlite").add_node("t", secret_key=b"\x01" * 32)
    second = SimLedger(tmp_path / "b.sqlite").add_node("t", secret_key=b"\x01" * 32)
    assert first == second


def test_channels_refuse_impossible_amounts(tmp_path: Path) -> None:
    ledger = SimLedger(tmp_path / "ln.sqlite")
    a, b = ledger.add_node("a"), ledger.add_node("b")
    with pytest.raises(InvalidValue, match="push_sat"):
        ledger.open_channel(a, b, 1_000, push_sat=1_001)
    with pytest.raises(InvalidValue, match="capacity_sat"):
        ledger.open_channel(a, b, 0)
    with pytest.raises(InvalidValue, match="peer_pubkey"):
        ledger.open_channel(a, "02" + "zz" * 32, 1_000)


def test_concurrent_payments_of_one_invoice_pay_exactly_once(tmp_path: Path) -> None:
    ledger = SimLedger(tmp_path / "ln.sqlite")
    treasury, node = ledger.add_node("treasury"), ledger.add_node("node")
    ledger.open_channel(treasury, node, 100_000)
    invoice = ledger.lightning("node").create_invoice(7_000_000, "", 600)
    payer = ledger.lightning("treasury")
    results = []

    def pay() -> None:
        results.append(payer.pay(invoice.bolt11, 0, 5))

    threads = [threading.Thread(target=pay) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status for r in results} == {PaymentStatus.SUCCEEDED}
    assert len({r.preimage for r in results}) == 1
    (channel,) = payer.channels_with(node)
    assert channel.local_balance_sat == 93_000


amounts = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["a", "b", "c"]),
              st.integers(1, 400_000_000), st.integers(0, 50_000)),
    max_size=12,
)


@settings(max_examples=15, deadline=None)
@given(payments=amounts)
def test_payments_conserve_money_and_never_overdraw_a_channel(
    payments: list[tuple[str, str, int, int]],
) -> None:
    """Whatever is paid, fails or is retried, channel totals stay equal to capacities."""
    with tempfile.TemporaryDirectory() as directory:
        ledger = SimLedger(Path(directory) / "ln.sqlite")
        keys = {alias: ledger.add_node(alias) for alias in "abc"}
        ledger.open_channel(keys["a"], keys["b"], 500_000, push_sat=100_000)
        ledger.open_channel(keys["b"], keys["c"], 300_000)
        capacity = 800_000
        for payer, payee, amount_msat, max_fee in payments:
            invoice = ledger.lightning(payee).create_invoice(amount_msat, "", 600)
            result = ledger.lightning(payer).pay(invoice.bolt11, max_fee, 1)
            if result.status is PaymentStatus.SUCCEEDED:
                assert result.fee_msat <= max_fee
                assert hashlib.sha256(bytes.fromhex(result.preimage or "")).hexdigest() == (
                    invoice.payment_hash
                )
            else:
                assert result.failure_reason
            for pubkey in keys.values():
                for channel in ledger.channels_of(pubkey, None):
                    assert channel.local_balance_sat >= 0 and channel.remote_balance_sat >= 0
            with sqlite3.connect(ledger.path) as db:
                held, funded = db.execute(
                    "SELECT SUM(balance_a_msat + balance_b_msat), SUM(capacity_sat * 1000)"
                    " FROM sim_ln_channels"
                ).fetchone()
            assert held == funded == capacity * 1000
