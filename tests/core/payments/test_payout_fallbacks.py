"""Falling back between a payout's invoice and keysend (SRS-LN-04, SRS-LN-08): a contributor's
own invoice that expired unpaid is paid by keysend to its node, a keysend its payee refuses goes
back to waiting for an invoice, and the outbox pays the payout exactly once across both switches
and any crash (owm_core.payments.renewals, owm_core.payments.keysend, owm_core.payments.outbox).
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import Conflict, InvalidValue
from owm_core.payments.keysend import (
    KEYSEND_REFUSED,
    KeysendKey,
    PayeeKind,
    is_keysend_refused,
    refuses_keysend,
)
from owm_core.payments.lightning import Invoice, InvoiceState, PaymentResult, PaymentStatus
from owm_core.payments.outbox import (
    INVOICE_EXPIRY_S,
    RETRY_CAP_S,
    after_pay,
    is_due,
    unavailable,
)
from owm_core.payments.records import (
    PaymentState,
    PayoutMethod,
    RewardPayment,
    check_replacement,
    fail,
    start_attempt,
    succeed,
)
from owm_core.payments.renewals import (
    NOT_RENEWED,
    keysend_renewed,
    may_need_renewal,
    not_renewed,
    rekeyable,
    renewal,
    renewed,
)
from tests.core.payments.test_renewals import (
    NonIdempotentNetwork,
    looked_up_first,
    prepared_send,
)

T0 = 1_800_000_000
AMOUNT = 7_000
NODE = "03" + "22" * 32
OWN_HASH = "ab" * 32
KEY = KeysendKey(b"\x09" * 32)
KEYS = (KEY, KeysendKey(b"\x0a" * 32), KeysendKey(b"\x0b" * 32))
"""The coordinator's keysend keys over time: its signing key replaced, and maybe back."""
LND_REFUSAL = "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS"
CLN_REFUSAL = "203: failed: WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS (reply from remote)"


def _own(**changes: object) -> RewardPayment:
    """A bounty paid to the contributor's own invoice (no ``payee_pubkey``: not askable)."""
    base = RewardPayment(
        payment_id="bn-1", task_id="bounty:b1", node_id=NODE, amount_msat=AMOUNT,
        payment_hash=OWN_HASH, created_at=T0, updated_at=T0, bolt11="lnbcrt1own",
        invoice_expires_at=T0 + INVOICE_EXPIRY_S,
    )  # fmt: skip
    return attrs.evolve(base, **changes)  # type: ignore[arg-type]


def _result(status: PaymentStatus, payment_hash: str, reason: str = "no route"
            ) -> PaymentResult:
    if status is PaymentStatus.SUCCEEDED:
        return PaymentResult(payment_hash, status, AMOUNT, 0, "cd" * 32)
    if status is PaymentStatus.FAILED:
        return PaymentResult(payment_hash, status, failure_reason=reason)
    return PaymentResult(payment_hash, status)


def _refused_keysend(now: int = T0 + 10) -> RewardPayment:
    sent = start_attempt(keysend_renewed(_own(), KEY, NODE, now), now)
    return after_pay(sent, _result(PaymentStatus.FAILED, sent.payment_hash, LND_REFUSAL), now)


# ---------------------------------------------------------------------- which failures refuse


@pytest.mark.parametrize("reason", [
    LND_REFUSAL, CLN_REFUSAL,
    "incorrect payment details: the recipient does not accept keysend payments",
    "Recipient 03ab reportedly does not support keysend payments, aborting",
    "WIRE_REQUIRED_NODE_FEATURE_MISSING", "keysend: no such feature",
])
def test_the_backends_ways_of_refusing_keysend_are_recognised(reason: str) -> None:
    assert refuses_keysend(reason)


@pytest.mark.parametrize("reason", [
    None, "", "FAILURE_REASON_NO_ROUTE", "FAILURE_REASON_TIMEOUT", "205: Could not find a route",
    "FAILURE_REASON_INSUFFICIENT_BALANCE", "lightning unavailable: connection refused",
])
def test_a_failure_to_route_is_not_a_refusal(reason: str | None) -> None:
    assert not refuses_keysend(reason)


