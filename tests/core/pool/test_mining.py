"""Pool rules: proof of work against real Bitcoin headers, FPPS, the 80/20 split, payouts."""

from __future__ import annotations

import struct
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidShare, InvalidValue
from owm_core.pool import mining
from owm_core.pool.mining import (
    DIFF1_TARGET,
    BlockHeader,
    FppsTerms,
    MinerAccount,
    PayoutPolicy,
    Share,
    WorkTemplate,
)

GENESIS_HEX = (
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac7"
    "2c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
)
GENESIS_HASH = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
BLOCK1_HEX = (
    "010000006fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000982051fd1e4ba744bbbe"
    "680e1fee14677ba1a3c3540bf7b1cdb606e857233e0e61bc6649ffff001d01e36299"
)
BLOCK1_HASH = "00000000839a8e6886ab5951d76f411475428afc90947ee320161bbf18eb6048"
REGTEST_BITS = 0x207FFFFF

GENESIS = bytes.fromhex(GENESIS_HEX)
BLOCK1 = bytes.fromhex(BLOCK1_HEX)


def template_for(header: bytes, template_id: str = "tpl-1", height: int = 1) -> WorkTemplate:
    parsed = BlockHeader.parse(header)
    return WorkTemplate(template_id, parsed.prev_hash, parsed.bits, height)


def regtest_header(prev: bytes, nonce: int) -> bytes:
    return struct.pack(
        "<i32s32sIII", 0x20000000, prev, b"\x11" * 32, 1_700_000_000, REGTEST_BITS, nonce
    )


def grind(prev: bytes, want_valid: bool) -> bytes:
    """The first regtest header (by nonce) whose hash does / does not meet the regtest target."""
    target = mining.compact_to_target(REGTEST_BITS)
    for nonce in range(1000):
        raw = regtest_header(prev, nonce)
        if (BlockHeader.parse(raw).hash_value() <= target) == want_valid:
            return raw
    raise AssertionError("no nonce found in 1000 tries")


# --------------------------------------------------------------------------- real headers


def test_the_genesis_header_hashes_to_the_genesis_block_hash() -> None:
    header = BlockHeader.parse(GENESIS)
    assert header.hash_hex() == GENESIS_HASH
    assert header.version == 1
    assert header.prev_hash == bytes(32)
    assert header.merkle_root[::-1].hex() == (
        "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
    )
    assert (header.time, header.bits, header.nonce) == (1231006505, 0x1D00FFFF, 2083236893)
    assert header.serialize() == GENESIS


def test_block_one_hashes_to_its_mainnet_hash_and_builds_on_genesis() -> None:
    header = BlockHeader.parse(BLOCK1)
    assert header.hash_hex() == BLOCK1_HASH
    assert header.prev_hash[::-1].hex() == GENESIS_HASH
    assert header.time == 1231469665
    assert header.nonce == 2573394689


def test_real_mainnet_headers_meet_their_own_network_target() -> None:
    for raw in (GENESIS, BLOCK1):
        header = BlockHeader.parse(raw)
        assert header.target() == DIFF1_TARGET
        assert header.meets_target(header.target())


def test_the_genesis_block_is_accepted_as_a_share_and_flagged_as_a_block() -> None:
    share = Share("miner-a", "tpl-1", GENESIS, share_difficulty=1)
    accepted = mining.validate_share(share, template_for(GENESIS))
    assert accepted.hash_hex == GENESIS_HASH
    assert accepted.is_block
    assert accepted.credited_difficulty == 1


def test_the_share_target_is_exact_at_the_genesis_hash() -> None:
    """Difficulty DIFF1 // hash is the highest share difficulty the genesis header meets."""
    header = BlockHeader.parse(GENESIS)
    hardest = DIFF1_TARGET // header.hash_value()
    assert hardest == 2536  # the genesis block's well-known "difficulty" of its own hash
    assert header.meets_target(mining.share_target(hardest))
    assert not header.meets_target(mining.share_target(hardest + 1))


