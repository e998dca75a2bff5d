"""Funded work only: escrow before dispatch, capped prices, period budgets, exact books."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InsufficientFunds, InvalidTransition, InvalidValue, PolicyViolation
from owm_core.market.funding import (
    Balance,
    Escrow,
    FundingRules,
    Payer,
    PeriodBudget,
    TopUp,
    TopUpState,
    budget_at,
    check_price,
    close_escrow,
    credit_balance,
    credit_top_up,
    debit_balance,
    escrow_required_msat,
    fund_client_task,
    fund_network_task,
    refund_to_balance,
    settle_replica,
    submission_digest,
    treasury_share_msat,
)
from owm_core.market.tasks import TaskRequest
from owm_core.nodes.tiers import Tier

T0 = 1_700_000_000
RULES = FundingRules(max_price_msat=1_000_000, period_budget_msat=10_000_000, fee_ppm=50_000)


def test_a_price_above_the_cap_is_refused_naming_the_cap() -> None:
    with pytest.raises(InvalidValue) as err:
        check_price(2_300_000_000_000_000_000, RULES)
    assert err.value.field == "price_msat"
    assert "1000000 msat" in err.value.reason and "max_price_msat" in err.value.reason


def test_a_float_or_negative_price_is_refused() -> None:
    half: Any = 0.5
    for bad in (half, -1, True):
        with pytest.raises(InvalidValue):
            check_price(bad, RULES)


def test_a_client_task_is_not_funded_by_a_short_payment() -> None:
    required = escrow_required_msat(10_000, 3, Payer.CLIENT, RULES)
    assert required == 3 * (10_000 + 500)
    with pytest.raises(PolicyViolation):
        fund_client_task("t1", 10_000, 3, required - 1, RULES)


def test_an_overpayment_is_refunded_at_once() -> None:
    required = escrow_required_msat(10_000, 3, Payer.CLIENT, RULES)
    escrow = fund_client_task("t1", 10_000, 3, required + 7, RULES)
    assert escrow.held_msat == required and escrow.refunded_msat == 7


def test_a_settled_replica_pays_its_node_the_price_and_the_treasury_its_share() -> None:
    escrow = fund_client_task("t1", 10_000, 3, 31_500, RULES)
    escrow, payout = settle_replica(escrow, "r0")
    assert (payout.node_msat, payout.treasury_share_msat) == (10_000, 500)
    assert escrow.held_msat == 21_000


def test_a_replica_is_paid_once_and_no_more_replicas_than_funded() -> None:
    escrow = fund_client_task("t1", 10, 1, 10, RULES)
    escrow, _ = settle_replica(escrow, "r0")
    with pytest.raises(InvalidTransition):
        settle_replica(escrow, "r0")
    with pytest.raises(InvalidTransition):
        settle_replica(escrow, "r1")


def test_a_failed_task_refunds_the_unspent_remainder_once() -> None:
    escrow = fund_client_task("t1", 10_000, 3, 31_500, RULES)
    escrow, _ = settle_replica(escrow, "r0")
    closed, refund = close_escrow(escrow)
    assert refund == 21_000 and closed.held_msat == 0
    with pytest.raises(InvalidTransition):
        close_escrow(closed)
    with pytest.raises(InvalidTransition):
        settle_replica(closed, "r1")


def test_the_treasury_takes_no_share_of_its_own_network_tasks() -> None:
    assert treasury_share_msat(10_000, Payer.NETWORK, RULES) == 0


def test_a_network_task_is_refused_once_the_periods_budget_is_spent() -> None:
    rules = FundingRules(max_price_msat=1_000, period_budget_msat=3_000)
    budget = PeriodBudget(T0 // rules.period_s)
    budget, _ = fund_network_task(budget, "n1", 1_000, 3, T0, rules)
    with pytest.raises(PolicyViolation):
        fund_network_task(budget, "n2", 1, 1, T0, rules)
    budget, _ = fund_network_task(budget, "n2", 1_000, 3, T0 + rules.period_s, rules)
    assert budget.drawn_msat == 3_000


def test_a_budget_cannot_be_read_at_a_time_before_its_period() -> None:
    with pytest.raises(InvalidValue):
        budget_at(PeriodBudget(T0 // RULES.period_s), T0 - RULES.period_s, RULES)


def test_books_that_do_not_balance_cannot_be_built() -> None:
    with pytest.raises(InvalidValue):
        Escrow("t", Payer.CLIENT, 10, 0, 1, funded_msat=10, held_msat=11)


# --- property: random task streams -------------------------------------------------------

rules_st = st.builds(
    FundingRules,
    max_price_msat=st.integers(1, 10**6),
    period_budget_msat=st.integers(0, 10**7),
    fee_ppm=st.integers(0, 1_000_000),
    period_s=st.integers(1, 1_000),
)
event = st.one_of(
    st.tuples(
        st.just("submit"),
        st.sampled_from(Payer),
        st.integers(0, 2 * 10**6),
        st.integers(1, 5),
        st.integers(0, 10**5),
    ),
    st.tuples(st.just("settle"), st.integers(0, 50), st.integers(0, 6)),
    st.tuples(st.just("close"), st.integers(0, 50)),
    st.tuples(st.just("wait"), st.integers(0, 3_000)),
)


class Books:
    """Replays a stream of funding events and keeps the global totals."""

    def __init__(self, rules: FundingRules) -> None:
        self.rules = rules
        self.now = T0
        self.budget = PeriodBudget(T0 // rules.period_s)
        self.escrows: list[Escrow] = []
        self.collected = self.drawn = self.to_nodes = self.shares = self.refunds = 0
        self.drawn_by_period: dict[int, int] = {}

    def submit(self, payer: Payer, price: int, replicas: int, extra: int) -> None:
        task_id = f"t{len(self.escrows)}"
        try:
            if payer is Payer.CLIENT:
                need = escrow_required_msat(price, replicas, payer, self.rules)
                escrow = fund_client_task(task_id, price, replicas, need + extra, self.rules)
                self.collected += need + extra
                self.refunds += extra
            else:
                before = budget_at(self.budget, self.now, self.rules)
                self.budget, escrow = fund_network_task(
                    self.budget, task_id, price, replicas, self.now, self.rules
                )
                draw = self.budget.drawn_msat - before.drawn_msat
                self.drawn += draw
                period = self.budget.period
                self.drawn_by_period[period] = self.drawn_by_period.get(period, 0) + draw
        except (InvalidValue, PolicyViolation):
            return
        self.escrows.append(escrow)

    def settle(self, which: int, replica: int) -> None:
        if not self.escrows:
            return
        i = which % len(self.escrows)
        try:
            self.escrows[i], payout = settle_replica(self.escrows[i], f"r{replica}")
        except InvalidTransition:
            return
        self.to_nodes += payout.node_msat
        self.shares += payout.treasury_share_msat

    def close(self, which: int) -> None:
        if not self.escrows:
            return
        i = which % len(self.escrows)
        try:
            self.escrows[i], refund = close_escrow(self.escrows[i])
        except InvalidTransition:
            return
        self.refunds += refund


def replay(rules: FundingRules, events: list[tuple[Any, ...]]) -> Books:
    books = Books(rules)
    for kind, *args in events:
        if kind == "wait":
            books.now += args[0]
        else:
            getattr(books, kind)(*args)
    return books


@given(rules=rules_st, events=st.lists(event, max_size=80))
@settings(max_examples=300, deadline=None)
def test_what_leaves_the_escrows_never_exceeds_what_entered_them(
    rules: FundingRules, events: list[tuple[Any, ...]]
) -> None:
    books = replay(rules, events)
    held = sum(e.held_msat for e in books.escrows)
    assert books.to_nodes + books.shares + books.refunds + held == books.collected + books.drawn
    assert books.to_nodes + books.shares + books.refunds <= books.collected + books.drawn


@given(rules=rules_st, events=st.lists(event, max_size=80))
@settings(max_examples=300, deadline=None)
def test_no_balance_goes_negative_and_every_escrow_balances(
    rules: FundingRules, events: list[tuple[Any, ...]]
) -> None:
    for e in replay(rules, events).escrows:
        assert min(e.held_msat, e.paid_to_nodes_msat, e.refunded_msat) >= 0
        spent = e.paid_to_nodes_msat + e.treasury_share_msat + e.refunded_msat
        assert spent + e.held_msat == e.funded_msat
        assert e.paid_to_nodes_msat == e.price_msat * len(e.settled_replica_ids)
        assert e.price_msat <= rules.max_price_msat


@given(rules=rules_st, events=st.lists(event, max_size=80))
@settings(max_examples=300, deadline=None)
def test_no_period_draws_more_than_its_budget(
    rules: FundingRules, events: list[tuple[Any, ...]]
) -> None:
    books = replay(rules, events)
    assert all(d <= rules.period_budget_msat for d in books.drawn_by_period.values())


# --- wiring rules: balances, top-ups, the negotiated price, the signed digest ---------------


def test_a_replica_is_paid_the_negotiated_price_and_never_more_than_funded() -> None:
    escrow = fund_client_task("t1", 10_000, 2, 21_000, RULES)
    escrow, payout = settle_replica(escrow, "t1:0", 6_000)
    assert (payout.node_msat, payout.treasury_share_msat, escrow.held_msat) == (6_000, 500, 14_500)
    with pytest.raises(InvalidValue) as err:
        settle_replica(escrow, "t1:1", 10_001)
    assert err.value.field == "node_msat"
    _, refund = close_escrow(escrow)
    assert refund == 14_500


@given(moves=st.lists(st.tuples(st.sampled_from(["credit", "debit", "refund"]),
                                st.integers(0, 10**9)), max_size=40))
def test_a_balance_never_goes_negative_and_always_adds_up(moves: list[tuple[str, int]]) -> None:
    balance = Balance("ab" * 32)
    for move, amount in moves:
        if move == "credit":
            balance = credit_balance(balance, amount)
        elif move == "refund":
            balance = refund_to_balance(balance, amount)
        elif amount > balance.available_msat:
            with pytest.raises(InsufficientFunds) as err:
                debit_balance(balance, amount, "t")
            assert err.value.missing_msat == amount - balance.available_msat
            assert f"{amount - balance.available_msat} msat missing" in err.value.message
        else:
            balance = debit_balance(balance, amount, "t")
        assert balance.available_msat >= 0
        assert balance.available_msat == (
            balance.funded_msat - balance.escrowed_msat + balance.refunded_msat
        )


def test_a_top_up_is_credited_once() -> None:
    top_up = TopUp("0" * 64, "ab" * 32, 5_000, "lnbcrt1", T0, T0 + 3600)
    balance, credited = credit_top_up(Balance("ab" * 32), top_up)
    assert balance.available_msat == 5_000 and credited.state is TopUpState.CREDITED
    with pytest.raises(InvalidTransition):
        credit_top_up(balance, credited)
    with pytest.raises(InvalidValue):
        credit_top_up(Balance("cd" * 32), top_up)


def test_the_signed_digest_changes_with_every_field_the_input_and_the_coordinator() -> None:
    request = TaskRequest(
        task_id="t1", task_type="inference", input_schema_id="s", input_schema_version=1,
        min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0, gpu_required=False, max_price_msat=10,
    )
    mainnet, testnet = "aa" * 32, "bb" * 32
    digest = submission_digest(request, b"in", mainnet)
    variants = [
        submission_digest(attrs.evolve(request, max_price_msat=11), b"in", mainnet),
        submission_digest(attrs.evolve(request, task_id="t2"), b"in", mainnet),
        submission_digest(attrs.evolve(request, min_ram_mb=1), b"in", mainnet),
        submission_digest(request, b"other", mainnet),
        submission_digest(request, b"in", testnet),
    ]
    assert digest not in variants and len(set(variants)) == len(variants)


def test_only_a_waiting_task_can_expire_and_an_expired_one_never_runs() -> None:
    from owm_core.market.tasks import Task, TaskState, expire

    request = TaskRequest(
        task_id="t1:0", task_type="inference", input_schema_id="s", input_schema_version=1,
        min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0, gpu_required=False, max_price_msat=10,
    )
    expired = expire(Task(request))
    assert expired.state is TaskState.EXPIRED
    with pytest.raises(InvalidTransition):
        expire(expired)
    with pytest.raises(InvalidTransition):
        expire(attrs.evolve(Task(request), state=TaskState.COMPLETED))


@given(replicas=st.integers(1, 9))
def test_a_client_task_offering_nothing_is_refused_while_a_network_task_may(replicas: int) -> None:
    with pytest.raises(InvalidValue, match="price above 0 msat"):
        escrow_required_msat(0, replicas, Payer.CLIENT, RULES)
    assert escrow_required_msat(0, replicas, Payer.NETWORK, RULES) == 0
    assert escrow_required_msat(1, replicas, Payer.CLIENT, RULES) == replicas
