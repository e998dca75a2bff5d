"""The pool's work and share judging: templates from the chain port, one job per channel,
shares checked and recorded, blocks submitted (SRS-POOL-05, SRS-POOL-06, SRS-SEC-15).

:class:`MiningPool` holds the current *epoch* — the template it fetched from
``getblocktemplate`` through the :class:`~owm_core.ports.chain.Chain` port (Bitcoin Core or
Knots over JSON-RPC, or the embedded chain of a devnet) — and the share difficulty. Each
channel gets its own extranonce prefix, hence its own coinbase paying the pool and its own
Merkle root (:mod:`owm_core.pool.coinbase`). A submitted share is rebuilt into an 80-byte header
and judged by the rules of :func:`owm_core.pool.bitcoin.validate_share`, the shares a connection
sent together at once (:func:`~owm_core.pool.bitcoin.validate_headers`); a rejection answers the
specification's ``SubmitShares.Error`` with a code from :data:`ERROR_CODES`, is counted and
logged (:class:`~owm_adapters.pool.rejections.RejectionCounts`). An accepted share is stored in
the share repository and credited to its miner at the FPPS rate in msat
(:meth:`owm_core.pool.fpps.MinerCredit.add_share`), kept in the miner-credit repository when one
is given (the coordinator's store; paid by :mod:`owm_adapters.services.pool_payouts`), else in
memory; one that meets the network target is assembled into a block and offered with
``submitblock``, then the pool moves to the next template and sends every channel new work.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import operator
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import attrs

from owm_adapters.pool.log_limits import LogThrottle
from owm_adapters.pool.recording import ShareRecorder
from owm_adapters.pool.rejections import RejectionCounts
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
    WorkTemplate,
    rolled_version_allowed,
)
from owm_core.pool.stats import PoolWork
from owm_core.pool.vardiff import VardiffPolicy
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


SubmittedShare = tuple[str, Job, int, int, int]
"""A :class:`Submission`'s fields in order as a plain tuple: what the connections pass, one a
share (SRS-PERF-11)."""

Outcome = str | tuple[AcceptedShare, str | None, int]
"""What became of one share inside the pool (:meth:`MiningPool.judge_submissions`): the error
code answered, or the accepted share with its block hash (if it was a block submitted) and the
msat it credited its miner — a :class:`Verdict`'s content without an object per share."""


def _checked_share_target(target: int | None) -> int | None:
    """A share target set directly, easier than difficulty 1 (benchmarks, test networks whose
    miners cannot reach difficulty 1 but whose blocks are harder than their shares); None:
    ``DIFF1_TARGET // share_difficulty``. See :func:`owm_core.pool.bitcoin.validate_header`."""
    if target is not None and not bitcoin.DIFF1_TARGET < target < 1 << 256:
        raise InvalidValue("share_target", "must be easier than difficulty 1, below 2**256")
    return target


_MINER = operator.attrgetter("miner_id")


