"""OWM's timestamp calendar: many digests, one Merkle tree per interval, one block per tree.

Works like a public OpenTimestamps calendar and offers the same two calls as the reference
library's ``opentimestamps.calendar.RemoteCalendar``, so the OTS adapter treats both alike:

* :meth:`Calendar.submit` acknowledges at once (SRS-PERF-10: well under 30 s; it is one SQLite
  insert): it appends a fresh 16-byte nonce to the digest (randomness is passed in), hashes
  with SHA-256 and returns that path ending in ``PendingAttestation(url)``. The nonce keeps the
  digests of other submitters out of each proof's Merkle path.
* :meth:`Calendar.flush` (called by :meth:`Calendar.tick` once per ``interval_s``, or by the
  background :class:`IntervalFlusher`) builds one Merkle tree over every pending commitment,
  commits its root through the chain port (by default: in the ``OP_RETURN`` of the coinbase of
  a block mined on the template, :func:`~owm_adapters.chain.local_chain.mine_commitment`) and
  stores,
  for every commitment, the path up to a ``BitcoinBlockHeaderAttestation``.
* :meth:`Calendar.get_timestamp` returns that path (``KeyError`` while still pending, as
  ``RemoteCalendar`` does on HTTP 404), which is what an upgrade merges into the proof.

Pending submissions live in a SQLite file, so a restart loses nothing: the next flush
includes them.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import attrs
from bitcoin.core import CBlock, b2lx
from opentimestamps.bitcoin import make_timestamp_from_block
from opentimestamps.core.notary import PendingAttestation
from opentimestamps.core.op import OpAppend, OpSHA256
from opentimestamps.core.serialize import BytesDeserializationContext, BytesSerializationContext
from opentimestamps.core.timestamp import Timestamp, make_merkle_tree

from owm_adapters.chain.local_chain import locked_transaction, mine_commitment
from owm_adapters.clock import SystemClock
from owm_adapters.files import private_file
from owm_core.errors import InvalidValue
from owm_core.ports.chain import Chain
from owm_core.ports.clock import Clock

log = logging.getLogger(__name__)

NONCE_BYTES = 16
DEFAULT_INTERVAL_S = 600
DEFAULT_URL = "http://127.0.0.1/owm-calendar"

RootCommitter = Callable[[bytes], tuple[int, CBlock]]
"""Puts a 32-byte root into a block that the chain accepted; (height, block)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    commitment   BLOB PRIMARY KEY,
    digest       BLOB NOT NULL,
    nonce        BLOB NOT NULL,
    submitted_at INTEGER NOT NULL,
    round_id     INTEGER,
    proof        BLOB
);
CREATE TABLE IF NOT EXISTS rounds (
    id           INTEGER PRIMARY KEY,
    root         BLOB NOT NULL,
    height       INTEGER NOT NULL,
    block_hash   TEXT NOT NULL,
    committed_at INTEGER NOT NULL,
    leaves       INTEGER NOT NULL
);
"""


@attrs.frozen
class CommittedRound:
    """One interval's Merkle tree, committed in the block at ``height``."""

    root: bytes
    height: int
    block_hash: str
    leaves: int
    committed_at: int


