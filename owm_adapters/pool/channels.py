"""One miner connection's mining protocol: setup, standard channels, jobs and shares
(SRS-POOL-01, SRS-POOL-02), following the specification's sections 3.6 and 5.3.

The first message must be ``SetupConnection`` for the mining protocol at version 2 (else
``SetupConnection.Error`` ``unsupported-protocol`` / ``protocol-version-mismatch`` and the
connection closes). ``OpenStandardMiningChannel`` carries the OWM login in ``user_identity``
(:mod:`owm_core.identity.pool_login`): the node must be registered and its key must have signed
this very Noise session, else ``OpenMiningChannel.Error`` ``unknown-user``; a login that would
take its node past the pool's cap on logged-in connections per node is answered
``too-many-connections-for-node`` (:mod:`owm_adapters.pool.node_connections`, SRS-SEC-16). The
first channel opened makes the connection :attr:`~MinerConnection.authenticated`; a connection
that opens none within the listener's login deadline is closed (SRS-SEC-16). An open channel
gets its target, an extranonce prefix of its own, a job (``NewMiningJob`` without
``min_ntime``) and the ``SetNewPrevHash`` that activates it; every new epoch repeats the last
two. ``SubmitSharesStandard`` is answered at once, ``SubmitShares.Success`` or ``.Error``. A
channel's target is that of its own share difficulty, which follows its miner's hash rate
(vardiff, :mod:`owm_core.pool.vardiff`): a changed one is sent as ``SetTarget``.

``OpenExtendedMiningChannel`` (the same login) opens an extended channel: the miner gets
:data:`EXTRANONCE_SIZE` bytes of extranonce of its own (more if it asks, up to
:data:`MAX_EXTRANONCE_SIZE`) after the channel's prefix, and ``NewExtendedMiningJob`` carries
the coinbase cut around the whole extranonce (no Merkle path: the pool's blocks are
coinbase-only). A ``SubmitSharesExtended`` is judged on the header rebuilt from the coinbase with
its extranonce (section 5.3.16); an extranonce of another size, or a submission of the other
kind for the channel, is answered ``invalid-extranonce``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from owm_adapters.pool.connection import NoiseSocket
from owm_adapters.pool.mining import Job, MiningPool, Outcome, SubmittedShare
from owm_adapters.pool.node_connections import TOO_MANY_FOR_NODE, NodeConnections
from owm_core.errors import FrameMalformed, SignatureInvalid
from owm_core.identity import pool_login
from owm_core.pool import bitcoin, vardiff
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.sv2_frames import Frame
from owm_core.ports.repositories.nodes import NodeRepository

log = logging.getLogger(__name__)

MAX_CHANNELS_PER_CONNECTION = 64
REQUIRES_WORK_SELECTION = 0b10
"""The mining protocol's ``SetupConnection`` flag for miners that choose their own work
(``SetCustomMiningJob``, job declaration): not built, so refused as ``unsupported-feature-flags``.
Standard jobs (bit 0) and version rolling (bit 2) are what the pool does anyway."""
GRACE_S = 10
"""How long after a channel's difficulty changes shares at the old one are still taken."""
_KEPT_JOBS = 8
#: The miner's part of an extended channel's extranonce, unless it asks for more; with the
#: channel's 8-byte prefix the whole must fit the 32 bytes a ``B0_32`` holds.
EXTRANONCE_SIZE = 8
MAX_EXTRANONCE_SIZE = 24
_Submit = sv2.SubmitSharesStandard | sv2.SubmitSharesExtended
_Open = sv2.OpenStandardMiningChannel | sv2.OpenExtendedMiningChannel


class NodeKeys(Protocol):
    """The registry as the pool asks it: the public key of a registered node, if any."""

    def public_key_of(self, node_id: str) -> str | None: ...


class RegistryNodeKeys:
    """:class:`NodeKeys` over the coordinator's node repository (SRS-POOL-02)."""

    def __init__(self, nodes: NodeRepository) -> None:
        self._nodes = nodes

    def public_key_of(self, node_id: str) -> str | None:
        node = self._nodes.get(node_id)
        return None if node is None else node.public_key


_channel_ids = itertools.count(1)


