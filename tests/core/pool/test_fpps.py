"""Pool economics: FPPS crediting, the 80/20 split and payouts (spec 4.11.1, SRS-POOL-04/07/08)."""

from __future__ import annotations

from fractions import Fraction

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.pool import fpps
from owm_core.pool.fpps import FppsTerms, MinerAccount, PayoutPolicy

# --------------------------------------------------------------------------- FPPS


def fpps_terms() -> st.SearchStrategy[FppsTerms]:
    return st.builds(
        FppsTerms,
        block_subsidy_sat=st.integers(0, 5_000_000_000),
        expected_fees_sat=st.integers(0, 2_000_000_000),
        network_difficulty=st.one_of(
            st.integers(1, 10**15),
            st.fractions(min_value=Fraction(1, 10**6), max_value=10**9).filter(lambda f: f > 0),
        ),
        pool_fee_bps=st.integers(0, 10_000),
    )


@given(shares=st.lists(st.integers(1, 10**12), min_size=1, max_size=30), terms=fpps_terms())
@settings(max_examples=200)
def test_paying_shares_one_by_one_never_pays_more_than_paying_them_together(
    shares: list[int], terms: FppsTerms
) -> None:
    apart = sum(fpps.share_value_sat(terms, d) for d in shares)
    together = fpps.share_value_sat(terms, sum(shares))
    assert apart <= together < apart + len(shares)
    exact = sum((fpps.exact_share_value(terms, d) for d in shares), Fraction(0))
    assert apart <= exact < apart + len(shares)


@given(terms=fpps_terms(), difficulty=st.integers(0, 10**12))
@settings(max_examples=200)
def test_a_share_credit_floors_in_the_pools_favour_and_the_fee_goes_to_the_treasury(
    terms: FppsTerms, difficulty: int
) -> None:
    credit = fpps.credit_share(terms, difficulty)
    exact = fpps.exact_share_value(terms, difficulty)
    gross = fpps.gross_share_value(terms, difficulty)
    assert credit.miner_sat <= exact < credit.miner_sat + 1
    assert credit.miner_sat + credit.treasury_sat == gross.numerator // gross.denominator


def test_fpps_reduces_to_the_specs_simplified_formula() -> None:
    """SRS-POOL-04: (block_subsidy / pool_difficulty) × 0.80 for a difficulty-1 share."""
    terms = FppsTerms(block_subsidy_sat=312_500_000, expected_fees_sat=0, network_difficulty=1000)
    assert fpps.share_value_sat(terms, 1) == 312_500_000 * 8 // 10_000  # 250,000 sats
    assert fpps.share_value_sat(terms, 4) == 1_000_000


def test_fpps_pays_expected_fees_and_scales_with_share_difficulty() -> None:
    terms = FppsTerms(
        block_subsidy_sat=312_500_000,
        expected_fees_sat=20_000_000,
        network_difficulty=100_000_000_000,
        pool_fee_bps=250,
    )
    value = Fraction(332_500_000 * 65_536, 100_000_000_000) * Fraction(9_750, 10_000)
    assert fpps.share_value_sat(terms, 65_536) == value.numerator // value.denominator == 212


def test_fpps_terms_from_a_real_header_use_its_difficulty_and_the_subsidy_schedule() -> None:
    terms = fpps.FppsTerms.from_block(height=1, bits=0x1D00FFFF)
    assert terms.network_difficulty == 1
    assert fpps.share_value_sat(terms, 1) == 4_000_000_000


def test_fpps_terms_refuse_float_money_and_float_difficulty() -> None:
    with pytest.raises(InvalidValue) as err:
        FppsTerms(block_subsidy_sat=1.5, expected_fees_sat=0, network_difficulty=1)  # type: ignore[arg-type]
    assert err.value.field == "block_subsidy_sat"
    with pytest.raises(InvalidValue) as err:
        FppsTerms(block_subsidy_sat=1, expected_fees_sat=0, network_difficulty=1.5)
    assert err.value.field == "network_difficulty"
    with pytest.raises(InvalidValue) as err:
        FppsTerms(block_subsidy_sat=1, expected_fees_sat=0, network_difficulty=0)
    assert err.value.field == "network_difficulty"
    with pytest.raises(InvalidValue) as err:
        FppsTerms(1, 0, 1, pool_fee_bps=10_001)
    assert err.value.field == "pool_fee_bps"


# --------------------------------------------------------------------------- 80/20 split


@given(reward=st.integers(0, 21 * 10**14))
@settings(max_examples=300)
def test_the_block_reward_split_conserves_every_sat_and_gives_the_remainder_to_miners(
    reward: int,
) -> None:
    split = fpps.split_block_reward(reward)
    assert split.total_sat == reward
    assert split.treasury_sat <= Fraction(reward, 5) < split.treasury_sat + 1
    assert split.miners_sat >= Fraction(reward * 4, 5)


def test_a_full_block_reward_splits_eighty_twenty() -> None:
    split = fpps.split_block_reward(312_500_003)
    assert (split.miners_sat, split.treasury_sat) == (250_000_003, 62_500_000)


