"""Task rewards, the reward ledger and reliability (SRS-LN-04, SRS-STAKE-10, SRS-SEC-11)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from owm_core.errors import InvalidTransition, InvalidValue
from owm_core.payments.rewards import (
    BPS,
    PPM,
    RELIABILITY_ALPHA_PPM,
    RELIABILITY_INITIAL_PPM,
    NodeAccount,
    ReliabilityRule,
    RewardLedger,
    TaskReward,
    task_reward_msat,
)
from owm_core.stake.channel import BONUS_MAX_BPS

prices = st.integers(0, 10**12)
reliabilities = st.integers(0, PPM)
bonuses = st.integers(BPS, BONUS_MAX_BPS)


# --- the reward formula ----------------------------------------------------------------------


def test_a_perfect_node_at_the_minimum_stake_earns_the_base_price() -> None:
    assert task_reward_msat(5_000, PPM, BPS) == 5_000


def test_reliability_and_stake_bonus_scale_the_reward() -> None:
    assert task_reward_msat(5_000, 900_000, 11_000) == 4_950
    assert task_reward_msat(5_000, 500_000, 15_000) == 3_750


def test_the_reward_is_rounded_down() -> None:
    assert task_reward_msat(3, 333_333, BPS) == 0
    assert task_reward_msat(1_000, 999_999, 10_001) == 1_000
    assert task_reward_msat(7, PPM, 10_001) == 7


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((5.0, PPM, BPS), "base_price_msat"),
        ((-1, PPM, BPS), "base_price_msat"),
        ((True, PPM, BPS), "base_price_msat"),
        ((5, PPM + 1, BPS), "reliability_ppm"),
        ((5, 0.9, BPS), "reliability_ppm"),
        ((5, PPM, 1.1), "stake_bonus_bps"),
        ((5, PPM, -1), "stake_bonus_bps"),
    ],
)
def test_invalid_reward_inputs_are_refused_naming_the_field(
    args: tuple[object, object, object], field: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        task_reward_msat(*args)  # type: ignore[arg-type]
    assert caught.value.field == field


@settings(max_examples=300)
@given(base=prices, reliability=reliabilities, bonus=bonuses)
def test_floor_rounding_never_over_pays_and_loses_less_than_one_msat(
    base: int, reliability: int, bonus: int
) -> None:
    exact = Fraction(base) * Fraction(reliability, PPM) * Fraction(bonus, BPS)
    paid = task_reward_msat(base, reliability, bonus)
    assert paid <= exact < paid + 1


@settings(max_examples=300)
@given(
    base=prices,
    reliability=reliabilities,
    bonus=bonuses,
    more_base=st.integers(0, 10**9),
    more_reliability=st.integers(0, PPM),
    more_bonus=st.integers(0, 5_000),
)
def test_the_reward_is_monotone_in_each_factor(
    base: int, reliability: int, bonus: int, more_base: int, more_reliability: int, more_bonus: int
) -> None:
    reward = task_reward_msat(base, reliability, bonus)
    assert task_reward_msat(base + more_base, reliability, bonus) >= reward
    assert task_reward_msat(base, min(PPM, reliability + more_reliability), bonus) >= reward
    assert task_reward_msat(base, reliability, bonus + more_bonus) >= reward


@settings(max_examples=200)
@given(base=prices, reliability=reliabilities, bonus=bonuses)
def test_the_reward_never_exceeds_the_base_price_times_the_maximum_bonus(
    base: int, reliability: int, bonus: int
) -> None:
    assert task_reward_msat(base, reliability, bonus) * BPS <= base * BONUS_MAX_BPS


@settings(max_examples=100)
@given(
    amount=st.floats(allow_nan=True, allow_infinity=True),
    reliability=reliabilities,
)
def test_floats_are_never_accepted_as_money(amount: float, reliability: int) -> None:
    with pytest.raises(InvalidValue) as caught:
        TaskReward(base_price_msat=amount, reliability_ppm=reliability, stake_bonus_bps=BPS)  # type: ignore[arg-type]
    assert caught.value.field == "base_price_msat"
    with pytest.raises(InvalidValue) as caught:
        RewardLedger().earn("node", "task", amount)  # type: ignore[arg-type]
    assert caught.value.field == "amount_msat"


# --- reliability -----------------------------------------------------------------------------


def test_reliability_moves_five_percent_towards_each_outcome_by_default() -> None:
    rule = ReliabilityRule()
    assert (rule.alpha_ppm, rule.initial_ppm) == (RELIABILITY_ALPHA_PPM, RELIABILITY_INITIAL_PPM)
    assert rule.after_success(500_000) == 525_000
    assert rule.after_failure(500_000) == 475_000
    assert rule.after(500_000, verified=True) == 525_000
    assert rule.after(500_000, verified=False) == 475_000


def test_reliability_rounds_against_the_node() -> None:
    rule = ReliabilityRule()
    assert rule.after_success(999_999) == 999_999
    assert rule.after_failure(1) == 0


def test_a_malicious_node_loses_all_reputation() -> None:
    assert ReliabilityRule().after_malicious(987_654) == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.after_success(PPM + 1),
        lambda r: r.after_failure(-1),
        lambda r: r.after_success(0.5),
        lambda r: r.after_malicious(True),
    ],
)
def test_invalid_reliability_scores_are_refused(call: object) -> None:
    with pytest.raises(InvalidValue) as caught:
        call(ReliabilityRule())  # type: ignore[operator]
    assert caught.value.field == "reliability_ppm"


def test_invalid_reliability_rules_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidValue) as caught:
        ReliabilityRule(alpha_ppm=0)
    assert caught.value.field == "alpha_ppm"
    with pytest.raises(InvalidValue) as caught:
        ReliabilityRule(initial_ppm=PPM + 1)
    assert caught.value.field == "initial_ppm"
    with pytest.raises(InvalidValue) as caught:
        ReliabilityRule().after(500_000, verified=1)  # type: ignore[arg-type]
    assert caught.value.field == "verified"


@settings(max_examples=300)
@given(
    alpha=st.integers(1, PPM),
    start=reliabilities,
    outcomes=st.lists(st.booleans(), max_size=50),
)
def test_reliability_stays_in_range_and_moves_towards_the_outcome(
    alpha: int, start: int, outcomes: list[bool]
) -> None:
    rule = ReliabilityRule(alpha_ppm=alpha)
    score = start
    for verified in outcomes:
        after = rule.after(score, verified)
        assert 0 <= after <= PPM
        assert after >= score if verified else after <= score
        score = after


# --- the ledger ------------------------------------------------------------------------------


def test_earning_the_same_task_twice_credits_once() -> None:
    ledger = RewardLedger().earn("n1", "task-1", 4_000)
    assert ledger.earn("n1", "task-1", 4_000) == ledger
    assert ledger.account("n1").earned_msat == 4_000
    assert ledger.credited("n1", "task-1") and not ledger.credited("n2", "task-1")


def test_replaying_a_task_with_another_amount_is_refused() -> None:
    ledger = RewardLedger().earn("n1", "task-1", 4_000)
    with pytest.raises(InvalidTransition):
        ledger.earn("n1", "task-1", 5_000)


def test_one_task_may_reward_several_nodes() -> None:
    ledger = RewardLedger().earn("n1", "task-1", 4_000).earn("n2", "task-1", 4_000)
    assert ledger.total.earned_msat == 8_000


def test_paying_reduces_the_unpaid_balance_but_never_below_zero() -> None:
    ledger = RewardLedger().earn("n1", "t1", 4_000).earn("n1", "t2", 1_000).pay("n1", 3_000)
    assert ledger.unpaid_msat("n1") == 2_000
    with pytest.raises(InvalidValue) as caught:
        ledger.pay("n1", 2_001)
    assert caught.value.field == "amount_msat"
    with pytest.raises(InvalidValue):
        ledger.pay("stranger", 1)
    with pytest.raises(InvalidValue) as caught:
        ledger.pay("n1", 0)
    assert caught.value.field == "amount_msat"


def test_slashing_forfeits_the_unpaid_balance_and_keeps_what_was_paid() -> None:
    ledger = RewardLedger().earn("n1", "t1", 4_000).pay("n1", 1_500).forfeit_unpaid("n1")
    account = ledger.account("n1")
    assert (account.earned_msat, account.paid_msat, account.forfeited_msat) == (4_000, 1_500, 2_500)
    assert account.unpaid_msat == 0
    assert ledger.forfeit_unpaid("n1") == ledger
    assert RewardLedger().forfeit_unpaid("nobody") == RewardLedger()


def test_the_ledger_is_immutable() -> None:
    ledger = RewardLedger().earn("n1", "t1", 4_000)
    with pytest.raises(TypeError):
        ledger.accounts["n1"] = NodeAccount(node_id="n1")  # type: ignore[index]
    ledger.earn("n1", "t2", 1)
    assert ledger.account("n1").earned_msat == 4_000


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "t", 1), "node_id"),
        (("n", "", 1), "task_id"),
        (("n", "t", -1), "amount_msat"),
        ((1, "t", 1), "node_id"),
    ],
)
def test_invalid_earnings_are_refused_naming_the_field(
    args: tuple[object, object, object], field: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        RewardLedger().earn(*args)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_inconsistent_accounts_and_ledgers_are_refused() -> None:
    with pytest.raises(InvalidValue) as caught:
        NodeAccount(node_id="n", earned_msat=10, paid_msat=6, forfeited_msat=5)
    assert caught.value.field == "paid_msat"
    with pytest.raises(InvalidValue) as caught:
        RewardLedger(accounts={"n": NodeAccount(node_id="n", earned_msat=10)}, credits={})
    assert caught.value.field == "credits"
    with pytest.raises(InvalidValue) as caught:
        RewardLedger(accounts={"m": NodeAccount(node_id="n")})
    assert caught.value.field == "accounts"


NODES = st.sampled_from(["n1", "n2", "n3"])
TASKS = st.sampled_from([f"task-{i}" for i in range(8)])


class LedgerHistory(RuleBasedStateMachine):
    """Any sequence of earn / pay / forfeit against a plain reference model."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = RewardLedger()
        self.credited: dict[tuple[str, str], int] = {}
        self.paid: dict[str, int] = {}
        self.forfeited: dict[str, int] = {}

    def _earned(self, node: str) -> int:
        return sum(amount for (n, _), amount in self.credited.items() if n == node)

    def _unpaid(self, node: str) -> int:
        return self._earned(node) - self.paid.get(node, 0) - self.forfeited.get(node, 0)

    @rule(node=NODES, task=TASKS, amount=st.integers(0, 10**9))
    def earn(self, node: str, task: str, amount: int) -> None:
        key = (node, task)
        if key in self.credited and self.credited[key] != amount:
            with pytest.raises(InvalidTransition):
                self.ledger.earn(node, task, amount)
            return
        self.ledger = self.ledger.earn(node, task, amount)
        self.credited.setdefault(key, amount)

    @rule(node=NODES, task=TASKS)
    def replay(self, node: str, task: str) -> None:
        if (node, task) in self.credited:
            again = self.ledger.earn(node, task, self.credited[(node, task)])
            assert again == self.ledger

    @rule(node=NODES, share=st.integers(1, 100))
    def pay(self, node: str, share: int) -> None:
        amount = self._unpaid(node) * share // 100
        if amount == 0:
            return
        self.ledger = self.ledger.pay(node, amount)
        self.paid[node] = self.paid.get(node, 0) + amount

    @rule(node=NODES, excess=st.integers(1, 10**6))
    def overpay(self, node: str, excess: int) -> None:
        with pytest.raises(InvalidValue):
            self.ledger.pay(node, self._unpaid(node) + excess)

    @rule(node=NODES)
    def forfeit(self, node: str) -> None:
        unpaid = self._unpaid(node)
        self.ledger = self.ledger.forfeit_unpaid(node)
        self.forfeited[node] = self.forfeited.get(node, 0) + unpaid

    @invariant()
    def every_msat_is_conserved(self) -> None:
        for node in ("n1", "n2", "n3"):
            account = self.ledger.account(node)
            assert account.earned_msat == self._earned(node)
            assert account.paid_msat == self.paid.get(node, 0)
            assert account.forfeited_msat == self.forfeited.get(node, 0)
            assert account.unpaid_msat == self._unpaid(node) >= 0
            assert account.earned_msat == (
                account.paid_msat + account.forfeited_msat + account.unpaid_msat
            )
        total = self.ledger.total
        assert total.earned_msat == sum(self.credited.values())
        assert total.paid_msat == sum(self.paid.values())
        assert total.forfeited_msat == sum(self.forfeited.values())
        assert total.earned_msat == total.paid_msat + total.forfeited_msat + total.unpaid_msat


LedgerHistory.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_the_ledger_conserves_every_msat_under_any_history = LedgerHistory.TestCase