class Calendar:
    """A Merkle-aggregating OpenTimestamps calendar over a chain port, persisted in SQLite."""

    def __init__(
        self,
        path: str | Path,
        chain: Chain,
        url: str = DEFAULT_URL,
        randomness: Callable[[int], bytes] = os.urandom,
        clock: Clock | None = None,
        interval_s: int = DEFAULT_INTERVAL_S,
        commit_root: RootCommitter | None = None,
    ) -> None:
        PendingAttestation.check_uri(url.encode())
        if interval_s < 1:
            raise InvalidValue("interval_s", f"must be ≥ 1, got {interval_s}")
        self.url = url
        self.interval_s = interval_s
        self._path = str(path)
        self._chain = chain
        self._randomness = randomness
        self._clock = clock or SystemClock()
        self._commit_root = commit_root or (lambda root: mine_commitment(chain, root))
        self._lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._last_flush_at = self._clock.now()
        with self._db() as db:
            db.executescript(_SCHEMA)
        private_file(Path(self._path))

    def __repr__(self) -> str:
        return f"Calendar({self.url!r}, {self._path!r})"

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return locked_transaction(self._path, self._lock)

    # ----------------------------------------------------------------- RemoteCalendar's calls

    def submit(self, digest: bytes) -> Timestamp:
        """Accept ``digest`` now: digest ‖ nonce → SHA-256 → ``PendingAttestation(url)``.

        Returned at once and persisted before returning (SRS-PERF-10).
        """
        if not isinstance(digest, bytes) or not 20 <= len(digest) <= 64:
            raise InvalidValue("digest", "must be 20 to 64 bytes")
        nonce = self._randomness(NONCE_BYTES)
        if len(nonce) != NONCE_BYTES:
            raise InvalidValue("randomness", f"must give {NONCE_BYTES} bytes")
        timestamp = Timestamp(digest)
        commitment = timestamp.ops.add(OpAppend(nonce)).ops.add(OpSHA256())
        commitment.attestations.add(PendingAttestation(self.url))
        with self._db() as db:
            db.execute(
                "INSERT OR IGNORE INTO submissions (commitment, digest, nonce, submitted_at) "
                "VALUES (?, ?, ?, ?)",
                (commitment.msg, digest, nonce, self._clock.now()),
            )
        return timestamp

    def get_timestamp(self, commitment: bytes) -> Timestamp:
        """The path from ``commitment`` to its Bitcoin attestation; ``KeyError`` if pending."""
        with self._db() as db:
            row = db.execute(
                "SELECT proof FROM submissions WHERE commitment = ?", (commitment,)
            ).fetchone()
        if row is None or row[0] is None:
            raise KeyError(commitment.hex())
        return Timestamp.deserialize(BytesDeserializationContext(bytes(row[0])), commitment)

    # ----------------------------------------------------------------- aggregation

    def pending_count(self) -> int:
        """How many submissions wait for the next flush."""
        with self._db() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM submissions WHERE proof IS NULL"
            ).fetchone()
        return int(count)

    def rounds(self) -> list[CommittedRound]:
        """Every committed tree, oldest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT root, height, block_hash, leaves, committed_at FROM rounds ORDER BY id"
            ).fetchall()
        return [CommittedRound(bytes(r[0]), int(r[1]), str(r[2]), int(r[3]), int(r[4]))
                for r in rows]

    def flush(self) -> CommittedRound | None:
        """Commit every pending submission now: one Merkle tree, its root in one block.

        Returns None when nothing is pending. If the chain refuses the block the submissions
        stay pending and the error propagates (the next tick retries). Submissions keep being
        acknowledged while the block is mined; they join the next round.
        """
        with self._flush_lock:
            self._last_flush_at = self._clock.now()
            with self._db() as db:
                rows = db.execute(
                    "SELECT commitment FROM submissions WHERE proof IS NULL ORDER BY rowid"
                ).fetchall()
            if not rows:
                return None
            leaves = [Timestamp(bytes(r[0])) for r in rows]
            tip = make_merkle_tree(leaves)
            height, block = self._commit_root(tip.msg)
            anchored = make_timestamp_from_block(tip.msg, block, height)
            if anchored is None:
                raise InvalidValue("commit_root", "the block does not contain the root")
            tip.merge(anchored)
            committed = CommittedRound(
                root=tip.msg, height=height, block_hash=b2lx(block.GetHash()),
                leaves=len(leaves), committed_at=self._clock.now(),
            )
            with self._db() as db:
                cursor = db.execute(
                    "INSERT INTO rounds (root, height, block_hash, committed_at, leaves) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (committed.root, height, committed.block_hash, committed.committed_at,
                     committed.leaves),
                )
                round_id = cursor.lastrowid
                for leaf in leaves:
                    ctx = BytesSerializationContext()
                    leaf.serialize(ctx)
                    db.execute(
                        "UPDATE submissions SET proof = ?, round_id = ? WHERE commitment = ?",
                        (ctx.getbytes(), round_id, leaf.msg),
                    )
            log.info("calendar committed %d digests in block %d", len(leaves), height)
            return committed

    def tick(self) -> CommittedRound | None:
        """Flush if ``interval_s`` passed since the last flush; else do nothing."""
        if self._clock.now() - self._last_flush_at < self.interval_s:
            return None
        return self.flush()


class IntervalFlusher:
    """Calls :meth:`Calendar.tick` in a background thread until stopped (the calendar daemon)."""

    def __init__(self, calendar: Calendar, poll_s: float = 1.0) -> None:
        self._calendar = calendar
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="owm-calendar", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self._calendar.tick()
            except Exception:
                log.exception("calendar flush failed; submissions stay pending")

    def start(self) -> IntervalFlusher:
        """Start ticking."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop ticking and wait for the thread (a flush in progress completes)."""
        self._stop.set()
        self._thread.join()
