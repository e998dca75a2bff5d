"""The pool's work and share judging: templates from the chain port, one job per channel,
shares checked and recorded, blocks submitted (SRS-POOL-05, SRS-POOL-06, SRS-SEC-15).

:class:`MiningPool` holds the current *epoch* — the template it fetched from
``getblocktemplate`` through the :class:`~owm_core.ports.chain.Chain` port (Bitcoin Core or
Knots over JSON-RPC, or the embedded chain of a devnet) — and the share difficulty. Each
channel gets its own extranonce prefix, hence its own coinbase paying the pool and its own
Merkle root (:mod:`owm_core.pool.coinbase`). A submitted share is rebuilt into an 80-byte header
and judged by :func:`owm_core.pool.bitcoin.validate_share`; a rejection answers the
specification's ``SubmitShares.Error`` with a code from :data:`ERROR_CODES`, is counted and
logged. An accepted share is stored in the share repository and credited to its miner at the
FPPS rate in msat (:meth:`owm_core.pool.fpps.MinerCredit.add_share`), kept in the miner-credit
repository when one is given (the coordinator's store; paid by
:mod:`owm_adapters.services.pool_payouts`), else in memory; one that meets the network target
is assembled into a block and offered with ``submitblock``, then the pool moves to the next
template and sends every channel new work.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import attrs

from owm_adapters.pool.log_limits import LogThrottle
from owm_adapters.pool.recording import ShareRecorder
from owm_core.errors import (
    BlockRejected,
    ChainUnavailable,
    Conflict,
    InvalidShare,
    InvalidValue,
)
from owm_core.pool import bitcoin, coinbase
from owm_core.pool.bitcoin import (
    HEADER_STRUCT,
    AcceptedShare,
    BlockTemplate,
    ShareReason,
)
from owm_core.pool.stats import PoolWork
from owm_core.ports.chain import Chain
from owm_core.ports.repositories.pool import (
    MinerCreditRepository,
    ShareRejectionRepository,
    ShareRepository,
)

log = logging.getLogger(__name__)

ERROR_CODES = {
    ShareReason.STALE: "stale-share",
    ShareReason.ABOVE_TARGET: "difficulty-too-low",
    ShareReason.DUPLICATE: "duplicate-share",
    ShareReason.BAD_NBITS: "invalid-nbits",
    ShareReason.BAD_LENGTH: "invalid-share",
}
"""``SubmitShares.Error`` codes for each rejection reason (SRS-POOL-06); besides these the pool
answers ``invalid-channel-id`` (no such channel on this connection), ``invalid-job-id`` (a job
this channel was never given: a fabricated share) and ``invalid-timestamp`` (``ntime`` before
the job's minimum or over two hours ahead)."""

MAX_FUTURE_S = 2 * 60 * 60


@attrs.frozen
class Job:
    """Work handed to one channel: the coinbase it hashes and the epoch it belongs to."""

    job_id: int
    epoch: int
    coinbase: bytes
    merkle_root: bytes
    version: int
    min_ntime: int
    #: An extended channel's job: the coinbase before and after the whole extranonce (the
    #: channel's prefix and the miner's bytes); empty for a standard channel's.
    coinbase_prefix: bytes = b""
    coinbase_suffix: bytes = b""

    def with_extranonce(self, extranonce: bytes) -> Job:
        """This extended job with the miner's full extranonce (the channel's prefix and the
        miner's bytes) in its coinbase: the coinbase and Merkle root a share was hashed on."""
        transaction = self.coinbase_prefix + extranonce + self.coinbase_suffix
        return attrs.evolve(
            self, coinbase=transaction, merkle_root=coinbase.merkle_root(transaction)
        )


@attrs.frozen
class Submission:
    """One share as a miner submitted it: who, on which job, and the header fields it chose."""

    miner_id: str
    job: Job
    nonce: int
    ntime: int
    version: int


@attrs.frozen
class Verdict:
    """What became of one share: accepted (with its credit) or the error code answered."""

    accepted: AcceptedShare | None = None
    error_code: str | None = None
    block_hash: str | None = None
    credit_msat: int = 0


def _checked_share_target(target: int | None) -> int | None:
    """A share target set directly, easier than difficulty 1 (benchmarks, test networks whose
    miners cannot reach difficulty 1 but whose blocks are harder than their shares); None:
    ``DIFF1_TARGET // share_difficulty``. See :func:`owm_core.pool.bitcoin.validate_header`."""
    if target is not None and not bitcoin.DIFF1_TARGET < target < 1 << 256:
        raise InvalidValue("share_target", "must be easier than difficulty 1, below 2**256")
    return target


def _digest(share: AcceptedShare) -> bytes:
    """The share's header hash in internal byte order (what the duplicate check keeps)."""
    return bytes.fromhex(share.hash_hex)[::-1]


_REJECTED = "share rejected: miner=%s reason=%s (%s)"


class MiningPool:
    """The pool's shared state: the current template, seen shares, counters (thread-safe)."""

    def __init__(
        self,
        chain: Chain,
        shares: ShareRepository,
        now: Callable[[], int],
        *,
        payout_script: bytes,
        share_difficulty: int = 1,
        credits: MinerCreditRepository | None = None,
        atomic: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
        rejections: ShareRejectionRepository | None = None,
        fpps_subsidy_sat: int | None = None,
        share_target: int | None = None,
    ) -> None:
        self._chain = chain
        self._shares = shares
        self._now = now
        self.payout_script = payout_script
        self.share_difficulty = share_difficulty
        self.share_target = _checked_share_target(share_target)
        self._lock = threading.RLock()
        self.epoch = 0
        self.template: BlockTemplate | None = None
        self._seen: set[bytes] = set()
        self._listeners: list[Callable[[str], None]] = []
        self.accepted = 0
        self.rejected: collections.Counter[str] = collections.Counter()
        self._rejected_by_miner: collections.Counter[tuple[str, str]] = collections.Counter()
        self.blocks: list[str] = []
        self.earned_msat: collections.Counter[str] = collections.Counter()
        self._recorder = ShareRecorder(shares, now, credits, atomic, fpps_subsidy_sat)
        self._rejections = rejections
        self._subsidy = fpps_subsidy_sat
        self._unflushed: collections.Counter[tuple[str, str]] = collections.Counter()
        self._rejection_lines = LogThrottle()
        self._work_cache: tuple[BlockTemplate, int, bytes, bitcoin.WorkTemplate] | None = None

    # ------------------------------------------------------------------ templates

    def refresh(self) -> bool:
        """Fetch a template; on a new tip start a new epoch (old jobs become stale) and tell the
        connections to send new work. Whether the epoch changed."""
        template = self._chain.block_template()
        with self._lock:
            current = self.template
            if current is not None and (current.previous_block_hash, current.height) == (
                template.previous_block_hash,
                template.height,
            ):
                return False
            self.template = template
            self.epoch += 1
            self._seen.clear()
            listeners = list(self._listeners)
        log.info("pool work: height %d on %s", template.height, template.previous_block_hash)
        for listener in listeners:
            listener("epoch")
        return True

    def set_share_difficulty(self, difficulty: int) -> None:
        """Change the share difficulty; open channels get ``SetTarget`` with the new target."""
        bitcoin.share_target(difficulty)
        with self._lock:
            self.share_difficulty = difficulty
            listeners = list(self._listeners)
        for listener in listeners:
            listener("target")

    def poll(self, stop: threading.Event, interval_s: float = 5.0) -> None:
        """Refresh the template every ``interval_s`` until ``stop`` is set (run in a worker
        thread): a block found elsewhere makes the pool's jobs stale within one interval."""
        while not stop.wait(interval_s):
            try:
                self.refresh()
            except ChainUnavailable as error:
                log.warning("no block template: %s", error.message)

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener("epoch")`` on every new epoch and ``listener("target")`` when the
        share difficulty changes; the function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def work(self) -> PoolWork | None:
        """What the pool mines now (height, ``nBits``, share difficulty), None before its first
        template: the pool page's current difficulty and FPPS rate (SRS-POOL-10)."""
        with self._lock:
            template = self.template
            if template is None:
                return None
            return PoolWork(template.height, template.bits, self.share_difficulty, self._subsidy)

    def rejections(self) -> dict[str, dict[str, int]]:
        """Shares rejected per miner and reason code (SRS-POOL-06, the live feed of
        SRS-POOL-09): the stored totals plus those not yet flushed, or, without a rejection
        store, those counted since this pool started."""
        with self._lock:
            source = self._rejected_by_miner if self._rejections is None else self._unflushed
            counted = dict(source)
        by_miner = self._rejections.by_miner() if self._rejections is not None else {}
        for (miner, code), n in sorted(counted.items()):
            codes = by_miner.setdefault(miner, {})
            codes[code] = codes.get(code, 0) + n
        return {miner: dict(sorted(codes.items())) for miner, codes in sorted(by_miner.items())}

    def flush_rejections(self) -> int:
        """Write the rejections counted since the last flush to the store in one write (the
        worker loop calls this every few seconds, so a flood of bad shares costs one write per
        period, not one per share); how many were written."""
        if self._rejections is None:
            return 0
        with self._lock:
            pending, self._unflushed = self._unflushed, collections.Counter()
        if pending:
            try:
                self._rejections.add(dict(pending), self._now())
            except Exception:
                with self._lock:
                    self._unflushed.update(pending)  # kept for the next flush
                raise
        return sum(pending.values())

    def network_target(self) -> int:
        assert self.template is not None
        return bitcoin.compact_to_target(self.template.bits)

    def channel_target(self) -> int:
        """The target a channel's shares must meet: the share target, never harder than a block."""
        share = self.share_target or bitcoin.share_target(self.share_difficulty)
        return max(share, self.network_target())

    def make_job(self, job_id: int, extranonce_prefix: bytes, extranonce_size: int = 0) -> Job:
        """This epoch's work for a channel whose coinbase carries ``extranonce_prefix``; for an
        extended channel (``extranonce_size`` > 0) also the coinbase cut around the prefix and
        the miner's ``extranonce_size`` bytes (its own coinbase: all-zero miner bytes)."""
        with self._lock:
            template = self.template
            if template is None:
                raise ChainUnavailable("the pool has no block template yet")
            paying = (template.height, bitcoin.block_subsidy_sat(template.height),
                      self.payout_script)  # fmt: skip
            tx = coinbase.coinbase_transaction(*paying, extranonce_prefix + bytes(extranonce_size))
            prefix, suffix = (
                coinbase.coinbase_parts(*paying, len(extranonce_prefix) + extranonce_size)
                if extranonce_size else (b"", b"")
            )  # fmt: skip
            return Job(
                coinbase_prefix=prefix,
                coinbase_suffix=suffix,
                job_id=job_id,
                epoch=self.epoch,
                coinbase=tx,
                merkle_root=coinbase.merkle_root(tx),
                version=template.version & 0xFFFFFFFF,
                min_ntime=max(template.curtime, template.mintime),
            )

    def prev_hash(self) -> bytes:
        """The current template's previous block hash in header byte order."""
        assert self.template is not None
        return self._work(self.template)[0]

    def _work(self, template: BlockTemplate) -> tuple[bytes, bitcoin.WorkTemplate]:
        """``template``'s previous hash in header order and the share rules' view of it, made
        once per template and epoch instead of once per share (SRS-PERF-11)."""
        cached = self._work_cache
        if cached is None or cached[0] is not template or cached[1] != self.epoch:
            prev = bytes.fromhex(template.previous_block_hash)[::-1]
            work = bitcoin.WorkTemplate(str(self.epoch), prev, template.bits, template.height)
            cached = self._work_cache = (template, self.epoch, prev, work)
        return cached[2], cached[3]

    # ------------------------------------------------------------------ shares

    def judge(self, miner_id: str, job: Job, nonce: int, ntime: int, version: int) -> Verdict:
        """Judge one share of ``job``; record it if accepted and submit it if it is a block."""
        (verdict,) = self.judge_batch([Submission(miner_id, job, nonce, ntime, version)])
        return verdict

    def judge_batch(self, submissions: Sequence[Submission]) -> list[Verdict]:
        """Judge shares received together, in order, against the same template: the accepted
        ones and their credits are stored in one write (SRS-POOL-04, SRS-PERF-11); blocks are
        submitted after. A block ends the template, so the shares after it are judged as if
        they came after it alone: against the next template (stale if built on the old tip).
        One verdict per submission."""
        verdicts: list[Verdict | None] = []  # None: accepted, completed by _finish
        found: list[tuple[AcceptedShare, bytes, Job, int]] = []  # with its verdict's position
        later: Sequence[Submission] = ()
        with self._lock:
            template = self.template
            assert template is not None
            context = (template, *self._work(template), self._now() + MAX_FUTURE_S)
            for index, submission in enumerate(submissions):
                checked = self._check(submission, *context)
                if isinstance(checked, Verdict):
                    verdicts.append(checked)
                    continue
                share = checked[0]
                found.append((share, checked[1], submission.job, len(verdicts)))
                self._seen.add(_digest(share))  # a duplicate later in the batch is one
                verdicts.append(None)
                if share.is_block:
                    later = submissions[index + 1 :]
                    break
            if not found:
                return verdicts  # type: ignore[return-value]  # all rejected: no None left
            try:
                credited = self._recorder.record([entry[0] for entry in found], template)
            except Conflict:  # one was stored before this process started: judge one by one
                self._seen.difference_update(_digest(entry[0]) for entry in found)
                return self._one_by_one(submissions) if len(submissions) > 1 else [
                    self.reject(submissions[0].miner_id, "duplicate-share", "already stored")
                ]  # fmt: skip
            except BaseException:
                self._seen.difference_update(_digest(entry[0]) for entry in found)
                raise
            self.accepted += len(found)
            earned = self.earned_msat
            for entry, msat in zip(found, credited, strict=True):
                earned[entry[0].miner_id] += msat
        finished = self._finish(verdicts, found, credited)
        return finished + self.judge_batch(later) if later else finished

    def _one_by_one(self, submissions: Sequence[Submission]) -> list[Verdict]:
        return [verdict for s in submissions for verdict in self.judge_batch([s])]

    def _finish(
        self, verdicts: list[Verdict | None], found: list[tuple[AcceptedShare, bytes, Job, int]],
        credited: list[int],
    ) -> list[Verdict]:  # fmt: skip
        """The verdicts with each accepted share's credit and block hash (blocks submitted)."""
        for (share, header, job, at), msat in zip(found, credited, strict=True):
            block = self._submit_block(share, header, job) if share.is_block else None
            verdicts[at] = Verdict(share, None, block, msat)
        return verdicts  # type: ignore[return-value]  # every None was replaced

    def _check(
        self, submission: Submission, template: BlockTemplate, prev_hash: bytes,
        work: bitcoin.WorkTemplate, latest_ntime: int,
    ) -> tuple[AcceptedShare, bytes] | Verdict:  # fmt: skip
        """The share accepted with its header, or the rejection's verdict (under the lock).
        ``prev_hash`` and ``work`` are the template's (:meth:`_work`), ``latest_ntime`` the
        batch's clock plus :data:`MAX_FUTURE_S`."""
        miner_id, job, ntime = submission.miner_id, submission.job, submission.ntime
        current = job.epoch == self.epoch
        if not job.min_ntime <= ntime <= latest_ntime and current:
            return self.reject(miner_id, "invalid-timestamp", f"ntime {ntime} out of range")
        version = submission.version
        # The 80 bytes packed directly (the message's fields are u32 already) and judged by
        # validate_header without a Share object (SRS-PERF-11); the same checks as validate_share.
        header = HEADER_STRUCT.pack(
            version - (1 << 32) if version >= 1 << 31 else version,
            prev_hash if current else b"\x00" * 32,
            job.merkle_root, ntime, template.bits, submission.nonce,
        )  # fmt: skip
        try:
            return bitcoin.validate_header(
                miner_id, str(job.epoch), header, self.share_difficulty, work, self._seen,
                target=self.share_target,
            ), header  # fmt: skip
        except InvalidShare as rejection:
            return self.reject(
                miner_id, ERROR_CODES[ShareReason(rejection.reason)], rejection.message
            )

    def reject(self, miner_id: str, code: str, detail: str) -> Verdict:
        """Count and log a rejected share (SRS-POOL-06; SRS-SEC-15: a flood in few lines)."""
        with self._lock:
            self.rejected[code] += 1
            self._rejected_by_miner[miner_id, code] += 1
            if self._rejections is not None:
                self._unflushed[miner_id, code] += 1
        self._rejection_lines.info(log, (miner_id, code), _REJECTED, miner_id, code, detail)
        return Verdict(error_code=code)

    def _submit_block(self, share: AcceptedShare, header: bytes, job: Job) -> str | None:
        block_hash = share.hash_hex
        try:
            self._chain.submit_block(coinbase.serialize_block(header, job.coinbase))
        except (BlockRejected, ChainUnavailable) as error:
            log.warning("block %s refused by the chain: %s", block_hash, error.message)
            return None
        except Exception as error:  # a chain adapter's fault must not end the miner's session
            log.warning("block %s not submitted: %s", block_hash, type(error).__name__)
            return None
        with self._lock:
            self.blocks.append(block_hash)
        log.info("block found: %s", block_hash)
        self.refresh()
        return block_hash