class Channel:
    """A channel: its miner, extranonce prefix, recent jobs (older ones are stale) and share
    difficulty, with the shares accepted since it was last set (vardiff's window). For
    :data:`GRACE_S` after a change, shares at the lower of the old and new difficulty are
    taken (and credited at it): those the miner sent before it heard of the change."""

    def __init__(
        self, channel_id: int, miner_id: str, extranonce_size: int = 0, difficulty: int = 1,
        now: int = 0,
    ) -> None:  # fmt: skip
        self.channel_id = channel_id
        self.miner_id = miner_id
        self.extranonce_size = extranonce_size  # 0: a standard channel
        self.extranonce_prefix = channel_id.to_bytes(8, "big")
        self.jobs: dict[int, Job] = {}
        self.next_job_id = 1
        self.difficulty = difficulty
        self.since = now
        self.accepted = 0
        self._easier, self._easier_until = difficulty, now

    def judged_at(self, now: int) -> int:
        """The difficulty a share arriving ``now`` is judged (and credited) at."""
        return self._easier if now < self._easier_until else self.difficulty

    def retargeted(self, difficulty: int, now: int) -> bool:
        """Set ``difficulty`` from ``now`` and start a new window; whether it changed."""
        changed = difficulty != self.difficulty
        if changed:
            self._easier = min(difficulty, self.judged_at(now))
            self._easier_until = now + GRACE_S
            self.difficulty = difficulty
        self.since, self.accepted = now, 0
        return changed


