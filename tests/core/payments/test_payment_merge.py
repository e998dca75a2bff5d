"""What a store keeps when a payment record is written again under its hash (SRS-LN-04)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import Conflict, InvalidTransition
from owm_core.payments.records import (
    PaymentState,
    RewardPayment,
    fail,
    merge,
    start_attempt,
    succeed,
)

T0 = 1_700_000_000
FIRST = RewardPayment(
    payment_id="pay-1",
    task_id="task-1",
    node_id="n" + "1" * 40,
    amount_msat=30_000,
    payment_hash="ab" * 32,
    created_at=T0,
    updated_at=T0,
)
_MOVES = {"start": start_attempt, "succeed": succeed, "fail": lambda p, now: fail(p, now, "boom")}


@st.composite
def histories(draw: st.DrawFn) -> list[RewardPayment]:
    """The successive records of one payment, each move taking at least a second."""
    history, now = [FIRST], T0
    for move in draw(st.lists(st.sampled_from(sorted(_MOVES)), max_size=12)):
        now += draw(st.integers(1, 1_000))
        try:
            history.append(_MOVES[move](history[-1], now))
        except InvalidTransition:
            continue
    return history


def _progress(payment: RewardPayment) -> tuple[bool, int, int]:
    return (payment.state is PaymentState.SUCCEEDED, payment.attempts, payment.updated_at)


@given(history=histories(), data=st.data())
def test_merging_never_moves_a_payment_back_in_its_lifecycle(
    history: list[RewardPayment], data: st.DataObject
) -> None:
    stored = data.draw(st.sampled_from(history))
    incoming = data.draw(st.sampled_from(history))
    kept = merge(stored, incoming)
    assert kept in (stored, incoming)
    assert _progress(kept) == max(_progress(stored), _progress(incoming))


@given(history=histories(), data=st.data())
def test_merging_never_changes_what_is_owed_nor_the_hash(
    history: list[RewardPayment], data: st.DataObject
) -> None:
    stored = data.draw(st.sampled_from(history))
    kept = merge(stored, data.draw(st.sampled_from(history)))
    names = ("payment_id", "task_id", "node_id", "amount_msat", "payment_hash", "created_at")
    assert all(getattr(kept, n) == getattr(stored, n) for n in names)


@given(history=histories(), data=st.data())
def test_merging_is_idempotent(history: list[RewardPayment], data: st.DataObject) -> None:
    stored = data.draw(st.sampled_from(history))
    incoming = data.draw(st.sampled_from(history))
    assert merge(stored, stored) == stored
    once = merge(stored, incoming)
    assert merge(once, incoming) == once


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("payment_id", "pay-2"),
        ("task_id", "task-2"),
        ("node_id", "n" + "2" * 40),
        ("amount_msat", 30_001),
        ("created_at", T0 - 1),
    ],
)
def test_another_payment_under_the_same_hash_is_a_conflict(name: str, value: object) -> None:
    with pytest.raises(Conflict, match=name):
        merge(FIRST, attrs.evolve(FIRST, **{name: value}))
