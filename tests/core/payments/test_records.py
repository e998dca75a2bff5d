"""Reward payments: the outbox record's rules and the payment log line (SRS-LN-04, SRS-LN-05)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidTransition, InvalidValue
from owm_core.payments.records import (
    MAX_ERROR_LEN,
    AttemptOutcome,
    PaymentAttempt,
    PaymentState,
    RewardPayment,
    attempt_record,
    fail,
    start_attempt,
    succeed,
)

T0 = 1_700_000_000


def a_payment(**changes: object) -> RewardPayment:
    values: dict[str, object] = {
        "payment_id": "pay-1",
        "task_id": "task-1",
        "node_id": "n" + "1" * 40,
        "amount_msat": 30_000,
        "payment_hash": "ab" * 32,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(changes)
    return RewardPayment(**values)  # type: ignore[arg-type]


def test_a_new_payment_is_pending_and_untried() -> None:
    payment = a_payment()
    assert payment.state is PaymentState.PENDING
    assert payment.attempts == 0 and payment.last_error is None and not payment.settled


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount_msat", 0),
        ("amount_msat", 1.5),
        ("amount_msat", True),
        ("payment_hash", "AB" * 32),
        ("payment_hash", "ab" * 31),
        ("task_id", ""),
        ("created_at", -1),
        ("attempts", -1),
        ("bolt11", ""),
    ],
)
def test_a_payment_with_a_bad_field_is_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidValue) as caught:
        a_payment(**{field: value})
    assert caught.value.field == field


def test_times_cannot_run_backwards_and_a_tried_state_needs_an_attempt() -> None:
    with pytest.raises(InvalidValue, match="updated_at"):
        a_payment(updated_at=T0 - 1)
    with pytest.raises(InvalidValue, match="attempts"):
        a_payment(state=PaymentState.SUCCEEDED)


def test_a_payment_goes_pending_in_flight_failed_in_flight_succeeded() -> None:
    flying = start_attempt(a_payment(), T0 + 1)
    assert (flying.state, flying.attempts, flying.updated_at) == (PaymentState.IN_FLIGHT, 1, T0 + 1)
    failed = fail(flying, T0 + 2, "no route")
    assert (failed.state, failed.last_error) == (PaymentState.FAILED, "no route")
    done = succeed(start_attempt(failed, T0 + 3), T0 + 4)
    assert (done.state, done.attempts, done.last_error) == (PaymentState.SUCCEEDED, 2, None)
    assert done.settled


def test_a_succeeded_payment_can_never_be_attempted_again() -> None:
    done = succeed(start_attempt(a_payment(), T0), T0)
    with pytest.raises(InvalidTransition):
        start_attempt(done, T0 + 1)
    with pytest.raises(InvalidTransition):
        fail(done, T0 + 1, "late failure")
    with pytest.raises(InvalidTransition):
        succeed(a_payment(), T0)


def test_a_long_remote_error_is_cut_to_the_kept_length() -> None:
    failed = fail(start_attempt(a_payment(), T0), T0, "x" * 5_000)
    assert failed.last_error == "x" * MAX_ERROR_LEN


moves = st.lists(st.sampled_from(["start", "succeed", "fail"]), max_size=30)


@settings(max_examples=200)
@given(moves=moves, steps=st.lists(st.integers(-5, 100), min_size=30, max_size=30))
def test_any_sequence_of_moves_keeps_the_record_consistent(
    moves: list[str], steps: list[int]
) -> None:
    """Invariants: attempts count the starts, updated_at never goes back, success is final,
    a failure keeps its reason and a success clears it."""
    payment, now, starts = a_payment(), T0, 0
    for move, step in zip(moves, steps, strict=False):
        now = max(0, now + step)
        before = payment
        try:
            if move == "start":
                payment = start_attempt(payment, now)
                starts += 1
            elif move == "succeed":
                payment = succeed(payment, now)
            else:
                payment = fail(payment, now, "boom")
        except InvalidTransition:
            assert payment is before
        assert payment.attempts == starts
        assert payment.updated_at >= before.updated_at
        if before.settled:
            assert payment == before
        if payment.state is PaymentState.FAILED:
            assert payment.last_error is not None
        if payment.state in (PaymentState.PENDING, PaymentState.SUCCEEDED):
            assert payment.last_error is None


@given(outcome=st.sampled_from(AttemptOutcome), at=st.integers(0, 2**40))
def test_a_log_line_names_task_node_amount_time_and_outcome(
    outcome: AttemptOutcome, at: int
) -> None:
    failed = fail(start_attempt(a_payment(), T0), T0, "no route")
    line = attempt_record(failed, outcome, at)
    assert isinstance(line, PaymentAttempt)
    assert (line.task_id, line.node_id, line.amount_msat) == ("task-1", "n" + "1" * 40, 30_000)
    assert (line.at, line.outcome, line.payment_hash) == (at, outcome, "ab" * 32)
    assert line.error == ("no route" if outcome is AttemptOutcome.FAILED else None)
