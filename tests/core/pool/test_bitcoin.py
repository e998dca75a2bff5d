"""Bitcoin primitives the pool relies on: proof of work against real headers, shares, subsidy."""

from __future__ import annotations

import struct
from fractions import Fraction

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidShare, InvalidValue
from owm_core.pool import bitcoin
from owm_core.pool.bitcoin import DIFF1_TARGET, BlockHeader, Share, WorkTemplate

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
    target = bitcoin.compact_to_target(REGTEST_BITS)
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
    accepted = bitcoin.validate_share(share, template_for(GENESIS))
    assert accepted.hash_hex == GENESIS_HASH
    assert accepted.is_block
    assert accepted.credited_difficulty == 1


def test_the_share_target_is_exact_at_the_genesis_hash() -> None:
    """Difficulty DIFF1 // hash is the highest share difficulty the genesis header meets."""
    header = BlockHeader.parse(GENESIS)
    hardest = DIFF1_TARGET // header.hash_value()
    assert hardest == 2536  # the genesis block's well-known "difficulty" of its own hash
    assert header.meets_target(bitcoin.share_target(hardest))
    assert not header.meets_target(bitcoin.share_target(hardest + 1))


def test_a_block_is_a_valid_share_at_any_difficulty_but_credited_at_most_a_block() -> None:
    accepted = bitcoin.validate_share(Share("m", "tpl-1", GENESIS, 10**6), template_for(GENESIS))
    assert accepted.is_block
    assert accepted.share_difficulty == 10**6
    assert accepted.credited_difficulty == 1  # the network difficulty of nBits 0x1d00ffff


def test_a_share_on_an_older_template_is_rejected_as_stale() -> None:
    """Block 1's header builds on genesis; once the template moved on, it is stale."""
    current = WorkTemplate("tpl-2", bytes.fromhex(BLOCK1_HASH)[::-1], 0x1D00FFFF, 2)
    with pytest.raises(InvalidShare) as err:
        bitcoin.validate_share(Share("m", "tpl-2", BLOCK1, 1), current)
    assert err.value.reason == "stale"


def test_a_share_naming_another_template_id_is_stale_even_on_the_same_parent() -> None:
    with pytest.raises(InvalidShare) as err:
        bitcoin.validate_share(Share("m", "tpl-old", BLOCK1, 1), template_for(BLOCK1, "tpl-new"))
    assert err.value.reason == "stale"


def test_a_header_that_is_not_80_bytes_is_rejected_with_bad_length() -> None:
    for raw in (GENESIS[:79], GENESIS + b"\x00", b""):
        with pytest.raises(InvalidShare) as err:
            bitcoin.validate_share(Share("m", "tpl-1", raw, 1), template_for(GENESIS))
        assert err.value.reason == "bad-length"


def test_a_share_whose_nbits_differ_from_the_template_is_rejected() -> None:
    template = WorkTemplate("tpl-1", bytes(32), 0x1C00FFFF, 0)
    with pytest.raises(InvalidShare) as err:
        bitcoin.validate_share(Share("m", "tpl-1", GENESIS, 1), template)
    assert err.value.reason == "bad-nbits"


def test_a_share_already_seen_is_rejected_as_duplicate() -> None:
    seen = {BlockHeader.parse(GENESIS).hash()}
    with pytest.raises(InvalidShare) as err:
        bitcoin.validate_share(Share("m", "tpl-1", GENESIS, 1), template_for(GENESIS), seen)
    assert err.value.reason == "duplicate"


def test_a_tampered_real_header_no_longer_meets_a_difficulty_one_share_target() -> None:
    tampered = GENESIS[:-4] + (2083236894).to_bytes(4, "little")
    with pytest.raises(InvalidShare) as err:
        bitcoin.validate_share(Share("m", "tpl-1", tampered, 1), template_for(GENESIS))
    assert err.value.reason == "above-target"


# --------------------------------------------------------------------------- regtest


def test_a_ground_regtest_header_is_a_valid_share_and_block() -> None:
    prev = bytes(range(32))
    raw = grind(prev, want_valid=True)
    template = WorkTemplate("reg", prev, REGTEST_BITS, 101)
    accepted = bitcoin.validate_share(Share("m", "reg", raw, 1), template)
    assert accepted.is_block
    assert accepted.credited_difficulty == bitcoin.difficulty_of_target(
        bitcoin.compact_to_target(REGTEST_BITS)
    )
    assert accepted.credited_difficulty < 1