def test_a_block_is_a_valid_share_at_any_difficulty_but_credited_at_most_a_block() -> None:
    accepted = mining.validate_share(Share("m", "tpl-1", GENESIS, 10**6), template_for(GENESIS))
    assert accepted.is_block
    assert accepted.share_difficulty == 10**6
    assert accepted.credited_difficulty == 1  # the network difficulty of nBits 0x1d00ffff


def test_a_share_on_an_older_template_is_rejected_as_stale() -> None:
    """Block 1's header builds on genesis; once the template moved on, it is stale."""
    current = WorkTemplate("tpl-2", bytes.fromhex(BLOCK1_HASH)[::-1], 0x1D00FFFF, 2)
    with pytest.raises(InvalidShare) as err:
        mining.validate_share(Share("m", "tpl-2", BLOCK1, 1), current)
    assert err.value.reason == "stale"


def test_a_share_naming_another_template_id_is_stale_even_on_the_same_parent() -> None:
    with pytest.raises(InvalidShare) as err:
        mining.validate_share(Share("m", "tpl-old", BLOCK1, 1), template_for(BLOCK1, "tpl-new"))
    assert err.value.reason == "stale"


def test_a_header_that_is_not_80_bytes_is_rejected_with_bad_length() -> None:
    for raw in (GENESIS[:79], GENESIS + b"\x00", b""):
        with pytest.raises(InvalidShare) as err:
            mining.validate_share(Share("m", "tpl-1", raw, 1), template_for(GENESIS))
        assert err.value.reason == "bad-length"


def test_a_share_whose_nbits_differ_from_the_template_is_rejected() -> None:
    template = WorkTemplate("tpl-1", bytes(32), 0x1C00FFFF, 0)
    with pytest.raises(InvalidShare) as err:
        mining.validate_share(Share("m", "tpl-1", GENESIS, 1), template)
    assert err.value.reason == "bad-nbits"


def test_a_share_already_seen_is_rejected_as_duplicate() -> None:
    seen = {BlockHeader.parse(GENESIS).hash()}
    with pytest.raises(InvalidShare) as err:
        mining.validate_share(Share("m", "tpl-1", GENESIS, 1), template_for(GENESIS), seen)
    assert err.value.reason == "duplicate"


def test_a_tampered_real_header_no_longer_meets_a_difficulty_one_share_target() -> None:
    tampered = GENESIS[:-4] + (2083236894).to_bytes(4, "little")
    with pytest.raises(InvalidShare) as err:
        mining.validate_share(Share("m", "tpl-1", tampered, 1), template_for(GENESIS))
    assert err.value.reason == "above-target"


# --------------------------------------------------------------------------- regtest


def test_a_ground_regtest_header_is_a_valid_share_and_block() -> None:
    prev = bytes(range(32))
    raw = grind(prev, want_valid=True)
    template = WorkTemplate("reg", prev, REGTEST_BITS, 101)
    accepted = mining.validate_share(Share("m", "reg", raw, 1), template)
    assert accepted.is_block
    assert accepted.credited_difficulty == mining.difficulty_of_target(
        mining.compact_to_target(REGTEST_BITS)
    )
    assert accepted.credited_difficulty < 1


def test_a_regtest_header_above_the_regtest_target_is_rejected() -> None:
    prev = bytes(range(32))
    raw = grind(prev, want_valid=False)
    with pytest.raises(InvalidShare) as err:
        mining.validate_share(Share("m", "reg", raw, 1), WorkTemplate("reg", prev, REGTEST_BITS, 1))
    assert err.value.reason == "above-target"


def test_the_regtest_target_decodes_like_bitcoin_core() -> None:
    assert mining.compact_to_target(REGTEST_BITS) == 0x7FFFFF << (8 * 29)


# --------------------------------------------------------------------------- compact nBits


@pytest.mark.parametrize(
    ("bits", "target"),
    [
        (0x1D00FFFF, DIFF1_TARGET),
        (0x1B0404CB, 0x0404CB << (8 * 24)),
        (0x01123456, 0x12),
        (0x02123456, 0x1234),
        (0x03123456, 0x123456),
        (0x04123456, 0x12345600),
        (0x05009234, 0x92340000),
        (0x20123456, 0x123456 << (8 * 29)),
    ],
)
def test_compact_nbits_decode_like_bitcoin_core_set_compact(bits: int, target: int) -> None:
    assert mining.compact_to_target(bits) == target