def _digest(share: AcceptedShare) -> bytes:
    """The share's header hash in internal byte order (what the duplicate check keeps)."""
    return bytes.fromhex(share.hash_hex)[::-1]


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
        vardiff: VardiffPolicy | None = None,
    ) -> None:
        self._chain = chain
        self.now = now  # the pool's clock (seconds)
        self.payout_script = payout_script
        self.share_difficulty = share_difficulty
        self.share_target = _checked_share_target(share_target)
        #: Channels' own difficulties (:mod:`owm_core.pool.vardiff`); None: share_difficulty.
        self.vardiff = None if share_target is not None else vardiff
        self._lock = threading.RLock()
        self.epoch = 0
        self.template: BlockTemplate | None = None
        self._seen: set[bytes] = set()
        self._listeners: list[Callable[[str], None]] = []
        self.accepted = 0
        self._rejected = RejectionCounts(log, now, rejections)
        self.blocks: list[str] = []
        self.earned_msat: collections.Counter[str] = collections.Counter()
        #: The connections' login lines, one kind per refusal or per node (SRS-SEC-15).
        self.login_lines = LogThrottle()
        self._recorder = ShareRecorder(shares, now, credits, atomic, fpps_subsidy_sat)
        self._subsidy = fpps_subsidy_sat
        self._work_cache: tuple[BlockTemplate, int, bytes, bitcoin.WorkTemplate] | None = None

    # ------------------------------------------------------------------ templates

    def refresh(self) -> bool:
        """Fetch a template; on a new tip start a new epoch (old jobs become stale) and tell the
        connections to send new work. Whether the epoch changed."""
        template = self._chain.block_template()
        with self._lock:
            if _tip(self.template) == _tip(template):
                return False
            self.template = template
            self.epoch += 1
            self._seen.clear()
        log.info("pool work: height %d on %s", template.height, template.previous_block_hash)
        self._notify("epoch")
        return True

    def retarget(self) -> None:
        """Tell the connections to retarget their channels' difficulties (``listener("vardiff")``,
        from the template loop: a channel too hard to send any share is retargeted too)."""
        if self.vardiff is not None:
            self._notify("vardiff")

    def set_share_difficulty(self, difficulty: int) -> None:
        """Change the share difficulty and vardiff's floor; open channels get ``SetTarget``."""
        bitcoin.share_target(difficulty)
        with self._lock:
            self.share_difficulty = difficulty
            if self.vardiff is not None:
                self.vardiff = attrs.evolve(self.vardiff, min_difficulty=difficulty)
        self._notify("target")

    def _notify(self, event: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event)

    def poll(self, stop: threading.Event, interval_s: float = 5.0) -> None:
        """Refresh the template every ``interval_s`` until ``stop`` is set (run in a worker
        thread): a block found elsewhere makes the pool's jobs stale within one interval."""
        while not stop.wait(interval_s):
            try:
                self.refresh()
            except ChainUnavailable as error:
                log.warning("no block template: %s", error.message)

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener("epoch")`` on every new epoch, ``listener("target")`` when the
        share difficulty changes and ``listener("vardiff")`` when channels are due a retarget;
        the function that unsubscribes it."""
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

    @property
    def rejected(self) -> dict[str, int]:
        """Shares rejected per code since this pool started."""
        return self._rejected.by_code()

    def rejections(self) -> dict[str, dict[str, int]]:
        """Shares rejected per miner and reason code (SRS-POOL-06, the live feed of
        SRS-POOL-09): the stored totals plus those not yet flushed, or, without a rejection
        store, those counted since this pool started."""
        return self._rejected.by_miner()

    def flush_rejections(self) -> int:
        """Write the rejections counted since the last flush to the store in one write (the
        worker loop calls this every few seconds, so a flood of bad shares costs one write per
        period, not one per share); how many were written."""
        return self._rejected.flush()

    def network_target(self) -> int:
        assert self.template is not None
        return bitcoin.compact_to_target(self.template.bits)

    def channel_target(self) -> int:
        """The target a channel's shares must meet: the share target, never harder than a block."""
        return self.target_for(self.share_difficulty)

    def target_for(self, difficulty: int) -> int:
        """The target of a channel at ``difficulty`` (the pool's ``share_target`` if it has one),
        never harder than a block."""
        share = self.share_target or bitcoin.share_target(difficulty)
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
        return self.judge_batch([Submission(miner_id, job, nonce, ntime, version)])[0]

    def judge_batch(self, submissions: Sequence[Submission]) -> list[Verdict]:
        """Judge shares received together (:meth:`judge_submissions`): one verdict each."""
        return [
            Verdict(error_code=outcome) if isinstance(outcome, str) else Verdict(outcome[0], None,
                                                                                 *outcome[1:])
            for outcome in self.judge_submissions(
                [(s.miner_id, s.job, s.nonce, s.ntime, s.version) for s in submissions]
            )
        ]  # fmt: skip

    def judge_submissions(
        self, submissions: Sequence[SubmittedShare], difficulty: int | None = None
    ) -> list[Outcome]:
        """Judge shares received together, in order, at ``difficulty`` (default: the pool's
        ``share_difficulty``), against the same template: the accepted
        ones and their credits are stored in one write (SRS-POOL-04, SRS-PERF-11); blocks are
        submitted after. A block ends the template, so the shares after it are judged as if
        they came after it alone: against the next template (stale if built on the old tip).
        One :data:`Outcome` per submission, no object per share beyond the accepted ones."""
        outcomes: list[Outcome | None] = []  # None: accepted, completed below
        accepted: list[AcceptedShare] = []
        places: list[int] = []  # each accepted share's place in outcomes
        block: tuple[bytes, Job] | None = None  # the last accepted share's header and job
        later: Sequence[SubmittedShare] = ()
        with self._lock:
            template = self.template
            assert template is not None
            prev_hash, work = self._work(template)
            prepared, headers = _prepared(submissions, self.epoch, template.bits, prev_hash, work,
                                          self.now() + MAX_FUTURE_S)  # fmt: skip
            judged = bitcoin.validate_headers(
                headers, difficulty or self.share_difficulty, work, self._seen,
                target=self.share_target,
            )  # a duplicate later in the batch is one: each accepted hash joins _seen
            for index, (submission, ready) in enumerate(zip(submissions, prepared, strict=True)):
                if isinstance(ready, tuple):  # rejected before its header was judged
                    outcomes.append(self._count(submission[0], *ready))
                    continue
                share = judged[ready]
                if isinstance(share, InvalidShare):
                    code = ERROR_CODES[ShareReason(share.reason)]
                    outcomes.append(self._count(submission[0], code, share.message))
                    continue
                places.append(len(outcomes))
                accepted.append(share)
                outcomes.append(None)
                if share.is_block:
                    block, later = (headers[ready][2], submission[1]), submissions[index + 1 :]
                    break
            if not accepted:
                return outcomes  # type: ignore[return-value]  # all rejected: no None left
            credited = self._record(accepted, template)
            if credited is None:  # one was stored before this process started
                return self._one_by_one(submissions, difficulty) if len(submissions) > 1 else [
                    self._count(submissions[0][0], "duplicate-share", "already stored")
                ]  # fmt: skip
        for share, place, msat in zip(accepted, places, credited, strict=True):
            outcomes[place] = (share, None, msat)
        if block is not None:  # the batch's last accepted share: submitted, outside the lock
            outcomes[places[-1]] = (accepted[-1], self._submit_block(accepted[-1], *block),
                                    credited[-1])  # fmt: skip
        finished: list[Outcome] = outcomes  # type: ignore[assignment]  # every None replaced
        return finished + self.judge_submissions(later, difficulty) if later else finished

    def _one_by_one(
        self, submissions: Sequence[SubmittedShare], difficulty: int | None
    ) -> list[Outcome]:
        return [outcome for s in submissions for outcome in self.judge_submissions([s], difficulty)]

    def _record(self, accepted: list[AcceptedShare], template: BlockTemplate) -> list[int] | None:
        """Store and credit the accepted shares (under the lock): the msat each credited, or
        None if one was already stored (then none is, and none stays in the duplicate set)."""
        try:
            credited = self._recorder.record(accepted, template)
        except BaseException as error:
            self._seen.difference_update(_digest(share) for share in accepted)
            if isinstance(error, Conflict):
                return None
            raise
        self.accepted += len(accepted)
        earned = self.earned_msat
        start = 0  # a miner's run of shares at once, not one Counter update a share
        for miner, run in itertools.groupby(accepted, _MINER):
            end = start + len(list(run))
            earned[miner] += sum(credited[start:end])
            start = end
        return credited

    def reject(self, miner_id: str, code: str, detail: str) -> Verdict:
        """Count and log a rejected share (SRS-POOL-06; SRS-SEC-15: a flood in few lines)."""
        return Verdict(error_code=self._count(miner_id, code, detail))

    def _count(self, miner_id: str, code: str, detail: str) -> str:
        self._rejected.count(miner_id, code, detail)
        return code

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