def test_a_regtest_header_above_the_regtest_target_is_rejected() -> None:
    prev = bytes(range(32))
    raw = grind(prev, want_valid=False)
    with pytest.raises(InvalidShare) as err:
        bitcoin.validate_share(
            Share("m", "reg", raw, 1), WorkTemplate("reg", prev, REGTEST_BITS, 1)
        )
    assert err.value.reason == "above-target"


def test_the_regtest_target_decodes_like_bitcoin_core() -> None:
    assert bitcoin.compact_to_target(REGTEST_BITS) == 0x7FFFFF << (8 * 29)


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
    assert bitcoin.compact_to_target(bits) == target


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
        bitcoin.compact_to_target(bits)
    assert err.value.reason == "bad-nbits"


@given(st.integers(min_value=1, max_value=(1 << 255) - 1))
@settings(max_examples=200)
def test_compact_encoding_round_trips_through_decoding(target: int) -> None:
    bits = bitcoin.target_to_compact(target)
    decoded = bitcoin.compact_to_target(bits)
    assert bitcoin.target_to_compact(decoded) == bits
    assert decoded <= target  # the mantissa keeps the top bytes, so it rounds down


def test_share_targets_divide_the_difficulty_one_target() -> None:
    assert bitcoin.share_target(1) == DIFF1_TARGET
    assert bitcoin.share_target(1024) == DIFF1_TARGET // 1024
    with pytest.raises(InvalidValue) as err:
        bitcoin.share_target(0)
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
    assert bitcoin.block_subsidy_sat(height) == subsidy


def test_the_total_subsidy_never_reaches_21_million_btc() -> None:
    total = sum(bitcoin.block_subsidy_sat(h * 210_000) * 210_000 for h in range(70))
    assert total == 2_099_999_997_690_000


def test_work_templates_and_shares_name_the_offending_field() -> None:
    with pytest.raises(InvalidValue) as err:
        WorkTemplate("t", b"\x00" * 31, 0x1D00FFFF, 0)
    assert err.value.field == "prev_hash"
    with pytest.raises(InvalidValue) as err:
        Share("m", "t", GENESIS, 0)
    assert err.value.field == "share_difficulty"


def judged_as_before(
    share: Share, template: WorkTemplate, seen: set[bytes]
) -> bitcoin.AcceptedShare | str:
    """The share rules as they were written over :class:`BlockHeader` (before the pool's hot
    path packed and unpacked headers itself): the verdict, or the rejection's reason."""
    try:
        header = BlockHeader.parse(share.header)
        if share.template_id != template.template_id or header.prev_hash != template.prev_hash:
            return "stale"
        if header.bits != template.bits:
            return "bad-nbits"
        network_target = header.target()
    except InvalidShare as error:
        return error.reason
    digest = header.hash()
    if digest in seen:
        return "duplicate"
    value = int.from_bytes(digest, "little")
    if value > max(bitcoin.share_target(share.share_difficulty), network_target):
        return "above-target"
    network_difficulty = bitcoin.difficulty_of_target(network_target)
    return bitcoin.AcceptedShare(
        share.miner_id, share.share_difficulty,
        min(network_difficulty, Fraction(share.share_difficulty)),
        digest[::-1].hex(), value <= network_target,
    )  # fmt: skip


def mostly(value: object, *others: object) -> st.SearchStrategy[object]:
    """``value`` six times in seven or more, else one of ``others``."""
    return st.sampled_from([value] * 6 + list(others))


@given(
    nonce=st.integers(0, 2**32 - 1),
    other_bits=mostly(None, 0x1D00FFFF, 0x2100FFFF, 0x1F00FFFF, 0x01800001),
    template_bits=st.sampled_from([REGTEST_BITS, REGTEST_BITS, 0x1D00FFFF, 0x1F00FFFF]),
    same_parent=mostly(True, False),
    same_template=mostly(True, False),
    difficulty=st.integers(1, 2**40),
    seen_before=mostly(False, True),
    length=mostly(80, 79, 81),
)
@settings(max_examples=300)
def test_the_pools_fast_share_check_judges_every_share_as_the_header_rules_do(
    nonce: int, other_bits: int | None, template_bits: int, same_parent: bool,
    same_template: bool, difficulty: int, seen_before: bool, length: int,
) -> None:  # fmt: skip
    bits = template_bits if other_bits is None else other_bits
    prev = b"\x11" * 32
    raw = struct.pack("<i32s32sIII", 0x20000000, prev if same_parent else b"\x22" * 32,
                      b"\x33" * 32, 1_700_000_000, bits, nonce)  # fmt: skip
    header = (raw + b"\x00")[:length]
    template = WorkTemplate("tpl-1", prev, template_bits, 1)
    share = Share("miner", "tpl-1" if same_template else "tpl-0", header, difficulty)
    seen = {bitcoin.double_sha256(raw)} if seen_before else set()
    expected = judged_as_before(share, template, seen)
    event("accepted" if isinstance(expected, bitcoin.AcceptedShare) else expected)
    try:
        got: bitcoin.AcceptedShare | str = bitcoin.validate_header(
            "miner", share.template_id, header, difficulty, template, seen
        )
    except InvalidShare as error:
        got = error.reason
    assert got == expected