class MinerConnection:
    """The :class:`~owm_adapters.pool.server.FrameHandler` of one miner connection."""

    def __init__(
        self, connection: NoiseSocket, pool: MiningPool, nodes: NodeKeys,
        node_connections: NodeConnections | None = None,
    ) -> None:  # fmt: skip
        """``node_connections``: the pool's per-node cap on logged-in connections (SRS-SEC-16),
        shared by all its connections; ``None`` (tests, the bench): no such cap."""
        self._connection = connection
        self._pool = pool
        self._nodes = nodes
        self._node_connections = node_connections
        self._set_up = False
        self._authenticated = False
        self._channels: dict[int, Channel] = {}
        self._lock = threading.Lock()
        self._unsubscribe = pool.subscribe(self._new_epoch)

    @property
    def authenticated(self) -> bool:
        """Whether a mining channel was opened on this connection, so its login verified against
        the registry (SRS-POOL-02); until then the listener's login deadline runs (SRS-SEC-16).
        A refused login leaves it ``False``; closing the channel later does not undo it."""
        return self._authenticated

    def send(self, message: sv2.Message) -> None:
        self._connection.send(sv2.encode(message))

    def on_frames(self, frames: Sequence[Frame]) -> None:
        """Handle frames received together: consecutive share submissions are judged as one
        batch (one store write) and answered together (SRS-PERF-11). A standard share is read
        straight into its fields (:func:`~owm_core.pool.sv2_messages.standard_share_fields`),
        any other frame decoded as a message."""
        shares: list[_Share] = []
        fields = sv2.standard_share_fields(frames) if self._set_up else [None] * len(frames)
        for frame, share in zip(frames, fields, strict=True):
            if share is not None:
                shares.append(share)
                continue
            message = sv2.decode(frame)
            if self._set_up and isinstance(message, _Submit):
                shares.append(_share_fields(message))
                continue
            if shares:
                self._submit(shares)
                shares = []
            self._on_message(message)
        if shares:
            self._submit(shares)

    def _on_message(self, message: sv2.Message) -> None:
        if not self._set_up:
            self._setup(message)
        elif isinstance(message, _Open):
            self._open(message)
        elif isinstance(message, sv2.CloseChannel):
            with self._lock:
                self._channels.pop(message.channel_id, None)
        elif isinstance(message, sv2.UpdateChannel):
            self._update(message)
        else:
            raise FrameMalformed(f"{type(message).__name__} is not sent by miners")

    def closed(self) -> None:
        self._unsubscribe()
        if self._node_connections is not None:
            self._node_connections.release(self)

    def _setup(self, message: sv2.Message) -> None:
        if not isinstance(message, sv2.SetupConnection):
            raise FrameMalformed("the first message must be SetupConnection")
        error, flags = None, message.flags & REQUIRES_WORK_SELECTION
        if message.protocol != sv2.PROTOCOL_MINING:
            error, flags = "unsupported-protocol", 0
        elif not message.min_version <= sv2.PROTOCOL_VERSION <= message.max_version:
            error, flags = "protocol-version-mismatch", 0
        elif flags:
            error = "unsupported-feature-flags"
        if error is not None:
            self.send(sv2.SetupConnectionError(flags=flags, error_code=error))
            raise FrameMalformed(f"SetupConnection refused: {error}")
        self._set_up = True
        self.send(sv2.SetupConnectionSuccess(used_version=sv2.PROTOCOL_VERSION, flags=0))

    def _login(self, message: _Open) -> pool_login.MinerLogin | None:
        try:
            login = pool_login.parse_login(message.user_identity)
            key = self._nodes.public_key_of(login.node_id)
            if key is None:
                raise SignatureInvalid("node is not registered")
            pool_login.verify_login(login, key, self._connection.handshake_hash)
        except SignatureInvalid as refusal:
            self._pool.login_lines.info(log, "refused", "mining channel refused: %s",
                                        refusal.message)  # fmt: skip
            return None
        return login

    def _counts_for(self, node_id: str) -> bool:
        """Whether this connection may hold a channel of ``node_id`` under the pool's per-node
        cap on logged-in connections (SRS-SEC-16); from the first such channel on, it counts
        for the node until it closes."""
        if self._node_connections is None:
            return True
        try:
            peer = str(self._connection.sock.getpeername()[0])
        except OSError:
            peer = ""
        return self._node_connections.admit(self, node_id, peer)

    def _open(self, message: _Open) -> None:
        extended = isinstance(message, sv2.OpenExtendedMiningChannel)
        size = 0
        if isinstance(message, sv2.OpenExtendedMiningChannel):
            size = max(message.min_extranonce_size, EXTRANONCE_SIZE)
        if size > MAX_EXTRANONCE_SIZE:
            self.send(sv2.OpenMiningChannelError(message.request_id, "extranonce-size-too-large"))
            return
        login = self._login(message)
        if login is None:
            self.send(sv2.OpenMiningChannelError(message.request_id, "unknown-user"))
            return
        with self._lock:
            if len(self._channels) >= MAX_CHANNELS_PER_CONNECTION:
                self.send(sv2.OpenMiningChannelError(message.request_id, "too-many-channels"))
                return
            difficulty = _opening_difficulty(self._pool, message.nominal_hash_rate)
            channel = Channel(next(_channel_ids), login.miner_id, size, difficulty,
                              self._pool.now())  # fmt: skip
            self._channels[channel.channel_id] = channel
        target = self._pool.target_for(difficulty)
        refusal = None
        if target > sv2.target_value(message.max_target):
            refusal = "max-target-out-of-range"
        elif not self._counts_for(login.node_id):
            refusal = TOO_MANY_FOR_NODE
        if refusal is not None:
            with self._lock:
                del self._channels[channel.channel_id]
            self.send(sv2.OpenMiningChannelError(message.request_id, refusal))
            return
        self._pool.login_lines.info(log, login.node_id, "mining channel for %s, worker %r",
                                    login.node_id, login.worker)  # fmt: skip
        self._authenticated = True
        self.send(
            sv2.OpenExtendedMiningChannelSuccess(
                message.request_id, channel.channel_id, sv2.target_bytes(target), size,
                channel.extranonce_prefix, 0,
            ) if extended else sv2.OpenStandardMiningChannelSuccess(
                message.request_id, channel.channel_id, sv2.target_bytes(target),
                channel.extranonce_prefix, 0,
            )
        )  # fmt: skip
        self._send_work(channel)

    def _send_work(self, channel: Channel) -> None:
        with self._lock:
            job = self._pool.make_job(
                channel.next_job_id, channel.extranonce_prefix, channel.extranonce_size
            )
            channel.next_job_id += 1
            channel.jobs[job.job_id] = job
            for old in sorted(channel.jobs)[:-_KEPT_JOBS]:
                del channel.jobs[old]
        self.send(
            sv2.NewExtendedMiningJob(channel.channel_id, job.job_id, None, job.version, True,
                                     (), job.coinbase_prefix, job.coinbase_suffix)
            if channel.extranonce_size
            else sv2.NewMiningJob(channel.channel_id, job.job_id, None, job.version,
                                  job.merkle_root)
        )  # fmt: skip
        assert self._pool.template is not None
        self.send(
            sv2.SetNewPrevHash(
                channel_id=channel.channel_id,
                job_id=job.job_id,
                prev_hash=self._pool.prev_hash(),
                min_ntime=job.min_ntime,
                nbits=self._pool.template.bits,
            )
        )

    def _new_epoch(self, event: str) -> None:
        """New work for every channel (``epoch``), or new targets for those whose difficulty
        changed: all of them to the pool's (``target``), or each as vardiff says (``vardiff``)."""
        now = self._pool.now()
        with self._lock:
            channels = list(self._channels.values())
            if event != "epoch":
                channels = [c for c in channels if self._retargeted(c, event, now)]
        if event != "epoch":
            self._send_targets(channels)
            return
        for channel in channels:
            try:
                self._send_work(channel)
            except OSError:
                return

    def _send_targets(self, channels: Sequence[Channel]) -> None:
        """``SetTarget`` with each channel's target now (a connection gone: nothing)."""
        with contextlib.suppress(OSError):
            for channel in channels:
                target = self._pool.target_for(channel.difficulty)
                self.send(sv2.SetTarget(channel.channel_id, sv2.target_bytes(target)))

    def _update(self, message: sv2.UpdateChannel) -> None:
        """A miner's new hash rate or maximum target (section 5.3.7): the channel's difficulty
        is set afresh for the rate (vardiff), at least as hard as the maximum target asks, and
        sent as ``SetTarget`` if it changed; ``UpdateChannel.Error`` for an unknown channel or
        a maximum target harder than a block."""
        now = self._pool.now()
        wanted = _opening_difficulty(self._pool, message.nominal_hash_rate)
        most = vardiff.network_difficulty(self._pool.network_target())
        least = bitcoin.DIFF1_TARGET // (sv2.target_value(message.maximum_target) + 1) + 1
        error, changed = None, []
        with self._lock:
            channel = self._channels.get(message.channel_id)
            if channel is None:
                error = "invalid-channel-id"
            elif least > most and self._pool.share_target is None:
                error = "max-target-out-of-range"
            elif channel.retargeted(max(wanted, least), now):
                changed.append(channel)
        if error is not None:
            self.send(sv2.UpdateChannelError(message.channel_id, error))
        self._send_targets(changed)

    def _retargeted(self, channel: Channel, event: str, now: int) -> bool:
        """Whether ``channel``'s difficulty changed: to the pool's, or by vardiff once its
        window is over (:mod:`owm_core.pool.vardiff`)."""
        if event == "target":
            channel.retargeted(self._pool.share_difficulty, now)
            return True
        policy, elapsed = self._pool.vardiff, now - channel.since
        if policy is None or not vardiff.retarget_due(channel.accepted, elapsed, policy):
            return False
        most = vardiff.network_difficulty(self._pool.network_target())
        new = vardiff.next_difficulty(channel.difficulty, channel.accepted, elapsed, policy, most)
        return channel.retargeted(new, now)

    def _submit(self, shares: Sequence[_Share]) -> None:
        """Judge shares sent together and answer them in one write: each rejection with its
        ``SubmitShares.Error``, the accepted ones of each channel with one aggregated
        ``SubmitShares.Success`` (the specification allows it: section 5.3.14)."""
        answers: list[sv2.Message] = []
        judged: list[_Share] = []
        submissions: list[SubmittedShare] = []
        channels: list[Channel] = []  # each judged share's
        refused: list[tuple[_Share, str | None, str]] = []  # with its channel's miner and code
        with self._lock:
            channel_of = self._channels.get
            for share in shares:
                channel = channel_of(share[0])
                if channel is None:
                    refused.append((share, None, "invalid-channel-id"))
                    continue
                job = channel.jobs.get(share[2])
                if job is not None and (len(share) != 6 or channel.extranonce_size):
                    extranonce = _extranonce(share, channel)  # not a standard share on its channel
                    if extranonce is None:
                        refused.append((share, channel.miner_id, "invalid-extranonce"))
                        continue
                    job = job.with_extranonce(extranonce)
                if job is None:
                    refused.append((share, channel.miner_id, "invalid-job-id"))
                    continue
                judged.append(share)
                channels.append(channel)
                submissions.append((channel.miner_id, job, share[3], share[4], share[5]))
        for share, miner_id, code in refused:
            if miner_id is not None:
                self._pool.reject(miner_id, code, f"job {share[2]}: {code}")
            answers.append(sv2.SubmitSharesError(share[0], share[1], code))
        outcomes = self._judged(submissions, channels)
        self._connection.send_batch([sv2.encode(a) for a in _answers(answers, judged, outcomes)])

    def _judged(
        self, submissions: list[SubmittedShare], channels: list[Channel]
    ) -> list[Outcome]:
        """Judge the submissions in runs of one difficulty (their channels' now, SRS-POOL-04);
        count each channel's accepted shares for vardiff."""
        now, outcomes, start = self._pool.now(), [], 0
        runs = itertools.groupby(channels, lambda channel: channel.judged_at(now))
        for difficulty, run in runs:
            end = start + len(list(run))
            outcomes += self._pool.judge_submissions(submissions[start:end], difficulty)
            start = end
        with self._lock:
            for channel, outcome in zip(channels, outcomes, strict=True):
                channel.accepted += not isinstance(outcome, str)
            # a miner far faster than its difficulty is raised now, not at the next minute
            raised = [c for c in set(channels) if self._retargeted(c, "vardiff", now)]
        self._send_targets(raised)
        return outcomes