def test_a_refused_keysend_is_marked_and_stays_marked_while_the_node_is_down() -> None:
    refused = _refused_keysend()
    assert refused.state is PaymentState.FAILED and is_keysend_refused(refused)
    assert refused.keysend_refused
    assert refused.last_error == f"{KEYSEND_REFUSED}: {LND_REFUSAL}"
    down = unavailable(start_attempt(refused, T0 + 20), T0 + 20, "connection refused")
    assert is_keysend_refused(down) and down.keysend_refused
    assert down.last_error == f"{KEYSEND_REFUSED}; lightning unavailable: connection refused"
    waiting = not_renewed(refused, T0 + 30, "no invoice yet")
    assert is_keysend_refused(waiting) and waiting.attempts == refused.attempts + 1
    assert waiting.keysend_refused


@given(
    error=st.one_of(st.none(), st.text(min_size=1, max_size=80),
                    st.just(KEYSEND_REFUSED), st.just(f"{KEYSEND_REFUSED}: {LND_REFUSAL}")),
    flag=st.booleans(), settled=st.booleans(),
)
def test_a_keysend_is_refused_by_its_records_field_whatever_its_error_says(
    error: str | None, flag: bool, settled: bool,
) -> None:
    """The refusal is a field of the record, not text inside its error: an error that merely
    begins like a refusal refuses nothing, and a refused payout stays refused whatever its
    last error says (only its payment ends it)."""
    keysend = keysend_renewed(_own(), KEY, NODE, T0 + 10)
    tried = start_attempt(keysend, T0 + 11)
    record = (succeed(tried, T0 + 12) if settled
              else fail(tried, T0 + 12, error or "payment failed"))
    record = attrs.evolve(record, keysend_refused=flag, last_error=None if settled else error)
    assert is_keysend_refused(record) is (flag and not settled)


def test_only_a_keysend_payout_can_be_refused_keysend() -> None:
    with pytest.raises(InvalidValue, match="keysend_refused"):
        _own(keysend_refused=True)


def test_an_invoice_payment_refused_for_its_details_is_not_a_keysend_refusal() -> None:
    sent = start_attempt(_own(), T0)
    failed = after_pay(sent, _result(PaymentStatus.FAILED, OWN_HASH, LND_REFUSAL), T0)
    assert failed.last_error == LND_REFUSAL and not is_keysend_refused(failed)


# ---------------------------------------------------------------------------------- the rule

_STATES = st.sampled_from(["pending", "in_flight", "failed", "succeeded"])
_LOOKUPS = st.sampled_from([None, *PaymentStatus])


@settings(max_examples=400)
@given(
    state=_STATES, attempts=st.integers(1, 20), since=st.integers(0, 2 * INVOICE_EXPIRY_S),
    looked_up=_LOOKUPS, keysend=st.booleans(), network=st.booleans(),
)
def test_an_own_invoice_goes_by_keysend_only_when_expired_owed_due_unsent_bare_and_on(
    state: str, attempts: int, since: int, looked_up: PaymentStatus | None, keysend: bool,
    network: bool,
) -> None:
    kind = PaymentState(state)
    payment = _own(updated_at=T0 + 10, state=kind,
                   attempts=attempts - (kind is PaymentState.PENDING),
                   last_error="no route" if kind is PaymentState.FAILED else None)
    now = T0 + 10 + since
    answer = None if looked_up is None else _result(looked_up, OWN_HASH)
    payee = PayeeKind.NETWORK_NODE if network else PayeeKind.BARE_NODE
    how = renewal(payment, payment.invoice_expires_at, answer, now, keysend=keysend, payee=payee)
    switch = (
        may_need_renewal(payment, payment.invoice_expires_at, now)
        and (kind is PaymentState.IN_FLIGHT or is_due(payment, now))
        and looked_up in (None, PaymentStatus.FAILED)
    )
    if not switch:
        assert how is None
    elif keysend and not network:
        assert how is PayoutMethod.KEYSEND
    else:
        assert how is PayoutMethod.INVOICE  # not askable: the adapter leaves it waiting


