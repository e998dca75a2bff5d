"""The reward outbox rules (owm_core.payments.outbox): backoff, due payments, decisions, amounts."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.payments.lightning import PaymentResult, PaymentStatus
from owm_core.payments.outbox import (
    RETRY_CAP_S,
    Action,
    after_pay,
    bounty_payment_id,
    decide,
    due_at,
    is_due,
    needs_lookup,
    retry_delay_s,
    reward_amount_msat,
    reward_payment_id,
    unavailable,
)
from owm_core.payments.records import PaymentState, RewardPayment, start_attempt
from owm_core.payments.rewards import task_reward_msat

HASH = "ab" * 32
PREIMAGE = "cd" * 32


def _payment(**changes: object) -> RewardPayment:
    base = RewardPayment(
        payment_id="rw-1", task_id="t1", node_id="n1", amount_msat=5_000,
        payment_hash=HASH, created_at=100, updated_at=100, bolt11="lnbcrt1x",
    )
    return attrs.evolve(base, **changes)  # type: ignore[arg-type]


def _result(status: PaymentStatus) -> PaymentResult:
    if status is PaymentStatus.SUCCEEDED:
        return PaymentResult(HASH, status, 5_000, 0, PREIMAGE)
    if status is PaymentStatus.FAILED:
        return PaymentResult(HASH, status, failure_reason="no route")
    return PaymentResult(HASH, status)


def test_the_backoff_doubles_from_five_seconds_and_is_capped_at_ten_minutes() -> None:
    assert [retry_delay_s(n) for n in range(0, 9)] == [0, 5, 10, 20, 40, 80, 160, 320, 600]
    assert retry_delay_s(10_000) == RETRY_CAP_S
    with pytest.raises(InvalidValue):
        retry_delay_s(-1)


def test_a_failed_payment_is_due_again_only_after_its_backoff() -> None:
    failed = _payment(state=PaymentState.FAILED, attempts=2, updated_at=1_000, last_error="x")
    assert due_at(failed) == 1_010
    assert not is_due(failed, 1_009)
    assert is_due(failed, 1_010)


def test_pending_and_in_flight_payments_are_due_at_once_and_paid_ones_never() -> None:
    assert is_due(_payment(), 100)
    assert is_due(_payment(state=PaymentState.IN_FLIGHT, attempts=1), 100)
    paid = _payment(state=PaymentState.SUCCEEDED, attempts=1)
    assert due_at(paid) is None and not is_due(paid, 10**9)


def test_a_new_payment_is_sent_without_a_lookup_after_being_marked_in_flight() -> None:
    payment = _payment()
    assert not needs_lookup(payment)
    decision = decide(payment, None, 120)
    assert decision.action is Action.SEND
    assert decision.payment.state is PaymentState.IN_FLIGHT
    assert decision.payment.attempts == 1


def test_an_in_flight_payment_that_the_backend_reports_paid_is_recorded_not_sent() -> None:
    in_flight = start_attempt(_payment(), 110)
    decision = decide(in_flight, _result(PaymentStatus.SUCCEEDED), 130)
    assert decision.action is Action.RECORD
    assert decision.payment.state is PaymentState.SUCCEEDED


def test_a_failed_record_whose_hash_arrived_after_all_is_recorded_paid() -> None:
    failed = _payment(state=PaymentState.FAILED, attempts=1, last_error="lightning unavailable")
    decision = decide(failed, _result(PaymentStatus.SUCCEEDED), 1_000)
    assert decision.action is Action.RECORD and decision.payment.settled
    assert decision.payment.last_error is None


def test_a_payment_still_in_flight_at_the_backend_is_waited_for() -> None:
    in_flight = start_attempt(_payment(), 110)
    assert decide(in_flight, _result(PaymentStatus.IN_FLIGHT), 130).action is Action.NOTHING
    failed = _payment(state=PaymentState.FAILED, attempts=1, last_error="x")
    moved = decide(failed, _result(PaymentStatus.IN_FLIGHT), 1_000)
    assert moved.action is Action.RECORD and moved.payment.state is PaymentState.IN_FLIGHT


def test_an_in_flight_payment_the_backend_never_saw_is_sent_again_as_a_new_attempt() -> None:
    in_flight = start_attempt(_payment(), 110)
    decision = decide(in_flight, None, 130)
    assert decision.action is Action.SEND and decision.payment.attempts == 2


def test_the_answer_of_pay_moves_the_record() -> None:
    in_flight = start_attempt(_payment(), 110)
    assert after_pay(in_flight, _result(PaymentStatus.SUCCEEDED), 120).settled
    failed = after_pay(in_flight, _result(PaymentStatus.FAILED), 120)
    assert failed.state is PaymentState.FAILED and failed.last_error == "no route"
    assert after_pay(in_flight, _result(PaymentStatus.IN_FLIGHT), 120) == in_flight
    down = unavailable(in_flight, 120, "connection refused")
    assert down.state is PaymentState.FAILED
    assert down.last_error == "lightning unavailable: connection refused"


def test_a_lookup_of_another_hash_is_refused() -> None:
    other = PaymentResult("ef" * 32, PaymentStatus.SUCCEEDED, 1, 0, PREIMAGE)
    with pytest.raises(InvalidValue):
        decide(start_attempt(_payment(), 110), other, 120)


def test_the_reward_is_price_times_reliability_times_stake_bonus_rounded_down() -> None:
    assert reward_amount_msat(10_000, 1_000_000, 10_000) == 10_000
    assert reward_amount_msat(10_000, 500_000, 11_000) == 5_500
    assert reward_amount_msat(3, 333_333, 10_000) == 0


@given(price=st.integers(0, 10**15), reliability=st.integers(0, 1_000_000),
       bonus=st.integers(0, 50_000))
def test_a_reward_never_exceeds_the_price_the_escrow_funded(
    price: int, reliability: int, bonus: int
) -> None:
    reward = reward_amount_msat(price, reliability, bonus)
    assert 0 <= reward <= price
    if bonus <= 10_000:  # no bonus above 1×: the cap never bites
        assert reward == task_reward_msat(price, reliability, bonus)


def test_payment_ids_are_deterministic_and_distinct_per_reward() -> None:
    assert reward_payment_id("t1", "n1") == reward_payment_id("t1", "n1")
    assert reward_payment_id("t1", "n1") != reward_payment_id("t1", "n2")
    assert reward_payment_id("t1", "n1") != bounty_payment_id("t1")
    assert len(reward_payment_id("x" * 128, "y" * 128)) <= 128


# --------------------------------------------------------------------- model-based exactly-once

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["step", "crash-before-store", "crash-before-pay", "crash-after-pay",
                         "resolve", "tick"]),
        st.sampled_from(["ok", "fail", "in-flight", "down"]),
    ),
    max_size=60,
)


@attrs.define
class _Backend:
    """A Lightning node WITHOUT idempotency: every pay call is a new send (the worst case)."""

    sends: list[PaymentStatus] = attrs.field(factory=list)
    down: bool = False

    def lookup(self) -> PaymentResult | None:
        return _result(self.sends[-1]) if self.sends else None

    def live_sends(self) -> int:
        return sum(s is not PaymentStatus.FAILED for s in self.sends)


def _dispatch(stored: RewardPayment, backend: _Backend, now: int, op: str, outcome: str
              ) -> RewardPayment:
    """One dispatcher step as owm_adapters.services.payouts runs it, crashing where ``op`` says."""
    if not is_due(stored, now):
        return stored
    looked_up = None
    if needs_lookup(stored):
        if backend.down:
            tried = stored if stored.state is PaymentState.IN_FLIGHT else start_attempt(
                stored, now)
            return unavailable(tried, now, "down")
        looked_up = backend.lookup()
    decision = decide(stored, looked_up, now)
    if decision.action is Action.NOTHING:
        return stored
    if op == "crash-before-store":
        return stored
    stored = decision.payment
    if decision.action is Action.RECORD:
        return stored
    if op == "crash-before-pay":
        return stored
    if backend.down:
        return unavailable(stored, now, "down")
    status = {"ok": PaymentStatus.SUCCEEDED, "fail": PaymentStatus.FAILED,
              "in-flight": PaymentStatus.IN_FLIGHT, "down": PaymentStatus.SUCCEEDED}[outcome]
    assert backend.live_sends() == 0, "sent while an earlier send succeeded or is in flight"
    backend.sends.append(status)
    if op == "crash-after-pay":
        return stored
    return after_pay(stored, _result(status), now)


@settings(max_examples=300, deadline=None)
@given(_OPS)
def test_the_outbox_never_pays_a_hash_twice_under_any_crash_interleaving(
    ops: list[tuple[str, str]],
) -> None:
    """Crashes lose only what was not stored; the backend here is not idempotent, so every
    pay call the rules allow is a real send: at most one may ever succeed or be in flight."""
    stored = _payment()
    backend = _Backend()
    now = 100
    for op, outcome in ops:
        now += 1
        if op == "tick":
            now += RETRY_CAP_S
            backend.down = outcome == "down"
            continue
        if op == "resolve":
            if backend.sends and backend.sends[-1] is PaymentStatus.IN_FLIGHT:
                backend.sends[-1] = (PaymentStatus.SUCCEEDED if outcome == "ok"
                                     else PaymentStatus.FAILED)
            continue
        stored = _dispatch(stored, backend, now, op, outcome)
        assert backend.sends.count(PaymentStatus.SUCCEEDED) <= 1
        if stored.settled:
            assert backend.sends and backend.sends[-1] is PaymentStatus.SUCCEEDED
    # Afterwards the backend is healthy and in-flight sends resolve: the reward is paid once.
    backend.down = False
    for _ in range(6):
        if backend.sends and backend.sends[-1] is PaymentStatus.IN_FLIGHT:
            backend.sends[-1] = PaymentStatus.SUCCEEDED
        now += RETRY_CAP_S
        stored = _dispatch(stored, backend, now, "step", "ok")
    assert stored.settled
    assert backend.sends.count(PaymentStatus.SUCCEEDED) == 1
    assert stored.attempts >= 1