_Share = sv2.ShareFields | tuple[int, int, int, int, int, int, bytes]
"""A share submission's fields in the messages' order: a standard share's six
(:data:`~owm_core.pool.sv2_messages.ShareFields`), an extended share's seven (its extranonce
last)."""


def _answers(
    answers: list[sv2.Message], judged: Sequence[_Share], outcomes: Sequence[Outcome]
) -> list[sv2.Message]:
    """``answers`` (the shares refused before judging) and then each judged share's: a
    ``SubmitShares.Error`` for each rejected one, one ``SubmitShares.Success`` per channel for
    the accepted ones (its last sequence number, their count and the sum of their
    difficulties)."""
    accepted: dict[int, list[int]] = {}  # channel: [last sequence, count, difficulty sum]
    for share, outcome in zip(judged, outcomes, strict=True):
        if isinstance(outcome, str):
            answers.append(sv2.SubmitSharesError(share[0], share[1], outcome))
            continue
        counted = accepted.get(share[0])
        if counted is None:
            accepted[share[0]] = [share[1], 1, outcome[0].share_difficulty]
        else:
            if share[1] > counted[0]:
                counted[0] = share[1]
            counted[1] += 1
            counted[2] += outcome[0].share_difficulty
    for channel_id, (last, count, total) in accepted.items():
        answers.append(sv2.SubmitSharesSuccess(
            channel_id=channel_id, last_sequence_number=last, new_submits_accepted_count=count,
            new_shares_sum=total,
        ))  # fmt: skip
    return answers


