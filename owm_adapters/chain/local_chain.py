"""The embedded local chain for devnets, and mining a commitment into a block from a template.

:class:`LocalChain` implements :class:`owm_core.ports.chain.Chain` without a Bitcoin node: it
keeps real Bitcoin blocks (python-bitcoinlib ``CBlock``) at regtest difficulty (``nBits``
0x207fffff) in a SQLite file, validates what is submitted the way bitcoind does for the rules
that matter here (previous block, difficulty bits, proof of work, Merkle root, BIP34 coinbase
height, coinbase amount, median time past) and answers with bitcoind's rejection reasons.

:func:`mine_commitment` is how the timestamp calendar commits a Merkle root through any chain
port: it builds a coinbase whose ``OP_RETURN`` output carries the 32-byte root, a block on the
template, grinds the nonce until the header's hash is ≤ the target and submits it. At regtest
difficulty that takes two attempts on average, so proofs made on a devnet end in real
``BitcoinBlockHeaderAttestation``\\ s over real headers. Against mainnet the same call cannot
find a block; there the pool's miners do it (the template's mempool transactions are not
included: a coinbase-only block is always valid, it only forgoes fees).
"""

from __future__ import annotations

import io
import sqlite3
import struct
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from bitcoin.core import (
    CBlock,
    CMutableTransaction,
    CMutableTxIn,
    CMutableTxOut,
    COutPoint,
    CTransaction,
    b2lx,
    lx,
)
from bitcoin.core.script import OP_RETURN, OP_TRUE, CScript
from bitcoin.core.serialize import (
    SerializationError,
    SerializationTruncationError,
    VectorSerializer,
)

from owm_adapters.clock import SystemClock
from owm_adapters.files import private_file
from owm_core.errors import BlockRejected, ChainUnavailable, InvalidShare, UnknownBlock
from owm_core.pool.bitcoin import (
    HEADER_SIZE,
    BlockHeader,
    BlockTemplate,
    block_subsidy_sat,
    compact_to_target,
    double_sha256,
)
from owm_core.ports.chain import Chain
from owm_core.ports.clock import Clock
from owm_core.provenance.versions import Network

