"""Bitcoin's protocol primitives as the pool uses them: subsidy, proof of work and shares.

* Bitcoin's block subsidy schedule and proof of work: 80-byte header parsing, double SHA-256,
  compact ``nBits`` → target exactly as Bitcoin Core's ``arith_uint256::SetCompact`` (negative,
  overflowing and zero targets are invalid), share targets from share difficulty.
* The block template a node hands out (``getblocktemplate``, SRS-POOL-05) and the work
  template miners build on.
* Share validation against the current work template (SRS-SEC-15, SRS-POOL-06): every
  rejection is an :class:`~owm_core.errors.InvalidShare` with a stable reason code
  (``bad-length``, ``stale``, ``bad-nbits``, ``duplicate``,
  ``above-target``).

What a share is worth and how it is paid lives in :mod:`owm_core.pool.fpps`. No I/O: the set of
already-seen share hashes is kept by the caller.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import struct
from collections.abc import Collection, Iterable
from fractions import Fraction
from typing import Protocol

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
#: The header's layout (version, prev_hash, merkle_root, time, bits, nonce), for callers that
#: pack headers without building a :class:`BlockHeader` (the pool's share path).
HEADER_STRUCT = struct.Struct(_HEADER_FORMAT)

VERSION_ROLLING_MASK = 0x1FFFE000
"""The block version's general-purpose bits (BIP320, bits 13 to 28), the only ones a miner may
change from its job's version ("version rolling", which ASICs rely on; SV2 section 5: the
downstream may manipulate them freely, and the pool does not set ``REQUIRES_FIXED_VERSION``)."""


def rolled_version_allowed(job_version: int, version: int) -> bool:
    """Whether a share's ``version`` (u32) keeps every bit of its job's version outside
    :data:`VERSION_ROLLING_MASK` (SRS-SEC-15): a version with other bits changed would make a
    block the network refuses (say, below version 4 or without BIP9's top bits)."""
    return not (version ^ job_version) & ~VERSION_ROLLING_MASK & 0xFFFFFFFF


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
class BlockTemplate:
    """The part of ``getblocktemplate``'s answer needed to build a block on the current tip.

    ``previous_block_hash`` is display hex, ``bits`` the compact target, ``transactions`` the
    raw hex of the mempool transactions to include after the coinbase (may be empty).
    """

    height: int = attrs.field(validator=fields.integer(minimum=0))
    previous_block_hash: str = attrs.field(validator=fields.hex_digest(32))
    bits: int = attrs.field(validator=fields.integer(0, 0xFFFFFFFF))
    curtime: int = attrs.field(validator=fields.timestamp())
    version: int = attrs.field(validator=fields.integer(-(2**31), 2**31 - 1))
    coinbase_value_sat: int = attrs.field(validator=fields.money())
    transactions: tuple[str, ...] = ()
    mintime: int = attrs.field(default=0, validator=fields.timestamp())


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
    return validate_header(
        share.miner_id, share.template_id, share.header, share.share_difficulty, template,
        seen_hashes,
    )  # fmt: skip


def validate_header(
    miner_id: str,
    template_id: str,
    header: bytes,
    share_difficulty: int,
    template: WorkTemplate,
    seen_hashes: Collection[bytes] = (),
    *,
    target: int | None = None,
) -> AcceptedShare:
    """:func:`validate_share` on the share's fields, without building the :class:`Share`: one
    share through :func:`validate_headers` (``seen_hashes`` only read), the same checks in the
    same order, the same reason codes.

    ``target``, when given, is the share target instead of ``DIFF1_TARGET // share_difficulty``
    — easier than difficulty 1 where miners cannot reach that (a benchmark, a test network
    whose blocks are harder than its shares); the share is then credited the difficulty of
    ``max(target, network target)``, exactly, and keeps ``share_difficulty`` as its nominal
    difficulty.
    """
    (judged,) = validate_headers(
        [(miner_id, template_id, header)], share_difficulty, template, _ReadOnly(seen_hashes),
        target=target,
    )  # fmt: skip
    if isinstance(judged, InvalidShare):
        raise judged
    return judged


class SeenHashes(Protocol):
    """The hashes of the shares already accepted (internal byte order), kept by the caller."""

    def __contains__(self, digest: object, /) -> bool: ...

    def add(self, digest: bytes, /) -> None: ...


class _ReadOnly:
    """A collection of seen hashes that :func:`validate_headers` may read but not add to."""

    def __init__(self, hashes: Collection[bytes]) -> None:
        self._hashes = hashes

    def __contains__(self, digest: object) -> bool:
        return digest in self._hashes

    def add(self, digest: bytes) -> None:
        pass


def validate_headers(
    shares: Iterable[tuple[str, str, bytes]],
    share_difficulty: int,
    template: WorkTemplate,
    seen_hashes: SeenHashes,
    *,
    target: int | None = None,
) -> list[AcceptedShare | InvalidShare]:
    """The share rules (:func:`validate_share`) over ``(miner_id, template_id, header)``
    triples received together, in order: each share's :class:`AcceptedShare`, or the
    :class:`~owm_core.errors.InvalidShare` it is rejected with. Each accepted share's hash is
    added to ``seen_hashes``, so a repeat later in the batch is a ``duplicate``; the list stops
    after the first share that is a block (the template ends there: the shares after it are
    judged on the next one). The same verdicts as the shares checked one by one, with the
    template's network target, share target and credited difficulty worked out once per batch
    instead of once per share: the pool's hot path (SRS-PERF-11). ``target`` as for
    :func:`validate_header`."""
    judged: list[AcceptedShare | InvalidShare] = []
    template_id_now, prev, bits = template.template_id, template.prev_hash, template.bits
    bits_bytes, sha256 = bits.to_bytes(4, "little"), hashlib.sha256
    network_target = limit = credited = None
    new, (set_miner, set_difficulty, set_credited, set_hash, set_block) = object.__new__, _SLOTS
    with contextlib.suppress(InvalidShare):  # raised below, for each share that gets there
        network_target = _network_target(bits)
    for miner_id, template_id, header in shares:
        if not isinstance(header, bytes) or len(header) != HEADER_SIZE:
            judged.append(_wrong_length(header))
        elif template_id != template_id_now or header[4:36] != prev:
            judged.append(_stale(template_id, template))
        elif header[72:76] != bits_bytes or network_target is None:
            judged.append(_wrong_bits(header, template))
        elif (digest := sha256(sha256(header).digest()).digest()) in seen_hashes:
            judged.append(InvalidShare(ShareReason.DUPLICATE, "this share was already submitted"))
        else:
            value = int.from_bytes(digest, "little")
            if limit is None:
                goal = share_target(share_difficulty) if target is None else target
                limit = max(goal, network_target)
            if value > limit:
                judged.append(_above_target(share_difficulty, target))
                continue
            if credited is None:
                credited = _credited(share_difficulty, target, network_target)
            seen_hashes.add(digest)
            # AcceptedShare(miner_id, share_difficulty, credited, hash hex, is_block), its slots
            # set directly: values of the rules' own making need no validators (there are none)
            accepted = new(AcceptedShare)
            set_miner(accepted, miner_id)
            set_difficulty(accepted, share_difficulty)
            set_credited(accepted, credited)
            set_hash(accepted, digest[::-1].hex())
            set_block(accepted, value <= network_target)
            judged.append(accepted)
            if value <= network_target:
                break
    return judged


_SLOTS = tuple(
    AcceptedShare.__dict__[field.name].__set__ for field in attrs.fields(AcceptedShare)
)


def _wrong_length(header: object) -> InvalidShare:
    size = len(header) if isinstance(header, bytes) else type(header).__name__
    return InvalidShare(ShareReason.BAD_LENGTH, f"a header is 80 bytes, got {size}")


def _stale(template_id: str, template: WorkTemplate) -> InvalidShare:
    return InvalidShare(
        ShareReason.STALE,
        f"share for template {template_id!r}, current is {template.template_id!r}",
    )


def _wrong_bits(header: bytes, template: WorkTemplate) -> InvalidShare:
    """A header's ``nBits`` other than the template's, or the template's own that do not
    decode (:func:`compact_to_target` says why)."""
    bits = int.from_bytes(header[72:76], "little")
    if bits != template.bits:
        return InvalidShare(
            ShareReason.BAD_NBITS,
            f"nBits {bits:#010x} differs from the template's {template.bits:#010x}",
        )
    try:
        compact_to_target(bits)
    except InvalidShare as error:
        return error
    raise AssertionError(f"nBits {bits:#010x} decode but were refused")  # pragma: no cover


def _above_target(share_difficulty: int, target: int | None) -> InvalidShare:
    return InvalidShare(
        ShareReason.ABOVE_TARGET,
        f"hash is above the difficulty-{share_difficulty} share target"
        if target is None else f"hash is above the share target {target:#x}",
    )  # fmt: skip


@functools.lru_cache(maxsize=64)
def _network_target(bits: int) -> int:
    """:func:`compact_to_target` of a header's ``nBits`` (an int from ``struct``), once per
    value: a pool judges thousands of shares on one template's bits."""
    return compact_to_target(bits)


@functools.lru_cache(maxsize=64)
def _credited(share_difficulty: int, target: int | None, network_target: int) -> Fraction:
    """The difficulty FPPS pays a share for: its share difficulty (or ``target``'s), capped at
    the network difficulty, as an exact fraction (once per combination, not per share)."""
    if target is not None:
        return difficulty_of_target(max(target, network_target))
    # min(share difficulty, network difficulty) compared in integers: d <= DIFF1 / target
    if share_difficulty * network_target > DIFF1_TARGET:
        return difficulty_of_target(network_target)
    return Fraction(share_difficulty)