@pytest.mark.parametrize(
    "bits",
    [
        0x04923456,  # sign bit set: negative
        0x01FEDCBA,  # negative
        0xFF123456,  # overflow
        0x22010000,  # size 34 with a mantissa above 0xff
        0x21FF0000,  # size 33 with a mantissa above 0xffff
        0x00000000,  # zero
        0x01003456,  # rounds to zero
        0x00123456,  # rounds to zero
    ],
)
def test_negative_overflowing_and_zero_nbits_are_rejected(bits: int) -> None:
    with pytest.raises(InvalidShare) as err:
        mining.compact_to_target(bits)
    assert err.value.reason == "bad-nbits"


@given(st.integers(min_value=1, max_value=(1 << 255) - 1))
@settings(max_examples=200)
def test_compact_encoding_round_trips_through_decoding(target: int) -> None:
    bits = mining.target_to_compact(target)
    decoded = mining.compact_to_target(bits)
    assert mining.target_to_compact(decoded) == bits
    assert decoded <= target  # the mantissa keeps the top bytes, so it rounds down


def test_share_targets_divide_the_difficulty_one_target() -> None:
    assert mining.share_target(1) == DIFF1_TARGET
    assert mining.share_target(1024) == DIFF1_TARGET // 1024
    with pytest.raises(InvalidValue) as err:
        mining.share_target(0)
    assert err.value.field == "share_difficulty"


# --------------------------------------------------------------------------- subsidy


@pytest.mark.parametrize(
    ("height", "subsidy"),
    [
        (0, 5_000_000_000),
        (209_999, 5_000_000_000),
        (210_000, 2_500_000_000),
        (420_000, 1_250_000_000),
        (630_000, 625_000_000),
        (840_000, 312_500_000),
        (210_000 * 32, 1),
        (210_000 * 33, 0),
        (210_000 * 64, 0),
        (210_000 * 1000, 0),
    ],
)
def test_the_block_subsidy_follows_bitcoins_halving_schedule(height: int, subsidy: int) -> None:
    assert mining.block_subsidy_sat(height) == subsidy


def test_the_total_subsidy_never_reaches_21_million_btc() -> None:
    total = sum(mining.block_subsidy_sat(h * 210_000) * 210_000 for h in range(70))
    assert total == 2_099_999_997_690_000


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
    apart = sum(mining.share_value_sat(terms, d) for d in shares)
    together = mining.share_value_sat(terms, sum(shares))
    assert apart <= together < apart + len(shares)
    exact = sum((mining.exact_share_value(terms, d) for d in shares), Fraction(0))
    assert apart <= exact < apart + len(shares)


@given(terms=fpps_terms(), difficulty=st.integers(0, 10**12))
@settings(max_examples=200)
def test_a_share_credit_floors_in_the_pools_favour_and_the_fee_goes_to_the_treasury(
    terms: FppsTerms, difficulty: int
) -> None:
    credit = mining.credit_share(terms, difficulty)
    exact = mining.exact_share_value(terms, difficulty)
    gross = mining.gross_share_value(terms, difficulty)
    assert credit.miner_sat <= exact < credit.miner_sat + 1
    assert credit.miner_sat + credit.treasury_sat == gross.numerator // gross.denominator


def test_fpps_reduces_to_the_specs_simplified_formula() -> None:
    """SRS-POOL-04: (block_subsidy / pool_difficulty) × 0.80 for a difficulty-1 share."""
    terms = FppsTerms(block_subsidy_sat=312_500_000, expected_fees_sat=0, network_difficulty=1000)
    assert mining.share_value_sat(terms, 1) == 312_500_000 * 8 // 10_000  # 250,000 sats
    assert mining.share_value_sat(terms, 4) == 1_000_000