@settings(max_examples=300)
@given(since=st.integers(0, 3 * RETRY_CAP_S), looked_up=_LOOKUPS, refused=st.booleans())
def test_a_keysend_goes_back_to_an_invoice_only_when_refused_due_and_its_hash_failed(
    since: int, looked_up: PaymentStatus | None, refused: bool,
) -> None:
    sent = start_attempt(keysend_renewed(_own(), KEY, NODE, T0), T0)
    reason = LND_REFUSAL if refused else "FAILURE_REASON_NO_ROUTE"
    failed = after_pay(sent, _result(PaymentStatus.FAILED, sent.payment_hash, reason), T0)
    now = T0 + since
    answer = None if looked_up is None else _result(looked_up, sent.payment_hash)
    how = renewal(failed, None, answer, now, keysend=True)
    expected = refused and is_due(failed, now) and looked_up in (None, PaymentStatus.FAILED)
    assert how is (PayoutMethod.INVOICE if expected else None)


@settings(max_examples=300)
@given(since=st.integers(0, 3 * RETRY_CAP_S), looked_up=_LOOKUPS, refused=st.booleans(),
       key=st.sampled_from(KEYS), used_before=st.booleans())
def test_a_keysend_under_another_key_moves_to_the_new_keys_hash_only_when_due_and_unsent(
    since: int, looked_up: PaymentStatus | None, refused: bool, key: KeysendKey,
    used_before: bool,
) -> None:
    """A keysend payout recorded under the key the coordinator no longer holds moves to the
    current key's hash (KEYSEND) once due and its own hash is failed or never seen, unless the
    payee refused keysend (INVOICE) or the payout used that hash before (never back to it)."""
    used_before = used_before and key is not KEY
    keysend = _own(payment_hash=KEY.payment_hash("bn-1"), bolt11=None, payee_pubkey=NODE,
                   method=PayoutMethod.KEYSEND, invoice_expires_at=None,
                   replaced_hashes=(key.payment_hash("bn-1"),) if used_before else (),
                   replaced_keysend=(key.payment_hash("bn-1"),) if used_before else ())
    sent = start_attempt(keysend, T0)
    reason = LND_REFUSAL if refused else "FAILURE_REASON_NO_ROUTE"
    failed = after_pay(sent, _result(PaymentStatus.FAILED, sent.payment_hash, reason), T0)
    now = T0 + since
    answer = None if looked_up is None else _result(looked_up, sent.payment_hash)
    how = renewal(failed, None, answer, now, keysend_hash=key.payment_hash("bn-1"))
    go = is_due(failed, now) and looked_up in (None, PaymentStatus.FAILED)
    moves = key is not KEY and not used_before and not refused
    assert rekeyable(failed, key.payment_hash("bn-1")) is moves
    if refused:
        assert how is (PayoutMethod.INVOICE if go else None)
    else:
        assert how is (PayoutMethod.KEYSEND if go and moves else None)
    if how is PayoutMethod.KEYSEND:
        fresh = check_replacement(failed, keysend_renewed(failed, key, NODE, now))
        assert fresh.payment_hash == key.payment_hash("bn-1") and fresh.payee_pubkey == NODE
        assert fresh.replaced_keysend == (*failed.replaced_keysend, failed.payment_hash)
        assert fresh.attempts == failed.attempts and fresh.state is PaymentState.PENDING


def test_the_keysend_record_keeps_the_amount_and_the_invoice_hash_and_names_the_node() -> None:
    own = fail(start_attempt(_own(), T0), T0 + 1, "no route")
    switched = keysend_renewed(own, KEY, NODE, T0 + INVOICE_EXPIRY_S)
    assert switched.method is PayoutMethod.KEYSEND and switched.bolt11 is None
    assert switched.payment_hash == KEY.payment_hash("bn-1")
    assert switched.replaced_hashes == (OWN_HASH,) and switched.payee_pubkey == NODE
    assert switched.replaced_keysend == ()  # the invoice's hash is looked up by hash
    assert switched.amount_msat == AMOUNT and switched.state is PaymentState.PENDING
    assert switched.attempts == own.attempts
    assert check_replacement(own, switched) == switched
    later = attrs.evolve(switched, method=PayoutMethod.INVOICE, bolt11="lnbcrt1x",
                         payment_hash="ef" * 32,
                         replaced_hashes=(OWN_HASH, switched.payment_hash))  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):  # its keysend hash is never used twice
        keysend_renewed(later, KEY, NODE, T0 + INVOICE_EXPIRY_S)


