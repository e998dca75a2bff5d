"""Renewing a payout's invoice that expired unpaid (owm_core.payments.renewals), and the outbox
paying it exactly once across renewals and crashes (SRS-LN-04, SRS-LN-08)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import Conflict, InvalidValue
from owm_core.payments.invoices import MIN_PAYABLE_S
from owm_core.payments.lightning import Invoice, InvoiceState, PaymentResult, PaymentStatus
from owm_core.payments.outbox import (
    INVOICE_EXPIRY_S,
    RETRY_CAP_S,
    Action,
    after_pay,
    decide,
    is_due,
    needs_lookup,
    unavailable,
)
from owm_core.payments.records import (
    FORFEIT_ERROR,
    PaymentState,
    RewardPayment,
    check_replacement,
    fail,
    start_attempt,
)
from owm_core.payments.renewals import deadline, may_need_renewal, renewal, renewed

HASH = "ab" * 32
PREIMAGE = "cd" * 32
T0 = 1_800_000_000
AMOUNT = 5_000


def _payment(**changes: object) -> RewardPayment:
    base = RewardPayment(
        payment_id="rw-1", task_id="t1", node_id="n1", amount_msat=AMOUNT,
        payment_hash=HASH, created_at=T0, updated_at=T0, bolt11="lnbcrt1x",
        payee_pubkey="02" + "11" * 32, memo="OWM reward t1",
        invoice_expires_at=T0 + INVOICE_EXPIRY_S,
    )  # fmt: skip
    return attrs.evolve(base, **changes)  # type: ignore[arg-type]


def _result(status: PaymentStatus, payment_hash: str = HASH) -> PaymentResult:
    if status is PaymentStatus.SUCCEEDED:
        return PaymentResult(payment_hash, status, AMOUNT, 0, PREIMAGE)
    if status is PaymentStatus.FAILED:
        return PaymentResult(payment_hash, status, failure_reason="invoice expired")
    return PaymentResult(payment_hash, status)


def _invoice(n: int, created_at: int, amount: int = AMOUNT,
             expiry_s: int = INVOICE_EXPIRY_S) -> Invoice:
    return Invoice(bolt11=f"lnbcrt{n}x", payment_hash=f"{n:064x}", amount_msat=amount,
                   expiry_s=expiry_s, created_at=created_at, state=InvoiceState.OPEN)


# ------------------------------------------------------------------------------ the rule

_STATES = st.sampled_from(["pending", "in_flight", "failed", "succeeded", "forfeited"])
_LOOKUPS = st.sampled_from([None, *PaymentStatus])


def _in_state(state: str, attempts: int, updated_at: int) -> RewardPayment:
    payment = _payment(updated_at=updated_at)
    if state == "pending":
        return attrs.evolve(payment, attempts=attempts - 1)
    kind = PaymentState.FAILED if state == "forfeited" else PaymentState(state)
    error = FORFEIT_ERROR if state == "forfeited" else "no route"
    return attrs.evolve(payment, state=kind, attempts=attempts,
                        last_error=error if kind is PaymentState.FAILED else None)


@settings(max_examples=500)
@given(
    state=_STATES, attempts=st.integers(1, 30), since=st.integers(0, 3 * INVOICE_EXPIRY_S),
    expires_in=st.one_of(st.none(), st.integers(-INVOICE_EXPIRY_S, INVOICE_EXPIRY_S)),
    looked_up=_LOOKUPS,
)
def test_an_invoice_is_renewed_only_when_unpayable_owed_due_and_its_hash_neither_paid_nor_flying(
    state: str, attempts: int, since: int, expires_in: int | None,
    looked_up: PaymentStatus | None,
) -> None:
    payment = _in_state(state, attempts, T0 + 10)
    now = T0 + 10 + since
    expires_at = None if expires_in is None else max(0, now + expires_in)
    answer = None if looked_up is None else _result(looked_up)
    decided = renewal(payment, expires_at, answer, now) is not None
    unpayable = expires_at is not None and expires_at < now + MIN_PAYABLE_S
    owed = state not in ("succeeded", "forfeited")
    due = state == "in_flight" or is_due(payment, now)
    not_sent = looked_up in (None, PaymentStatus.FAILED)
    assert decided == (unpayable and owed and due and not_sent)
    if decided:  # never while the old payment may still arrive, never for a payable invoice
        assert expires_at is not None and expires_at < now + MIN_PAYABLE_S
        assert looked_up not in (PaymentStatus.SUCCEEDED, PaymentStatus.IN_FLIGHT)
        assert may_need_renewal(payment, expires_at, now)


def test_a_lookup_of_another_hash_is_refused() -> None:
    expired = _payment(invoice_expires_at=T0)
    with pytest.raises(InvalidValue):
        renewal(expired, T0, _result(PaymentStatus.FAILED, "ef" * 32), T0 + 10)


def test_the_deadline_counts_the_expiry_from_the_arrival_not_from_the_payees_clock() -> None:
    """A payee whose clock is a month behind ours hands in an invoice that looks expired by
    its own timestamp; it is payable for its whole expiry from when we got it."""
    invoice = _invoice(1, created_at=T0 - 40 * 24 * 3600)
    assert deadline(invoice, T0) == T0 + INVOICE_EXPIRY_S
    fresh = renewed(_payment(invoice_expires_at=T0), invoice, T0)
    assert fresh.invoice_expires_at == T0 + INVOICE_EXPIRY_S


def test_a_renewed_record_holds_the_new_invoice_and_keeps_the_old_hash() -> None:
    failed = fail(start_attempt(_payment(invoice_expires_at=T0), T0), T0, "invoice expired")
    fresh = renewed(failed, _invoice(7, T0 + 50), T0 + 60)
    assert fresh.payment_hash == f"{7:064x}" and fresh.bolt11 == "lnbcrt7x"
    assert fresh.replaced_hashes == (HASH,)
    assert fresh.state is PaymentState.PENDING and fresh.last_error is None
    assert fresh.attempts == failed.attempts and fresh.amount_msat == AMOUNT
    assert (fresh.payment_id, fresh.payee_pubkey, fresh.memo) == (
        failed.payment_id, failed.payee_pubkey, failed.memo)
    assert check_replacement(failed, fresh) == fresh
    again = renewed(fresh, _invoice(8, T0 + 70), T0 + 80)
    assert again.replaced_hashes == (HASH, f"{7:064x}")


def test_a_new_invoice_for_another_amount_an_old_hash_or_a_short_expiry_is_refused() -> None:
    expired = _payment(invoice_expires_at=T0)
    with pytest.raises(InvalidValue, match="exactly 5000 msat"):
        renewed(expired, _invoice(7, T0, amount=AMOUNT + 1), T0)
    with pytest.raises(InvalidValue, match="used before"):
        renewed(expired, attrs.evolve(_invoice(7, T0), payment_hash=HASH), T0)
    with pytest.raises(InvalidValue, match="expires too soon"):
        renewed(expired, _invoice(7, T0, expiry_s=MIN_PAYABLE_S - 1), T0)


def test_the_store_refuses_a_renewal_of_a_paid_record_or_one_that_drops_a_replaced_hash() -> None:
    expired = _payment(invoice_expires_at=T0)
    fresh = renewed(expired, _invoice(7, T0), T0)
    with pytest.raises(Conflict):
        check_replacement(attrs.evolve(expired, state=PaymentState.SUCCEEDED, attempts=1), fresh)
    with pytest.raises(Conflict):
        check_replacement(expired, attrs.evolve(fresh, replaced_hashes=()))
    with pytest.raises(Conflict):
        check_replacement(expired, attrs.evolve(fresh, node_id="n2"))


def test_a_record_never_lists_its_own_hash_or_one_hash_twice_as_replaced() -> None:
    with pytest.raises(InvalidValue):
        _payment(replaced_hashes=(HASH,))
    with pytest.raises(InvalidValue):
        _payment(replaced_hashes=("ef" * 32, "ef" * 32))
    with pytest.raises(InvalidValue):
        _payment(replaced_hashes=("not hex",))


def test_an_old_invoice_paid_after_all_is_the_payment_and_one_in_flight_is_waited_for() -> None:
    fresh = renewed(_payment(invoice_expires_at=T0), _invoice(7, T0), T0)
    paid = decide(fresh, None, T0 + 1, {HASH: _result(PaymentStatus.SUCCEEDED)})
    assert paid.action is Action.RECORD and paid.payment.settled
    waiting = decide(fresh, None, T0 + 1, {HASH: _result(PaymentStatus.IN_FLIGHT)})
    assert waiting.action is Action.NOTHING
    sent = decide(fresh, None, T0 + 1, {HASH: _result(PaymentStatus.FAILED)})
    assert sent.action is Action.SEND
    with pytest.raises(InvalidValue):  # the old hashes must all be answered for
        decide(fresh, None, T0 + 1)
    with pytest.raises(InvalidValue):
        decide(fresh, None, T0 + 1, {HASH: _result(PaymentStatus.FAILED, "ef" * 32)})


# ------------------------------------------------------- model-based exactly-once, renewals

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["step", "crash-after-invoice", "crash-after-renewal", "crash-before-pay",
                         "crash-after-pay", "resolve", "tick", "month", "payee-offline"]),
        st.sampled_from(["ok", "fail", "in-flight", "down"]),
    ),
    max_size=60,
)


@attrs.define
class NonIdempotentNetwork:
    """The treasury's node WITHOUT idempotency (every pay call is a new send) and the payee's
    node, which issues invoices; an invoice is refused once expired, but an HTLC sent before
    its expiry may still resolve afterwards (the case renewals must not pay twice)."""

    sends: dict[str, list[PaymentStatus]] = attrs.field(factory=dict)
    expires: dict[str, int] = attrs.field(factory=dict)
    issued: int = 0
    down: bool = False
    payee_offline: bool = False

    def lookup(self, payment_hash: str) -> PaymentResult | None:
        sent = self.sends.get(payment_hash)
        return _result(sent[-1], payment_hash) if sent else None

    def live(self) -> int:
        return sum(s is not PaymentStatus.FAILED for sent in self.sends.values() for s in sent)

    def succeeded(self) -> int:
        return sum(sent.count(PaymentStatus.SUCCEEDED) for sent in self.sends.values())

    def resolve(self, arrived: bool) -> None:
        """Every payment in flight arrives (or fails)."""
        for sent in self.sends.values():
            if sent[-1] is PaymentStatus.IN_FLIGHT:
                sent[-1] = PaymentStatus.SUCCEEDED if arrived else PaymentStatus.FAILED

    def issue(self, now: int) -> Invoice:
        self.issued += 1
        invoice = _invoice(self.issued + 100, now)
        self.expires[invoice.payment_hash] = invoice.expires_at
        return invoice


def looked_up_first(stored: RewardPayment, net: Any, now: int) -> PaymentResult | None:
    """The backend's answer for the record's hash, when payout_renewals asks for it."""
    if needs_lookup(stored) or may_need_renewal(stored, stored.invoice_expires_at, now):
        return net.lookup(stored.payment_hash)  # type: ignore[no-any-return]
    return None


def _renewal_step(stored: RewardPayment, net: NonIdempotentNetwork, now: int, op: str
                  ) -> tuple[RewardPayment, bool]:
    """What owm_adapters.services.payout_renewals does before a step; (record, go on)."""
    looked_up = looked_up_first(stored, net, now)
    if renewal(stored, stored.invoice_expires_at, looked_up, now) is None:
        return stored, True
    if net.payee_offline:
        tried = stored if stored.state is PaymentState.IN_FLIGHT else start_attempt(stored, now)
        return fail(tried, now, "no new invoice"), False
    invoice = net.issue(now)
    if op == "crash-after-invoice":
        return stored, False
    fresh = check_replacement(stored, renewed(stored, invoice, now))
    return fresh, op != "crash-after-renewal"


def prepared_send(
    stored: RewardPayment, net: Any, now: int, op: str,
    switch: Callable[[RewardPayment, Any, int, str], tuple[RewardPayment, bool]],
) -> tuple[RewardPayment, bool]:
    """A dispatcher step up to its send, as owm_adapters.services.payouts runs it, with
    ``switch`` for what payout_renewals does first: (record, whether it is sent now)."""
    if stored.state is not PaymentState.IN_FLIGHT and not is_due(stored, now):
        return stored, False
    if net.down:
        tried = stored if stored.state is PaymentState.IN_FLIGHT else start_attempt(stored, now)
        return unavailable(tried, now, "down"), False
    stored, go_on = switch(stored, net, now, op)
    if not go_on:
        return stored, False
    looked_up = net.lookup(stored.payment_hash) if needs_lookup(stored) else None
    earlier = {h: net.lookup(h) for h in stored.replaced_hashes}
    decision = decide(stored, looked_up, now, earlier)
    sent = decision.action is Action.SEND and op != "crash-before-pay"
    return decision.payment, sent


def _dispatch(stored: RewardPayment, net: NonIdempotentNetwork, now: int, op: str, outcome: str
              ) -> RewardPayment:
    """One dispatcher step as owm_adapters.services.payouts runs it, crashing where ``op`` says."""
    stored, sent = prepared_send(stored, net, now, op, _renewal_step)
    if not sent:
        return stored
    expired = net.expires.get(stored.payment_hash, 0) < now
    status = PaymentStatus.FAILED if expired else {
        "ok": PaymentStatus.SUCCEEDED, "fail": PaymentStatus.FAILED,
        "in-flight": PaymentStatus.IN_FLIGHT, "down": PaymentStatus.SUCCEEDED}[outcome]
    assert net.live() == 0, "sent while an earlier send succeeded or is in flight"
    net.sends.setdefault(stored.payment_hash, []).append(status)
    if op == "crash-after-pay":
        return stored
    return after_pay(stored, _result(status, stored.payment_hash), now)


@settings(max_examples=400, deadline=None)
@given(_OPS)
def test_renewals_never_pay_a_payout_twice_under_any_crash_interleaving(
    ops: list[tuple[str, str]],
) -> None:
    """Invoices expire (a month passes), the payee's node goes offline, the treasury's node
    goes down, the dispatcher crashes at every step of a renewal: at most one payment of the
    payout ever succeeds or is in flight, whichever invoice it pays, and once everything is
    healthy again the payout is paid exactly once."""
    net = NonIdempotentNetwork()
    first = net.issue(T0)
    stored = _payment(payment_hash=first.payment_hash, invoice_expires_at=first.expires_at)
    now = T0
    for op, outcome in ops:
        now += 1
        if op in ("tick", "month", "payee-offline"):
            now += INVOICE_EXPIRY_S if op == "month" else RETRY_CAP_S
            net.down = op == "tick" and outcome == "down"
            net.payee_offline = op == "payee-offline" and outcome != "ok"
            continue
        if op == "resolve":
            net.resolve(outcome == "ok")
            continue
        stored = _dispatch(stored, net, now, op, outcome)
        assert net.succeeded() <= 1
    net.down = net.payee_offline = False
    for _ in range(8):
        net.resolve(True)
        now += RETRY_CAP_S
        stored = _dispatch(stored, net, now, "step", "ok")
    assert stored.settled and net.succeeded() == 1