def test_a_float_reward_is_refused() -> None:
    with pytest.raises(InvalidValue) as err:
        fpps.split_block_reward(1.0)  # type: ignore[arg-type]
    assert err.value.field == "reward_sat"


# --------------------------------------------------------------------------- payouts


def account(miner: str, balance: int, last: int = 1_000) -> MinerAccount:
    return MinerAccount(miner, f"ln-{miner}", balance, last)


def test_a_balance_at_the_threshold_is_due_at_once() -> None:
    assert fpps.payout_due(account("a", 10_000), now=1_001)
    assert not fpps.payout_due(account("a", 9_999), now=1_001)


def test_a_small_positive_balance_is_due_one_hour_after_the_last_payout() -> None:
    assert not fpps.payout_due(account("a", 1), now=1_000 + 3_599)
    assert fpps.payout_due(account("a", 1), now=1_000 + 3_600)


def test_an_empty_balance_is_never_due() -> None:
    assert not fpps.payout_due(account("a", 0), now=10**9)


@given(
    balance=st.integers(0, 10**6),
    elapsed=st.integers(0, 10**5),
    threshold=st.integers(1, 10**6),
    interval=st.integers(1, 10**5),
)
def test_a_payout_is_due_exactly_when_threshold_or_timer_comes_first(
    balance: int, elapsed: int, threshold: int, interval: int
) -> None:
    policy = PayoutPolicy(threshold, interval)
    due = fpps.payout_due(account("a", balance, last=500), 500 + elapsed, policy)
    assert due == (balance > 0 and (balance >= threshold or elapsed >= interval))


def test_a_block_found_after_the_last_payout_makes_any_positive_balance_due_at_once() -> None:
    assert fpps.payout_due(account("a", 1), now=1_060, last_block_at=1_030)
    assert not fpps.payout_due(account("a", 1), now=1_060, last_block_at=999)  # before it
    assert fpps.payout_due(account("a", 1), now=1_060, last_block_at=1_000)  # the same second
    assert not fpps.payout_due(account("a", 1), now=1_060, last_block_at=1_061)  # not yet
    assert not fpps.payout_due(account("a", 0), now=1_060, last_block_at=1_030)


@given(
    balance=st.integers(0, 10**6),
    block_after=st.integers(-10**4, 10**4),
    elapsed=st.integers(0, 3_599),
)
def test_within_the_hour_only_the_threshold_or_a_block_since_the_last_payout_makes_it_due(
    balance: int, block_after: int, elapsed: int
) -> None:
    now = 10**6 + elapsed
    block_at = 10**6 + block_after
    due = fpps.payout_due(account("a", balance, last=10**6), now, last_block_at=block_at)
    assert due == (balance > 0 and (balance >= 10_000 or 0 <= block_after <= elapsed))


def test_the_treasurys_cut_rides_in_the_same_batch_as_the_miner_payouts() -> None:
    accounts = [account("b", 12_000), account("a", 10_000), account("c", 50)]
    batch = fpps.plan_payout_batch(accounts, 5_512, "ln-treasury", now=1_010)
    assert [p.miner_id for p in batch.miner_payments] == ["a", "b"]
    assert batch.treasury_payment == fpps.Payment("ln-treasury", 5_512, None)
    assert batch.payments[-1] == batch.treasury_payment
    assert batch.total_sat == 27_512


def test_no_batch_is_sent_while_no_miner_is_due_so_the_treasury_waits() -> None:
    batch = fpps.plan_payout_batch([account("a", 50)], 1_000, "ln-treasury", now=1_010)
    assert batch.is_empty
    assert batch.treasury_payment is None
    assert batch.total_sat == 0


def test_a_miner_listed_twice_is_refused() -> None:
    with pytest.raises(InvalidValue) as err:
        fpps.plan_payout_batch([account("a", 1), account("a", 2)], 0, "ln-t", now=5_000)
    assert err.value.field == "accounts"


def test_value_objects_name_the_offending_field() -> None:
    with pytest.raises(InvalidValue) as err:
        MinerAccount("a", "ln", -1, 0)
    assert err.value.field == "balance_sat"
    with pytest.raises(InvalidValue) as err:
        PayoutPolicy(threshold_sat=0)
    assert err.value.field == "threshold_sat"


@given(
    difficulties=st.lists(st.integers(1, 10**9), min_size=1, max_size=50),
    height=st.integers(0, 1_000_000),
    bits=st.sampled_from([0x1D00FFFF, 0x17034219, 0x207FFFFF]),
)
def test_crediting_shares_one_by_one_in_msat_pays_exactly_the_floor_of_their_total_value(
    difficulties: list[int], height: int, bits: int
) -> None:
    terms = fpps.FppsTerms.from_block(height, bits)
    carry, paid = Fraction(0), 0
    for difficulty in difficulties:
        credit = fpps.credit_share_msat(terms, difficulty, carry)
        paid, carry = paid + credit.msat, credit.carry
        assert 0 <= carry < 1
    exact = sum(fpps.exact_share_value(terms, d) for d in difficulties) * 1000
    assert paid == exact.numerator // exact.denominator