def test_a_refused_keysend_takes_the_invoice_and_keeps_both_old_hashes() -> None:
    refused = _refused_keysend()
    invoice = Invoice(bolt11="lnbcrt1new", payment_hash="ef" * 32, amount_msat=AMOUNT,
                      expiry_s=INVOICE_EXPIRY_S, created_at=T0 + 20, state=InvoiceState.OPEN)
    fresh = check_replacement(refused, renewed(refused, invoice, T0 + 20))
    assert fresh.method is PayoutMethod.INVOICE and fresh.bolt11 == "lnbcrt1new"
    assert fresh.replaced_hashes == (OWN_HASH, refused.payment_hash)
    assert fresh.replaced_keysend == (refused.payment_hash,)  # looked up as a keysend
    assert fresh.last_error is None and not is_keysend_refused(fresh)
    assert not fresh.keysend_refused
    with pytest.raises(Conflict):  # a replacement that forgets it is refused by the store
        check_replacement(refused, attrs.evolve(renewed(refused, invoice, T0 + 20),
                                                replaced_keysend=()))


@pytest.mark.parametrize("replaced_keysend", [("cd" * 32,), (OWN_HASH, OWN_HASH)])
def test_a_record_names_only_its_replaced_hashes_as_keysend_hashes_each_once(
    replaced_keysend: tuple[str, ...],
) -> None:
    with pytest.raises(InvalidValue, match="replaced_keysend"):
        _own(payment_hash="ef" * 32, replaced_hashes=(OWN_HASH,),
             replaced_keysend=replaced_keysend)


def test_an_own_invoice_that_cannot_be_switched_is_failed_as_not_renewed() -> None:
    failed = not_renewed(_own(), T0, "keysend is off")
    assert failed.last_error == f"{NOT_RENEWED}: keysend is off"


# ------------------------------------------------------------------ exactly once, end to end

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["step", "month", "tick", "resolve", "crash-after-renewal",
                         "crash-before-pay", "crash-after-pay", "refuse", "accept",
                         "hand-in", "rekey"]),
        st.sampled_from(["ok", "fail", "in-flight", "down"]),
    ),
    max_size=60,
)


@attrs.define
class _Network(NonIdempotentNetwork):
    """The treasury's node WITHOUT idempotency (each send is a new payment), a payee node that
    may refuse keysend, and whose node may hand in an invoice."""

    refuses: bool = False
    handed_in: bool = False
    #: The coordinator's keysend key now (its signing key may be replaced, and come back).
    key: KeysendKey = KEY

    def take_invoice(self, now: int) -> Invoice | None:
        if not self.handed_in:
            return None
        self.handed_in = False
        self.issued += 1
        invoice = Invoice(bolt11=f"lnbcrt{self.issued}x", payment_hash=f"{self.issued:064x}",
                          amount_msat=AMOUNT, expiry_s=INVOICE_EXPIRY_S, created_at=now,
                          state=InvoiceState.OPEN)
        self.expires[invoice.payment_hash] = invoice.expires_at
        return invoice


def _switch(stored: RewardPayment, net: _Network, now: int, op: str
            ) -> tuple[RewardPayment, bool]:
    """What owm_adapters.services.payout_renewals does before a step; (record, go on)."""
    looked_up = looked_up_first(stored, net, now)
    keysend_hash = (net.key.payment_hash(stored.payment_id)
                    if stored.method is PayoutMethod.KEYSEND else None)
    how = renewal(stored, stored.invoice_expires_at, looked_up, now, keysend=True,
                  keysend_hash=keysend_hash)
    if how is None:
        return stored, True
    if how is PayoutMethod.KEYSEND:
        fresh = keysend_renewed(stored, net.key, NODE, now)
    else:
        invoice = net.take_invoice(now)
        if invoice is None:
            return not_renewed(stored, now, "no invoice handed in yet"), False
        fresh = renewed(stored, invoice, now)
    return check_replacement(stored, fresh), op != "crash-after-renewal"