def one_by_one(
    shares: list[Share], template: WorkTemplate, seen: set[bytes], target: int | None
) -> list[bitcoin.AcceptedShare | tuple[str, str]]:
    """The shares through :func:`bitcoin.validate_header` in order, each accepted hash added to
    ``seen``, stopping after a block: what the pool did before it judged batches at once (and,
    with the share target of the difficulty, what the rules over :class:`BlockHeader` say)."""
    verdicts: list[bitcoin.AcceptedShare | tuple[str, str]] = []
    for share in shares:
        before = judged_as_before(share, template, seen) if target is None else None
        try:
            accepted = bitcoin.validate_header(
                share.miner_id, share.template_id, share.header, share.share_difficulty,
                template, seen, target=target,
            )  # fmt: skip
        except InvalidShare as error:
            assert before in (None, error.reason)
            verdicts.append((error.reason, error.message))
            continue
        assert before in (None, accepted)
        seen.add(bytes.fromhex(accepted.hash_hex)[::-1])
        verdicts.append(accepted)
        if accepted.is_block:
            break
    return verdicts


batch_share = st.tuples(
    st.integers(0, 40),  # nonce: few values, so repeats (duplicates) are common
    mostly(None, 0x1D00FFFF, 0x2100FFFF, 0x01800001),  # other nBits
    mostly(True, False),  # on the template's parent
    mostly(True, False),  # naming the template
    mostly(80, 79, 0),  # header length
)


@given(
    sent=st.lists(batch_share, max_size=12),
    template_bits=st.sampled_from([REGTEST_BITS, 0x1D00FFFF, 0x1F00FFFF, 0x2100FFFF]),
    difficulty=st.integers(1, 2**40),
    target=mostly(None, (1 << 255) - 1, DIFF1_TARGET + 1),
    seen_before=st.sets(st.integers(0, 40), max_size=3),
)
@settings(max_examples=300)
def test_a_batch_of_shares_is_judged_as_the_same_shares_one_by_one(
    sent: list[tuple[int, int | None, bool, bool, int]], template_bits: int, difficulty: int,
    target: int | None, seen_before: set[int],
) -> None:  # fmt: skip
    prev = b"\x11" * 32

    def header(nonce: int, bits: int, same_parent: bool) -> bytes:
        return struct.pack("<i32s32sIII", 0x20000000, prev if same_parent else b"\x22" * 32,
                           b"\x33" * 32, 1_700_000_000, bits, nonce)  # fmt: skip

    template = WorkTemplate("tpl-1", prev, template_bits, 1)
    shares = [
        Share("miner", "tpl-1" if same_template else "tpl-0",
              header(nonce, template_bits if bits is None else bits, parent)[:length], difficulty)
        for nonce, bits, parent, same_template, length in sent
    ]  # fmt: skip
    seen = {bitcoin.double_sha256(header(n, template_bits, True)) for n in seen_before}
    expected_seen = set(seen)
    expected = one_by_one(shares, template, expected_seen, target)
    got = bitcoin.validate_headers(
        [(s.miner_id, s.template_id, s.header) for s in shares], difficulty, template, seen,
        target=target,
    )  # fmt: skip
    event(f"{sum(isinstance(v, bitcoin.AcceptedShare) for v in expected)} accepted")
    assert [v if isinstance(v, bitcoin.AcceptedShare) else (v.reason, v.message) for v in got] == (
        expected
    )
    assert seen == expected_seen  # the accepted hashes, and only those, were added


U32 = st.integers(0, 0xFFFFFFFF)


@given(job=U32, rolled=U32, outside=st.integers(0, 0xFFFFFFFF))
def test_a_version_may_differ_from_its_jobs_in_the_bip320_bits_only(
    job: int, rolled: int, outside: int
) -> None:
    within = job ^ (rolled & bitcoin.VERSION_ROLLING_MASK)
    assert bitcoin.rolled_version_allowed(job, within)
    changed = outside & ~bitcoin.VERSION_ROLLING_MASK
    assert bitcoin.rolled_version_allowed(job, within ^ changed) is (changed == 0)