@given(
    difficulties=st.lists(st.integers(1, 10**9), min_size=1, max_size=30),
    terms=fpps_terms(),
)
@settings(max_examples=200)
def test_adding_a_precomputed_share_value_credits_exactly_what_add_share_does(
    difficulties: list[int], terms: FppsTerms
) -> None:
    slow = fast = fpps.fresh_credit("na", 0)
    slow_cut = fast_cut = fpps.fresh_credit(fpps.TREASURY_CREDIT_ID, 0)
    for difficulty in difficulties:
        slow, msat = slow.add_share(terms, difficulty, 7)
        fast, fast_msat = fast.add_value(fpps.exact_share_value(terms, difficulty), 7)
        assert (fast, fast_msat) == (slow, msat)
        slow_cut, _ = slow_cut.add_treasury_cut(terms, difficulty, 7)
        fast_cut, _ = fast_cut.add_value(fpps.treasury_share_value(terms, difficulty), 7)
        assert fast_cut == slow_cut


share_runs = st.lists(
    st.tuples(
        st.integers(1, 10**9) | st.fractions(min_value=Fraction(1, 10**12), max_value=1),
        st.integers(0, 20),
    ),
    min_size=1,
    max_size=8,
)  # runs of equal shares: (difficulty, count)


@given(runs=share_runs, terms=fpps_terms())
@settings(max_examples=200)
def test_adding_a_run_of_equal_shares_at_once_credits_exactly_what_one_by_one_does(
    runs: list[tuple[int | Fraction, int]], terms: FppsTerms
) -> None:
    one_by_one = at_once = fpps.fresh_credit("na", 0)
    for difficulty, count in runs:
        value = fpps.exact_share_value(terms, difficulty)
        each = []
        for _ in range(count):
            one_by_one, msat = one_by_one.add_value(value, 9)
            each.append(msat)
        at_once, added = at_once.add_values(value, count, 9)
        assert added == each
        assert at_once.credited_msat == one_by_one.credited_msat
        assert Fraction(at_once.carry) == Fraction(one_by_one.carry)
        assert at_once.carry == one_by_one.carry or count == 0


@given(runs=share_runs, terms=fpps_terms())
@settings(max_examples=200)
def test_a_run_credited_in_one_sum_leaves_the_credit_that_share_by_share_does(
    runs: list[tuple[int | Fraction, int]], terms: FppsTerms
) -> None:
    each = at_once = fpps.fresh_credit(fpps.TREASURY_CREDIT_ID, 0)
    for difficulty, count in runs:
        value = fpps.treasury_share_value(terms, difficulty)
        each, added = each.add_values(value, count, 9)
        at_once, total = at_once.add_run(value, count, 9)
        assert (at_once, total) == (each, sum(added))


def test_quarter_msat_shares_are_paid_one_msat_every_fourth_share() -> None:
    # 3.125 BTC / difficulty 10^12 × 0.8 = 0.25 msat per difficulty-1 share
    terms = fpps.FppsTerms(
        block_subsidy_sat=312_500_000, expected_fees_sat=0, network_difficulty=10**12
    )
    carry, credits = Fraction(0), []
    for _ in range(8):
        credit = fpps.credit_share_msat(terms, 1, carry)
        credits.append(credit.msat)
        carry = credit.carry
    assert credits == [0, 0, 0, 1, 0, 0, 0, 1]


# ------------------------------------------------------------------- the 80/20 split per share


@given(
    shares=st.lists(
        st.tuples(st.sampled_from(["na", "nb", "nc"]), st.integers(1, 10**9)), max_size=40
    ),
    terms=fpps_terms().map(lambda t: attrs.evolve(t, pool_fee_bps=fpps.DEFAULT_POOL_FEE_BPS)),
)
@settings(max_examples=200)
def test_shares_credit_miners_80_and_the_treasury_20_percent_exactly_to_the_msat(
    shares: list[tuple[str, int]], terms: FppsTerms
) -> None:
    credits = {m: fpps.fresh_credit(m, 0) for m in ("na", "nb", "nc")}
    treasury = fpps.fresh_credit(fpps.TREASURY_CREDIT_ID, 0)
    for miner, difficulty in shares:
        credits[miner], _ = credits[miner].add_share(terms, difficulty, 1)
        treasury, _ = treasury.add_treasury_cut(terms, difficulty, 1)
    gross = {m: sum((fpps.gross_share_value(terms, d) * 1000 for n, d in shares if n == m),
                    Fraction(0)) for m in credits}  # fmt: skip
    for miner, credit in credits.items():
        assert credit.credited_msat == int(gross[miner] * Fraction(8, 10))  # floor: exact ≥ 0
    total = sum(gross.values(), Fraction(0))
    assert treasury.credited_msat == int(total * Fraction(2, 10))
    paid = treasury.credited_msat + sum(c.credited_msat for c in credits.values())
    assert int(total) - len(credits) <= paid <= int(total)  # never more than the shares' worth