def _dispatch(stored: RewardPayment, net: _Network, now: int, op: str, outcome: str
              ) -> RewardPayment:
    """One dispatcher step as owm_adapters.services.payouts runs it, crashing where ``op`` says."""
    stored, sent = prepared_send(stored, net, now, op, _switch)
    if not sent:
        return stored
    if stored.method is PayoutMethod.KEYSEND and (
        net.key.payment_hash(stored.payment_id) != stored.payment_hash
    ):  # PayoutSender.refusal: checked_preimage refuses another key's hash, nothing is sent
        return fail(stored, now, "recorded under another coordinator key")
    assert not is_keysend_refused(stored) or stored.method is not PayoutMethod.KEYSEND, (
        "a refused keysend sent again")
    reason = "no route"
    if stored.method is PayoutMethod.KEYSEND and net.refuses:
        status, reason = PaymentStatus.FAILED, CLN_REFUSAL
    elif stored.method is PayoutMethod.INVOICE and net.expires.get(stored.payment_hash, 0) < now:
        status = PaymentStatus.FAILED
    else:
        status = {"ok": PaymentStatus.SUCCEEDED, "fail": PaymentStatus.FAILED,
                  "in-flight": PaymentStatus.IN_FLIGHT, "down": PaymentStatus.SUCCEEDED}[outcome]
    assert net.live() == 0, "sent while an earlier send succeeded or is in flight"
    net.sends.setdefault(stored.payment_hash, []).append(status)
    if op == "crash-after-pay":
        return stored
    return after_pay(stored, _result(status, stored.payment_hash, reason), now)


@settings(max_examples=400, deadline=None)
@given(_OPS)
def test_an_own_invoice_keysend_and_invoice_fallbacks_never_pay_a_payout_twice(
    ops: list[tuple[str, str]],
) -> None:
    """A contributor's own invoice expires (a month passes) and goes by keysend, the payee's
    node refuses keysend or takes it, hands in invoices, the treasury's node goes down, the
    coordinator's signing key is replaced (and may come back), the dispatcher crashes at every
    step: at most one payment of the payout ever succeeds or is in flight, whichever hash, and
    once everything is healthy (an invoice handed in, the key that made a keysend hash) it is
    paid exactly once."""
    net = _Network()
    net.expires[OWN_HASH] = T0 + INVOICE_EXPIRY_S
    stored = _own()
    now = T0
    for op, outcome in ops:
        now += 1
        if op in ("tick", "month"):
            now += INVOICE_EXPIRY_S if op == "month" else RETRY_CAP_S
            net.down = op == "tick" and outcome == "down"
            continue
        if op == "rekey":
            net.key = KEYS[["ok", "fail", "in-flight", "down"].index(outcome) % len(KEYS)]
        elif op in ("refuse", "accept", "hand-in"):
            net.refuses = op == "refuse" or (net.refuses and op == "hand-in")
            net.handed_in = net.handed_in or op == "hand-in"
        elif op == "resolve":
            net.resolve(outcome == "ok")
        else:
            stored = _dispatch(stored, net, now, op, outcome)
        assert net.succeeded() <= 1
        assert set(stored.replaced_keysend) == set(stored.replaced_hashes) & {
            k.payment_hash(stored.payment_id) for k in KEYS}, "a keysend hash not looked up as one"
    net.down = False
    if stored.method is PayoutMethod.KEYSEND:  # the operator restores the key that made it
        net.key = next(k for k in KEYS if k.payment_hash(stored.payment_id) == stored.payment_hash)
    for _ in range(12):
        net.resolve(True)
        net.handed_in = True
        now += INVOICE_EXPIRY_S
        stored = _dispatch(stored, net, now, "step", "ok")
    assert stored.settled and net.succeeded() == 1
