"""The mining pool's rules: share validation, FPPS crediting, the 80/20 split and payouts.

This module owns the pure arithmetic of the OWM pool (spec 4.11):

* Bitcoin's block subsidy schedule and proof of work: 80-byte header parsing, double SHA-256,
  compact ``nBits`` → target exactly as Bitcoin Core's ``arith_uint256::SetCompact`` (negative,
  overflowing and zero targets are invalid), share targets from share difficulty.
* Share validation against the current work template (SRS-SEC-15, SRS-POOL-06): every
  rejection is an :class:`~owm_core.errors.InvalidShare` with a stable reason code
  (``bad-length``, ``stale``, ``bad-nbits``, ``duplicate``,
  ``above-target``).
* FPPS share value (SRS-POOL-04)::

      value_sat = floor((subsidy_sat + expected_fees_sat) × share_difficulty
                        / network_difficulty × (10_000 − pool_fee_bps) / 10_000)

  The spec's simplified ``(block_subsidy / pool_difficulty) × 0.80`` is the special case
  ``expected_fees_sat = 0``, ``share_difficulty = 1`` (``pool_difficulty`` there is the network
  difficulty, i.e. the expected number of difficulty-1 shares per block) and
  ``pool_fee_bps = 2_000`` (:data:`DEFAULT_POOL_FEE_BPS`): the 20 % withheld is the treasury's
  cut (spec 4.11.1). Ours also pays the expected transaction fees and scales by the share's
  difficulty, which is what FPPS means; the value is floored, so rounding favours the pool.
* The 80 % miners / 20 % treasury split of a block reward (spec 4.11.1), conserving every sat.
* When a miner's balance is due (SRS-POOL-07) and the payout batch that carries the treasury's
  cut together with the miners' payments (SRS-POOL-08).

No I/O: time is passed in as POSIX seconds, the set of already-seen share hashes by the caller.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Collection, Iterable
from fractions import Fraction

import attrs

from owm_core import fields
from owm_core.errors import InvalidShare, InvalidValue

SAT_PER_BTC = 100_000_000
INITIAL_SUBSIDY_SAT = 50 * SAT_PER_BTC
"""Block subsidy of heights 0 … 209,999: 50 BTC."""
HALVING_INTERVAL_BLOCKS = 210_000
"""The subsidy halves every 210,000 blocks."""
MAX_HALVINGS = 64
"""After 64 halvings the subsidy is zero (Bitcoin Core's ``GetBlockSubsidy``)."""

DIFF1_TARGET = 0x00000000FFFF0000000000000000000000000000000000000000000000000000
"""The difficulty-1 target (``nBits`` 0x1d00ffff): difficulty = DIFF1_TARGET / target."""

HEADER_SIZE = 80
_HEADER_FORMAT = "<i32s32sIII"

BPS_DENOMINATOR = 10_000
DEFAULT_POOL_FEE_BPS = 2_000
"""The pool fee withheld from FPPS value: 20 %, the treasury's cut (spec 4.11.1, SRS-POOL-04)."""
TREASURY_SHARE_BPS = 2_000
"""The treasury's share of a block reward: 20 % (spec 4.11.1); miners receive the rest."""

DEFAULT_PAYOUT_THRESHOLD_SAT = 10_000
"""A miner balance of at least this many sats is paid out at once (SRS-POOL-07)."""
DEFAULT_PAYOUT_INTERVAL_S = 3_600
"""A positive balance is paid at the latest this long after the previous payout (SRS-POOL-07)."""


class ShareReason(enum.StrEnum):
    """Reason codes logged for rejected shares (SRS-POOL-06)."""

    BAD_LENGTH = "bad-length"
    STALE = "stale"
    BAD_NBITS = "bad-nbits"
    DUPLICATE = "duplicate"
    ABOVE_TARGET = "above-target"


# --------------------------------------------------------------------------- subsidy


def block_subsidy_sat(height: int) -> int:
    """The block subsidy at ``height`` in sats: 50 BTC halved every 210,000 blocks, 0 after 64.

    Mirrors Bitcoin Core's ``GetBlockSubsidy`` (integer right shift), which feeds FPPS
    (SRS-POOL-04).
    """
    if isinstance(height, bool) or not isinstance(height, int) or height < 0:
        raise InvalidValue("height", f"must be an integer ≥ 0, got {height!r}")
    halvings = height // HALVING_INTERVAL_BLOCKS
    if halvings >= MAX_HALVINGS:
        return 0
    return INITIAL_SUBSIDY_SAT >> halvings


# --------------------------------------------------------------------------- proof of work


def compact_to_target(bits: int) -> int:
    """Decode a compact ``nBits`` into a 256-bit target, like Bitcoin Core's ``SetCompact``.

    Bitcoin Core rejects a header whose ``nBits`` decodes negative (sign bit 0x00800000 set with
    a non-zero mantissa), overflows 256 bits, or is zero; so does this, with
    ``InvalidShare(reason="bad-nbits")`` (SRS-POOL-06).
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= 0xFFFFFFFF:
        raise InvalidShare(ShareReason.BAD_NBITS, f"nBits must be a uint32, got {bits!r}")
    size = bits >> 24
    word = bits & 0x007FFFFF
    if size <= 3:
        word >>= 8 * (3 - size)
        target = word
    else:
        target = word << (8 * (size - 3))
    if word != 0 and bits & 0x00800000:
        raise InvalidShare(ShareReason.BAD_NBITS, f"nBits {bits:#010x} encodes a negative target")
    if word != 0 and (size > 34 or (word > 0xFF and size > 33) or (word > 0xFFFF and size > 32)):
        raise InvalidShare(ShareReason.BAD_NBITS, f"nBits {bits:#010x} overflows 256 bits")
    if target == 0:
        raise InvalidShare(ShareReason.BAD_NBITS, f"nBits {bits:#010x} encodes a zero target")
    return target


def target_to_compact(target: int) -> int:
    """Encode a positive 256-bit target as compact ``nBits`` (Bitcoin Core's ``GetCompact``).

    Lossy like the original: the mantissa keeps the three most significant bytes.
    """
    if isinstance(target, bool) or not isinstance(target, int) or not 0 < target < 1 << 256:
        raise InvalidValue("target", f"must be an integer in [1, 2**256), got {target!r}")
    size = (target.bit_length() + 7) // 8
    compact = target << 8 * (3 - size) if size <= 3 else target >> 8 * (size - 3)
    if compact & 0x00800000:
        compact >>= 8
        size += 1
    return compact | size << 24


def share_target(share_difficulty: int) -> int:
    """The target a share of ``share_difficulty`` must meet: ``DIFF1_TARGET // difficulty``.

    Share difficulty is a positive integer chosen by the pool (SRS-POOL-06).
    """
    if isinstance(share_difficulty, bool) or not isinstance(share_difficulty, int):
        raise InvalidValue("share_difficulty", "must be an integer")
    if share_difficulty < 1:
        raise InvalidValue("share_difficulty", f"must be ≥ 1, got {share_difficulty}")
    return DIFF1_TARGET // share_difficulty


def difficulty_of_target(target: int) -> Fraction:
    """The exact difficulty of a target: ``DIFF1_TARGET / target`` as a fraction."""
    if isinstance(target, bool) or not isinstance(target, int) or target <= 0:
        raise InvalidValue("target", f"must be a positive integer, got {target!r}")
    return Fraction(DIFF1_TARGET, target)


def double_sha256(data: bytes) -> bytes:
    """SHA-256 of SHA-256 of ``data``: Bitcoin's block and transaction hash (internal order)."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


@attrs.frozen
class BlockHeader:
    """The six fields of an 80-byte Bitcoin block header (hashes in internal byte order).

    ``prev_hash`` and ``merkle_root`` are as serialised in the header, i.e. the reverse of the
    hex shown by block explorers. Used to validate shares against the template (SRS-SEC-15).
    """

    version: int = attrs.field(validator=fields.integer(-(2**31), 2**31 - 1))
    prev_hash: bytes = attrs.field(validator=fields.raw_bytes(length=32))
    merkle_root: bytes = attrs.field(validator=fields.raw_bytes(length=32))
    time: int = attrs.field(validator=fields.integer(0, 0xFFFFFFFF))
    bits: int = attrs.field(validator=fields.integer(0, 0xFFFFFFFF))
    nonce: int = attrs.field(validator=fields.integer(0, 0xFFFFFFFF))

    @classmethod
    def parse(cls, raw: bytes) -> BlockHeader:
        """Parse 80 serialised bytes; any other length is ``InvalidShare("bad-length")``."""
        if not isinstance(raw, bytes) or len(raw) != HEADER_SIZE:
            size = len(raw) if isinstance(raw, bytes) else type(raw).__name__
            raise InvalidShare(ShareReason.BAD_LENGTH, f"a header is 80 bytes, got {size}")
        version, prev_hash, merkle_root, time, bits, nonce = struct.unpack(_HEADER_FORMAT, raw)
        return cls(version, prev_hash, merkle_root, time, bits, nonce)

    def serialize(self) -> bytes:
        """The 80 bytes that are hashed."""
        return struct.pack(
            _HEADER_FORMAT,
            self.version,
            self.prev_hash,
            self.merkle_root,
            self.time,
            self.bits,
            self.nonce,
        )

    def hash(self) -> bytes:
        """Double SHA-256 of the serialised header, internal byte order."""
        return double_sha256(self.serialize())

    def hash_hex(self) -> str:
        """The block hash as displayed by Bitcoin Core and explorers (byte-reversed hex)."""
        return self.hash()[::-1].hex()

    def hash_value(self) -> int:
        """The hash read as a little-endian 256-bit integer, the number compared to targets."""
        return int.from_bytes(self.hash(), "little")

    def target(self) -> int:
        """The network target encoded in ``bits`` (``InvalidShare("bad-nbits")`` if invalid)."""
        return compact_to_target(self.bits)

    def meets_target(self, target: int) -> bool:
        """Whether this header's proof of work satisfies ``target`` (hash ≤ target)."""
        return self.hash_value() <= target


# --------------------------------------------------------------------------- shares


@attrs.frozen
class WorkTemplate:
    """The block template miners currently work on (from getblocktemplate, SRS-POOL-05).

    A share is fresh only if it names this template and builds on ``prev_hash`` with ``bits``
    (SRS-SEC-15). ``prev_hash`` is in header (internal) byte order.
    """

    template_id: str = attrs.field(validator=fields.text(max_len=128))
    prev_hash: bytes = attrs.field(validator=fields.raw_bytes(length=32))
    bits: int = attrs.field(validator=fields.integer(0, 0xFFFFFFFF))
    height: int = attrs.field(validator=fields.integer(minimum=0))


@attrs.frozen
class Share:
    """A miner's submitted proof of work at the pool's share difficulty (SRS-POOL-06)."""

    miner_id: str = attrs.field(validator=fields.text(max_len=256))
    template_id: str = attrs.field(validator=fields.text(max_len=128))
    header: bytes = attrs.field(validator=fields.instance_of(bytes))
    share_difficulty: int = attrs.field(validator=fields.integer(minimum=1))


@attrs.frozen
class AcceptedShare:
    """A share that passed validation: who did how much work, and whether it is a block.

    ``credited_difficulty`` is the difficulty FPPS pays for: the share difficulty, capped at the
    network difficulty (a share can never be worth more than a block, e.g. on regtest).
    """

    miner_id: str
    share_difficulty: int
    credited_difficulty: Fraction
    hash_hex: str
    is_block: bool


def validate_share(
    share: Share, template: WorkTemplate, seen_hashes: Collection[bytes] = ()
) -> AcceptedShare:
    """Accept a share or raise ``InvalidShare`` with its reason code (SRS-SEC-15, SRS-POOL-06).

    Checks, in order: 80-byte header (``bad-length``); the share names the current template and
    its header builds on the template's previous block (``stale``); its ``nBits`` is the
    template's and decodes to a valid target (``bad-nbits``); its hash was not submitted before
    (``duplicate``, ``seen_hashes`` holds internal-order hashes kept by the caller); the hash
    as a little-endian integer is ≤ the share target (``above-target``). The share target is
    ``DIFF1_TARGET // share_difficulty``, but never harder than the network target: a block
    solution is always a valid share. ``is_block`` tells the pool to submit it as a block.
    """
    header = BlockHeader.parse(share.header)
    if share.template_id != template.template_id or header.prev_hash != template.prev_hash:
        raise InvalidShare(
            ShareReason.STALE,
            f"share for template {share.template_id!r}, current is {template.template_id!r}",
        )
    if header.bits != template.bits:
        raise InvalidShare(
            ShareReason.BAD_NBITS,
            f"nBits {header.bits:#010x} differs from the template's {template.bits:#010x}",
        )
    network_target = header.target()
    digest = header.hash()
    if digest in seen_hashes:
        raise InvalidShare(ShareReason.DUPLICATE, "this share was already submitted")
    value = int.from_bytes(digest, "little")
    target = max(share_target(share.share_difficulty), network_target)
    if value > target:
        raise InvalidShare(
            ShareReason.ABOVE_TARGET,
            f"hash is above the difficulty-{share.share_difficulty} share target",
        )
    return AcceptedShare(
        miner_id=share.miner_id,
        share_difficulty=share.share_difficulty,
        credited_difficulty=min(
            Fraction(share.share_difficulty), difficulty_of_target(network_target)
        ),
        hash_hex=digest[::-1].hex(),
        is_block=value <= network_target,
    )


# --------------------------------------------------------------------------- FPPS


def _positive_difficulty(
    _instance: object, attribute: attrs.Attribute[Fraction], value: object
) -> None:
    if not isinstance(value, Fraction) or value <= 0:
        raise InvalidValue(attribute.name, f"must be a positive int or Fraction, got {value!r}")


def _to_fraction(value: object) -> object:
    """Exact ints become fractions; anything else (floats!) is left for the validator to refuse."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Fraction(value)
    return value


@attrs.frozen
class FppsTerms:
    """What one difficulty unit of work is worth right now (SRS-POOL-04).

    ``network_difficulty`` is exact (an ``int`` or a ``Fraction``; floats are refused); use
    :meth:`from_block` to derive it from a template's ``nBits``. ``pool_fee_bps`` is the share of
    value withheld, in basis points; the default 2,000 is the treasury's 20 %.
    """

    block_subsidy_sat: int = attrs.field(validator=fields.money())
    expected_fees_sat: int = attrs.field(validator=fields.money())
    network_difficulty: Fraction = attrs.field(
        converter=_to_fraction,
        validator=_positive_difficulty,
    )
    pool_fee_bps: int = attrs.field(
        default=DEFAULT_POOL_FEE_BPS, validator=fields.integer(0, BPS_DENOMINATOR)
    )

    @classmethod
    def from_block(
        cls,
        height: int,
        bits: int,
        expected_fees_sat: int = 0,
        pool_fee_bps: int = DEFAULT_POOL_FEE_BPS,
    ) -> FppsTerms:
        """Terms for mining at ``height`` with network target ``bits`` (subsidy by schedule)."""
        return cls(
            block_subsidy_sat=block_subsidy_sat(height),
            expected_fees_sat=expected_fees_sat,
            network_difficulty=difficulty_of_target(compact_to_target(bits)),
            pool_fee_bps=pool_fee_bps,
        )


def _check_share_difficulty(share_difficulty: int | Fraction) -> None:
    if isinstance(share_difficulty, bool) or not isinstance(share_difficulty, int | Fraction):
        raise InvalidValue("share_difficulty", "must be an integer or a Fraction")
    if share_difficulty < 0:
        raise InvalidValue("share_difficulty", f"must be ≥ 0, got {share_difficulty}")


def gross_share_value(terms: FppsTerms, share_difficulty: int | Fraction) -> Fraction:
    """The exact expected block reward a share earns before the pool fee (SRS-POOL-04)."""
    _check_share_difficulty(share_difficulty)
    reward = terms.block_subsidy_sat + terms.expected_fees_sat
    return reward * Fraction(share_difficulty) / terms.network_difficulty


def exact_share_value(terms: FppsTerms, share_difficulty: int | Fraction) -> Fraction:
    """The exact FPPS value of a share after the pool fee, before rounding (SRS-POOL-04)."""
    keep = Fraction(BPS_DENOMINATOR - terms.pool_fee_bps, BPS_DENOMINATOR)
    return gross_share_value(terms, share_difficulty) * keep


def share_value_sat(terms: FppsTerms, share_difficulty: int | Fraction) -> int:
    """The FPPS credit of a share in whole sats, floored in the pool's favour (SRS-POOL-04).

    ``(subsidy + expected fees) × share_difficulty / network_difficulty × (1 − fee)``.
    Crediting shares one by one never pays more than crediting their summed difficulty, and
    pays less by fewer sats than there are shares (each floor loses < 1 sat).
    """
    value = exact_share_value(terms, share_difficulty)
    return value.numerator // value.denominator


@attrs.frozen
class ShareCredit:
    """What a share adds to balances: the miner's FPPS value and the treasury's cut (4.11.1)."""

    miner_sat: int = attrs.field(validator=fields.money())
    treasury_sat: int = attrs.field(validator=fields.money())


def credit_share(terms: FppsTerms, share_difficulty: int | Fraction) -> ShareCredit:
    """Split a share's floored gross value into the miner's credit and the treasury's cut.

    The miner gets :func:`share_value_sat`; the treasury gets the rest of the floored gross
    value, so the fee withheld from miners accrues to the treasury (spec 4.11.1, SRS-POOL-08).
    """
    gross = gross_share_value(terms, share_difficulty)
    gross_sat = gross.numerator // gross.denominator
    miner_sat = share_value_sat(terms, share_difficulty)
    return ShareCredit(miner_sat=miner_sat, treasury_sat=gross_sat - miner_sat)


@attrs.frozen
class RewardSplit:
    """A block reward divided between miners (80 %) and the treasury (20 %) (spec 4.11.1)."""

    miners_sat: int = attrs.field(validator=fields.money())
    treasury_sat: int = attrs.field(validator=fields.money())

    @property
    def total_sat(self) -> int:
        """The whole reward: miners plus treasury, to the sat."""
        return self.miners_sat + self.treasury_sat


def split_block_reward(reward_sat: int, treasury_bps: int = TREASURY_SHARE_BPS) -> RewardSplit:
    """Split ``reward_sat`` 80/20 without losing a sat (spec 4.11.1).

    The treasury gets ``floor(reward × 20 %)``; the miners get the remainder, so the rounding
    remainder (< 1 sat of the exact 20 %) always goes to the miners' side.
    """
    if isinstance(reward_sat, bool) or not isinstance(reward_sat, int) or reward_sat < 0:
        raise InvalidValue("reward_sat", f"must be an integer ≥ 0, got {reward_sat!r}")
    if isinstance(treasury_bps, bool) or not isinstance(treasury_bps, int):
        raise InvalidValue("treasury_bps", "must be an integer")
    if not 0 <= treasury_bps <= BPS_DENOMINATOR:
        raise InvalidValue("treasury_bps", f"must be in [0, 10000], got {treasury_bps}")
    treasury = reward_sat * treasury_bps // BPS_DENOMINATOR
    return RewardSplit(miners_sat=reward_sat - treasury, treasury_sat=treasury)


# --------------------------------------------------------------------------- payouts


@attrs.frozen
class PayoutPolicy:
    """When balances are paid (SRS-POOL-07): at ``threshold_sat`` or after ``interval_s``."""

    threshold_sat: int = attrs.field(
        default=DEFAULT_PAYOUT_THRESHOLD_SAT, validator=fields.money(minimum=1)
    )
    interval_s: int = attrs.field(
        default=DEFAULT_PAYOUT_INTERVAL_S, validator=fields.integer(minimum=1)
    )


@attrs.frozen
class MinerAccount:
    """A miner's unpaid FPPS balance, its Lightning destination and its last payout time."""

    miner_id: str = attrs.field(validator=fields.text(max_len=256))
    ln_destination: str = attrs.field(validator=fields.text(max_len=2048))
    balance_sat: int = attrs.field(validator=fields.money())
    last_payout_at: int = attrs.field(validator=fields.timestamp())


def payout_due(account: MinerAccount, now: int, policy: PayoutPolicy | None = None) -> bool:
    """Whether ``account`` must be paid now: whichever comes first of (SRS-POOL-07)

    * the balance reached the threshold (``balance ≥ threshold_sat``, default 10,000 sats), or
    * ``interval_s`` (default 1 hour) passed since the last payout and the balance is positive.

    An empty balance is never due: there is nothing to send.
    """
    policy = policy or PayoutPolicy()
    if isinstance(now, bool) or not isinstance(now, int) or now < 0:
        raise InvalidValue("now", f"must be POSIX seconds ≥ 0, got {now!r}")
    if account.balance_sat == 0:
        return False
    return (
        account.balance_sat >= policy.threshold_sat
        or now - account.last_payout_at >= policy.interval_s
    )


@attrs.frozen
class Payment:
    """One Lightning payment of a batch."""

    destination: str = attrs.field(validator=fields.text(max_len=2048))
    amount_sat: int = attrs.field(validator=fields.money(minimum=1))
    miner_id: str | None = None
    """The miner paid, or ``None`` for the treasury's cut."""


@attrs.frozen
class PayoutBatch:
    """The payments dispatched together: due miners and the treasury's cut (SRS-POOL-08)."""

    created_at: int = attrs.field(validator=fields.timestamp())
    miner_payments: tuple[Payment, ...]
    treasury_payment: Payment | None

    @property
    def payments(self) -> tuple[Payment, ...]:
        """Every payment of the batch, the treasury's last."""
        tail = (self.treasury_payment,) if self.treasury_payment is not None else ()
        return self.miner_payments + tail

    @property
    def total_sat(self) -> int:
        """Sum of all payments in the batch."""
        return sum(p.amount_sat for p in self.payments)

    @property
    def is_empty(self) -> bool:
        """No miner is due, so nothing is sent (the treasury waits for the next batch)."""
        return not self.miner_payments


def plan_payout_batch(
    accounts: Iterable[MinerAccount],
    treasury_owed_sat: int,
    treasury_destination: str,
    now: int,
    policy: PayoutPolicy | None = None,
) -> PayoutBatch:
    """Pay every due miner its whole balance, and the treasury's owed cut in the same batch.

    SRS-POOL-07 decides which miners are due; SRS-POOL-08 puts the treasury's accrued 20 %
    (``treasury_owed_sat``) into the very batch that pays them. If no miner is due the batch is
    empty and the treasury's cut stays owed until the next one. Miner payments are ordered by
    ``miner_id`` so that a batch is deterministic.
    """
    policy = policy or PayoutPolicy()
    if isinstance(treasury_owed_sat, bool) or not isinstance(treasury_owed_sat, int):
        raise InvalidValue("treasury_owed_sat", "must be an integer")
    if treasury_owed_sat < 0:
        raise InvalidValue("treasury_owed_sat", f"must be ≥ 0, got {treasury_owed_sat}")
    listed = list(accounts)
    if len({a.miner_id for a in listed}) != len(listed):
        raise InvalidValue("accounts", "a miner appears more than once")
    due = sorted((a for a in listed if payout_due(a, now, policy)), key=lambda a: a.miner_id)
    miner_payments = tuple(
        Payment(destination=a.ln_destination, amount_sat=a.balance_sat, miner_id=a.miner_id)
        for a in due
    )
    treasury_payment = (
        Payment(destination=treasury_destination, amount_sat=treasury_owed_sat)
        if miner_payments and treasury_owed_sat > 0
        else None
    )
    return PayoutBatch(
        created_at=now, miner_payments=miner_payments, treasury_payment=treasury_payment
    )