def test_fpps_pays_expected_fees_and_scales_with_share_difficulty() -> None:
    terms = FppsTerms(
        block_subsidy_sat=312_500_000,
        expected_fees_sat=20_000_000,
        network_difficulty=100_000_000_000,
        pool_fee_bps=250,
    )
    value = Fraction(332_500_000 * 65_536, 100_000_000_000) * Fraction(9_750, 10_000)
    assert mining.share_value_sat(terms, 65_536) == value.numerator // value.denominator == 212


def test_fpps_terms_from_a_real_header_use_its_difficulty_and_the_subsidy_schedule() -> None:
    terms = mining.FppsTerms.from_block(height=1, bits=0x1D00FFFF)
    assert terms.network_difficulty == 1
    assert mining.share_value_sat(terms, 1) == 4_000_000_000


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
    split = mining.split_block_reward(reward)
    assert split.total_sat == reward
    assert split.treasury_sat <= Fraction(reward, 5) < split.treasury_sat + 1
    assert split.miners_sat >= Fraction(reward * 4, 5)


def test_a_full_block_reward_splits_eighty_twenty() -> None:
    split = mining.split_block_reward(312_500_003)
    assert (split.miners_sat, split.treasury_sat) == (250_000_003, 62_500_000)


def test_a_float_reward_is_refused() -> None:
    with pytest.raises(InvalidValue) as err:
        mining.split_block_reward(1.0)  # type: ignore[arg-type]
    assert err.value.field == "reward_sat"


# --------------------------------------------------------------------------- payouts


def account(miner: str, balance: int, last: int = 1_000) -> MinerAccount:
    return MinerAccount(miner, f"ln-{miner}", balance, last)


def test_a_balance_at_the_threshold_is_due_at_once() -> None:
    assert mining.payout_due(account("a", 10_000), now=1_001)
    assert not mining.payout_due(account("a", 9_999), now=1_001)


def test_a_small_positive_balance_is_due_one_hour_after_the_last_payout() -> None:
    assert not mining.payout_due(account("a", 1), now=1_000 + 3_599)
    assert mining.payout_due(account("a", 1), now=1_000 + 3_600)


def test_an_empty_balance_is_never_due() -> None:
    assert not mining.payout_due(account("a", 0), now=10**9)


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
    due = mining.payout_due(account("a", balance, last=500), 500 + elapsed, policy)
    assert due == (balance > 0 and (balance >= threshold or elapsed >= interval))


def test_the_treasurys_cut_rides_in_the_same_batch_as_the_miner_payouts() -> None:
    accounts = [account("b", 12_000), account("a", 10_000), account("c", 50)]
    batch = mining.plan_payout_batch(accounts, 5_512, "ln-treasury", now=1_010)
    assert [p.miner_id for p in batch.miner_payments] == ["a", "b"]
    assert batch.treasury_payment == mining.Payment("ln-treasury", 5_512, None)
    assert batch.payments[-1] == batch.treasury_payment
    assert batch.total_sat == 27_512


def test_no_batch_is_sent_while_no_miner_is_due_so_the_treasury_waits() -> None:
    batch = mining.plan_payout_batch([account("a", 50)], 1_000, "ln-treasury", now=1_010)
    assert batch.is_empty
    assert batch.treasury_payment is None
    assert batch.total_sat == 0


def test_a_miner_listed_twice_is_refused() -> None:
    with pytest.raises(InvalidValue) as err:
        mining.plan_payout_batch([account("a", 1), account("a", 2)], 0, "ln-t", now=5_000)
    assert err.value.field == "accounts"


def test_value_objects_name_the_offending_field() -> None:
    with pytest.raises(InvalidValue) as err:
        MinerAccount("a", "ln", -1, 0)
    assert err.value.field == "balance_sat"
    with pytest.raises(InvalidValue) as err:
        PayoutPolicy(threshold_sat=0)
    assert err.value.field == "threshold_sat"
    with pytest.raises(InvalidValue) as err:
        WorkTemplate("t", b"\x00" * 31, 0x1D00FFFF, 0)
    assert err.value.field == "prev_hash"
    with pytest.raises(InvalidValue) as err:
        Share("m", "t", GENESIS, 0)
    assert err.value.field == "share_difficulty"