def _tip(template: BlockTemplate | None) -> tuple[str, int] | None:
    """What a template builds on: its previous block and height (None: no template yet)."""
    return None if template is None else (template.previous_block_hash, template.height)


def _prepared(
    submissions: Sequence[SubmittedShare], epoch: int, bits: int, prev_hash: bytes,
    work: WorkTemplate, latest_ntime: int,
) -> tuple[list[int | tuple[str, str]], list[tuple[str, str, bytes]]]:  # fmt: skip
    """Each submission's place in the headers to judge, or the ``(code, detail)`` it is
    rejected with first (an ``ntime`` before the job's minimum or past ``latest_ntime``, or a
    version changing bits outside BIP320's, on a current job); and those headers,
    ``(miner_id, template_id, header)`` as :func:`~owm_core.pool.bitcoin.validate_headers`
    takes them. A header is packed directly
    (the message's fields are u32 already); a job of an older epoch gets that epoch as its
    template id and no previous hash, so the rules find it stale."""
    prepared: list[int | tuple[str, str]] = []
    headers: list[tuple[str, str, bytes]] = []
    pack, current_id, stale_prev = HEADER_STRUCT.pack, work.template_id, bytes(32)
    for miner_id, job, nonce, ntime, version in submissions:
        if job.epoch == epoch:
            if not job.min_ntime <= ntime <= latest_ntime:
                prepared.append(("invalid-timestamp", f"ntime {ntime} out of range"))
                continue
            if version != job.version and not rolled_version_allowed(job.version, version):
                prepared.append(("invalid-version", f"version {version:#010x} changes bits of "
                                 f"{job.version:#010x} outside BIP320's"))  # fmt: skip
                continue
            template_id, parent = current_id, prev_hash
        else:
            template_id, parent = str(job.epoch), stale_prev
        prepared.append(len(headers))
        signed = version - (1 << 32) if version >= 1 << 31 else version
        headers.append((miner_id, template_id,
                        pack(signed, parent, job.merkle_root, ntime, bits, nonce)))  # fmt: skip
    return prepared, headers