REGTEST_BITS = 0x207FFFFF
BLOCK_VERSION = 0x20000000
ANYONE_CAN_SPEND = bytes(CScript([OP_TRUE]))
"""Default payout script of devnet coinbases: nobody's key, nothing of value."""
MEDIAN_TIME_SPAN = 11
MAX_FUTURE_BLOCK_TIME_S = 2 * 60 * 60
_ZERO_HASH = "00" * 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash   TEXT NOT NULL UNIQUE,
    time   INTEGER NOT NULL,
    header BLOB NOT NULL,
    raw    BLOB NOT NULL
);
"""


# --------------------------------------------------------------------------- block building


def coinbase_transaction(
    height: int, value_sat: int, commitment: bytes | None, payout_script: bytes, extra_nonce: int
) -> CTransaction:
    """A coinbase paying ``value_sat`` to ``payout_script``, committing ``commitment``.

    The scriptSig starts with the height (BIP34) and carries an extra nonce; the commitment
    (a calendar's Merkle root) is the data of a zero-value ``OP_RETURN`` output.
    """
    script_sig = CScript([height, b"owm" + struct.pack("<Q", extra_nonce)])
    outputs = [CMutableTxOut(value_sat, CScript(payout_script))]
    if commitment is not None:
        outputs.append(CMutableTxOut(0, CScript([OP_RETURN, commitment])))
    tx = CMutableTransaction([CMutableTxIn(COutPoint(), script_sig)], outputs)
    return CTransaction.from_tx(tx)


def grind(block: CBlock, max_attempts: int = 1 << 32) -> CBlock:
    """The block with the first nonce whose header hash is ≤ the target of its ``nBits``.

    Raises ``BlockRejected("high-hash")`` when ``max_attempts`` nonces do not suffice (any
    difficulty above regtest's).
    """
    target = compact_to_target(block.nBits)
    prefix = block.get_header().serialize()[:76]
    for nonce in range(min(max_attempts, 1 << 32)):
        digest = double_sha256(prefix + struct.pack("<I", nonce))
        if int.from_bytes(digest, "little") <= target:
            return CBlock(
                nVersion=block.nVersion, hashPrevBlock=block.hashPrevBlock,
                hashMerkleRoot=block.hashMerkleRoot, nTime=block.nTime, nBits=block.nBits,
                nNonce=nonce, vtx=block.vtx,
            )
    raise BlockRejected("high-hash", f"no nonce below {max_attempts} meets the target")


def build_block(
    template: BlockTemplate,
    commitment: bytes | None,
    payout_script: bytes = ANYONE_CAN_SPEND,
    extra_nonce: int = 0,
) -> CBlock:
    """An unground, coinbase-only block on ``template`` whose coinbase commits ``commitment``."""
    coinbase = coinbase_transaction(
        template.height, template.coinbase_value_sat, commitment, payout_script, extra_nonce
    )
    return CBlock(  # computes hashMerkleRoot from vtx
        nVersion=template.version,
        hashPrevBlock=lx(template.previous_block_hash),
        nTime=max(template.curtime, template.mintime),
        nBits=template.bits,
        vtx=[coinbase],
    )


def mine_commitment(
    chain: Chain,
    commitment: bytes | None,
    payout_script: bytes = ANYONE_CAN_SPEND,
    max_attempts: int = 1 << 20,
) -> tuple[int, CBlock]:
    """Mine and submit the next block with ``commitment`` in its coinbase; (height, block).

    This is the calendar's way of committing a Merkle root through the chain port. When the
    template's difficulty needs more than ``max_attempts`` hashes on average (anything but
    regtest-like difficulty) it refuses at once with ``BlockRejected("high-hash")`` instead of
    grinding in vain: such roots must be committed by real miners (the pool).
    """
    template = chain.block_template()
    expected_attempts = (1 << 256) // (compact_to_target(template.bits) + 1)
    if expected_attempts > max_attempts:
        raise BlockRejected(
            "high-hash",
            f"nBits {template.bits:#010x} needs ~{expected_attempts} hashes a block; "
            "commit this root through a miner instead",
        )
    block = grind(build_block(template, commitment, payout_script), max_attempts)
    chain.submit_block(block.serialize())
    return template.height, block


def _decode_block(raw: bytes) -> tuple[BlockHeader, list[CTransaction]]:
    """Header and transactions of a serialised block, without python-bitcoinlib's own checks
    (its ``CBlock`` refuses a wrong Merkle root at decoding; bitcoind decodes, then rejects)."""
    try:
        header = BlockHeader.parse(raw[:HEADER_SIZE])
        stream = io.BytesIO(raw[HEADER_SIZE:])
        vtx = list(VectorSerializer.stream_deserialize(CTransaction, stream))
        if stream.read(1):
            raise ValueError("trailing bytes after the last transaction")
    except (InvalidShare, SerializationError, SerializationTruncationError, ValueError) as exc:
        raise BlockRejected("block-decode-failed", f"Block decode failed: {exc}") from exc
    return header, vtx


# --------------------------------------------------------------------------- the chain


@contextmanager
def locked_transaction(path: str, lock: threading.RLock) -> Iterator[sqlite3.Connection]:
    """A fresh connection to the SQLite file at ``path``, held under ``lock`` as one transaction.

    Committed when the block ends normally, rolled back when it raises, closed either way. The
    devnet's file-backed adapters (this chain, the OpenTimestamps calendar) open one per call,
    so that the processes sharing a devnet directory each see the others' writes.
    """
    with lock:
        db = sqlite3.connect(path)
        try:
            with db:
                yield db
        finally:
            db.close()


class LockedFile:
    """Base of the devnet's SQLite-file adapters: the file at ``path`` with its ``schema``
    created on first use, kept owner-only, and opened per call by :meth:`_db` as one
    transaction under the adapter's lock (see :func:`locked_transaction`)."""

    def __init__(self, path: str | Path, schema: str, what: str) -> None:
        self._path = str(path)
        self._lock = threading.RLock()
        try:
            with self._db() as db:
                db.executescript(schema)
        except sqlite3.DatabaseError as exc:
            raise ChainUnavailable(f"{self._path} is not {what}: {exc}") from exc
        private_file(Path(self._path))

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return locked_transaction(self._path, self._lock)


class LocalChain(LockedFile):
    """A regtest-difficulty Bitcoin chain in one SQLite file, behind the chain port.

    Created with a genesis block on first use; ``mine`` extends it (optionally committing 32
    bytes), ``submit_block`` accepts blocks built elsewhere (the calendar, the fake bitcoind).
    Safe to share between threads.
    """

    network = Network.REGTEST

    def __init__(self, path: str | Path, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        super().__init__(path, _SCHEMA, "a local chain file")
        if self._tip() is None:
            genesis = BlockTemplate(
                height=0, previous_block_hash=_ZERO_HASH, bits=REGTEST_BITS,
                curtime=self._clock.now(), version=1,
                coinbase_value_sat=block_subsidy_sat(0),
            )
            block = grind(build_block(genesis, b"OWM devnet genesis".ljust(32, b"\0")))
            self._append(0, block)

    def __repr__(self) -> str:
        return f"LocalChain({self._path!r})"

    def _tip(self) -> tuple[int, str] | None:
        with self._db() as db:
            row = db.execute("SELECT height, hash FROM blocks ORDER BY height DESC LIMIT 1")
            found = row.fetchone()
        return (int(found[0]), str(found[1])) if found else None

    def _median_time_past(self, tip_height: int) -> int:
        with self._db() as db:
            rows = db.execute(
                "SELECT time FROM blocks WHERE height > ? ORDER BY height DESC",
                (tip_height - MEDIAN_TIME_SPAN,),
            ).fetchall()
        times = sorted(int(r[0]) for r in rows)
        return times[len(times) // 2]

    def _append(self, height: int, block: CBlock) -> None:
        header = block.get_header().serialize()
        with self._db() as db:
            db.execute(
                "INSERT INTO blocks (height, hash, time, header, raw) VALUES (?, ?, ?, ?, ?)",
                (height, b2lx(block.GetHash()), block.nTime, header, block.serialize()),
            )

    # ----------------------------------------------------------------- chain port

    def tip_height(self) -> int:
        """Height of the best block (``getblockcount``)."""
        tip = self._tip()
        assert tip is not None
        return tip[0]

    def block_hash(self, height: int) -> str:
        """Display-hex hash of the block at ``height``; ``UnknownBlock`` if none."""
        with self._db() as db:
            row = db.execute("SELECT hash FROM blocks WHERE height = ?", (height,)).fetchone()
        if row is None:
            raise UnknownBlock(f"Block height out of range: {height}")
        return str(row[0])

    def block_header(self, block_hash: str) -> bytes:
        """The 80 header bytes of ``block_hash``; ``UnknownBlock`` if none."""
        return bytes(self._block_row(block_hash)[1])

    def block_height(self, block_hash: str) -> int:
        """Height of ``block_hash`` (for verbose ``getblockheader``); ``UnknownBlock`` if none."""
        return int(self._block_row(block_hash)[0])

    def raw_block(self, block_hash: str) -> bytes:
        """The serialised block ``block_hash``; ``UnknownBlock`` if none."""
        return bytes(self._block_row(block_hash)[2])

    def _block_row(self, block_hash: str) -> tuple[Any, ...]:
        """``(height, header, raw)`` of ``block_hash``; ``UnknownBlock`` if none."""
        with self._db() as db:
            row = db.execute(
                "SELECT height, header, raw FROM blocks WHERE hash = ?", (block_hash,)
            ).fetchone()
        if row is None:
            raise UnknownBlock(f"Block not found: {block_hash}")
        return tuple(row)

    def block_template(self) -> BlockTemplate:
        """A template for the next block: regtest bits, time ≥ median time past + 1."""
        with self._lock:
            height, tip_hash = self._tip() or (0, _ZERO_HASH)
            mintime = self._median_time_past(height) + 1
            return BlockTemplate(
                height=height + 1, previous_block_hash=tip_hash, bits=REGTEST_BITS,
                curtime=max(self._clock.now(), mintime), version=BLOCK_VERSION,
                coinbase_value_sat=block_subsidy_sat(height + 1), mintime=mintime,
            )

    def submit_block(self, raw_block: bytes) -> None:
        """Validate and append a block on the tip; ``BlockRejected`` with bitcoind's reason."""
        header, vtx = _decode_block(raw_block)
        with self._lock:
            tip = self._tip()
            assert tip is not None
            height = tip[0] + 1
            self._check(header, vtx, tip, height)
            row = (height, header.hash_hex(), header.time, header.serialize(), raw_block)
            insert = "INSERT INTO blocks (height, hash, time, header, raw) VALUES (?, ?, ?, ?, ?)"
            try:
                with self._db() as db:
                    db.execute(insert, row)
            except sqlite3.IntegrityError:  # another writer of this file took the height first
                taken = f"height {height} was taken meanwhile"
                raise BlockRejected("inconclusive", taken) from None

    def _check(
        self, block: BlockHeader, vtx: list[CTransaction], tip: tuple[int, str], height: int
    ) -> None:
        block_hash = block.hash_hex()
        with self._db() as db:
            if db.execute("SELECT 1 FROM blocks WHERE hash = ?", (block_hash,)).fetchone():
                raise BlockRejected("duplicate", f"block {block_hash} is already known")
            prev = block.prev_hash[::-1].hex()
            if prev != tip[1]:
                known = db.execute("SELECT 1 FROM blocks WHERE hash = ?", (prev,)).fetchone()
                reason = "inconclusive" if known else "prev-blk-not-found"
                raise BlockRejected(reason, f"block does not build on the tip {tip[1]}")
        if block.bits != REGTEST_BITS:
            raise BlockRejected("bad-diffbits", f"nBits {block.bits:#010x} is not regtest's")
        try:
            meets = block.meets_target(compact_to_target(block.bits))
        except InvalidShare as exc:
            raise BlockRejected("bad-diffbits", exc.message) from exc
        if not meets:
            raise BlockRejected("high-hash", "proof of work failed")
        if not vtx or not vtx[0].is_coinbase():
            raise BlockRejected("bad-cb-missing", "first transaction is not a coinbase")
        if any(tx.is_coinbase() for tx in vtx[1:]):
            raise BlockRejected("bad-cb-multiple", "more than one coinbase")
        if CBlock.build_merkle_tree_from_txs(vtx)[-1] != block.merkle_root:
            raise BlockRejected("bad-txnmrklroot", "hashMerkleRoot mismatch")
        expected_prefix = bytes(CScript([height]))
        if not bytes(vtx[0].vin[0].scriptSig).startswith(expected_prefix):
            raise BlockRejected("bad-cb-height", "block height mismatch in coinbase")
        if sum(out.nValue for out in vtx[0].vout) > block_subsidy_sat(height):
            raise BlockRejected("bad-cb-amount", "coinbase pays too much")
        if block.time <= self._median_time_past(tip[0]):
            raise BlockRejected("time-too-old", "block's timestamp is too early")
        if block.time > self._clock.now() + MAX_FUTURE_BLOCK_TIME_S:
            raise BlockRejected("time-too-new", "block timestamp too far in the future")

    # ----------------------------------------------------------------- devnet conveniences

    def mine(self, commitment: bytes | None = None) -> str:
        """Mine one block on the tip (committing ``commitment`` if given); its hash."""
        _height, block = mine_commitment(self, commitment)
        return str(b2lx(block.GetHash()))