def _share_fields(message: _Submit) -> _Share:
    """A decoded share message's fields as a :data:`_Share`."""
    fields = (message.channel_id, message.sequence_number, message.job_id, message.nonce,
              message.ntime, message.version)  # fmt: skip
    if isinstance(message, sv2.SubmitSharesExtended):
        return (*fields, message.extranonce)
    return fields


def _extranonce(share: _Share, channel: Channel) -> bytes | None:
    """The full extranonce a share was hashed with: the channel's prefix for a standard share
    on a standard channel, the prefix and the miner's bytes for an extended share of the
    channel's size; None for any other mix (answered ``invalid-extranonce``)."""
    if len(share) == 6:
        return channel.extranonce_prefix if not channel.extranonce_size else None
    extranonce = share[6]
    if not channel.extranonce_size or len(extranonce) != channel.extranonce_size:
        return None
    return channel.extranonce_prefix + extranonce


def _opening_difficulty(pool: MiningPool, nominal_hash_rate: float) -> int:
    """A new channel's difficulty: for the hash rate its miner declared, with vardiff."""
    if pool.vardiff is None:
        return pool.share_difficulty
    most = vardiff.network_difficulty(pool.network_target())
    return vardiff.initial_difficulty(nominal_hash_rate, pool.vardiff, most)
