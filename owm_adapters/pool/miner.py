"""owm-mine's Stratum V2 client and CPU hasher (SRS-NODE-13, SRS-POOL-02, SRS-POOL-03).

:class:`StratumMiner` connects to a pool over TCP, checks the pool's certificate against its
authority key during the Noise handshake, sets the connection up for the mining protocol and
opens one standard channel signed in with the node's identity
(:func:`owm_core.identity.pool_login.user_identity`, bound to this session). It then keeps the
latest job and previous hash the pool sent and hashes headers (:meth:`mine`) with a
:class:`~owm_core.ports.hasher.HeaderHasher`: ``hashlib`` on the CPU by default, for tests and
devnets, or torch on a GPU (``owm_adapters/hashing/``). Real hash rate comes from SV2 firmware
or a proxy in front of GPU/ASIC miners, which connect to the same port (SRS-POOL-03).
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Callable, Mapping

import attrs

from owm_adapters.hashing.cpu import CpuHasher
from owm_adapters.pool.connection import Entropy, NoiseSocket, dial
from owm_core.errors import FrameMalformed, PolicyViolation
from owm_core.identity.keys import Identity
from owm_core.identity.pool_login import user_identity
from owm_core.pool import sv2_messages as sv2
from owm_core.ports.hasher import HeaderHasher

_MAX_NONCE = 1 << 32
#: The fewest nonces one search covers, however easy the target (a regtest share needs ~2).
_MIN_SEARCH = 64


@attrs.frozen
class Work:
    """What the channel hashes now: a job activated by a previous hash."""

    job_id: int
    version: int
    prev_hash: bytes
    merkle_root: bytes
    ntime: int
    nbits: int

    def header_prefix(self) -> bytes:
        """The header's first 76 bytes; the nonce completes it."""
        return (
            struct.pack("<I", self.version) + self.prev_hash + self.merkle_root
            + struct.pack("<II", self.ntime, self.nbits)
        )  # fmt: skip


@attrs.frozen
class MiningResult:
    """How one :meth:`StratumMiner.mine` call went."""

    hashes: int
    accepted: int
    rejected: dict[str, int]


class StratumMiner:
    """One SV2 connection with one standard channel, hashing with ``hasher``."""

    def __init__(self, connection: NoiseSocket, hasher: HeaderHasher | None = None) -> None:
        self.connection = connection
        self.hasher: HeaderHasher = hasher or CpuHasher()
        self.channel_id: int | None = None
        self.target = 0
        self._jobs: dict[int, sv2.NewMiningJob] = {}
        self.work: Work | None = None
        self._sequence = 0
        self._next_nonce = 0
        self._nonce_work: Work | None = None
        # Shares the hasher found beyond the one asked for, kept for the next call: a search
        # covers a whole batch of nonces (a GPU's is millions), so its other hits are not lost.
        self._search_key: tuple[Work | None, int] | None = None
        self._search_from = self._searched_to = 0
        self._pending: deque[int] = deque()

    @classmethod
    def dial(
        cls,
        host: str,
        port: int,
        authority_xonly: bytes,
        now: int,
        *,
        entropy: Entropy = os.urandom,
        timeout_s: float = 10.0,
        hasher: HeaderHasher | None = None,
    ) -> StratumMiner:
        """Connect over clearnet TCP (never through a proxy, SRS-NET-05) and run the handshake."""
        connection = dial(host, port, authority_xonly, now, entropy=entropy, timeout_s=timeout_s,
                          max_payload=1 << 20)  # fmt: skip
        return cls(connection, hasher)

    def send(self, message: sv2.Message) -> None:
        self.connection.send(sv2.encode(message))

    def receive(self) -> sv2.Message:
        """The next message, with jobs, previous hashes and targets applied on the way."""
        message = sv2.decode(self.connection.receive())
        if isinstance(message, sv2.NewMiningJob):
            self._jobs[message.job_id] = message
            if message.min_ntime is not None and self.work is not None:
                self._activate(message, self.work.prev_hash, message.min_ntime, self.work.nbits)
        elif isinstance(message, sv2.SetNewPrevHash):
            job = self._jobs.get(message.job_id)
            if job is not None:
                self._activate(job, message.prev_hash, message.min_ntime, message.nbits)
        elif isinstance(message, sv2.SetTarget):
            self.target = sv2.target_value(message.maximum_target)
        return message

    def _activate(self, job: sv2.NewMiningJob, prev_hash: bytes, ntime: int, nbits: int) -> None:
        self.work = Work(job.job_id, job.version, prev_hash, job.merkle_root, ntime, nbits)

    def setup(self, endpoint_host: str, endpoint_port: int) -> None:
        """``SetupConnection`` for the mining protocol, version 2; refused → ``FrameMalformed``."""
        self.send(
            sv2.SetupConnection(
                protocol=sv2.PROTOCOL_MINING, min_version=2, max_version=2, flags=0,
                endpoint_host=endpoint_host, endpoint_port=endpoint_port, vendor="owm",
                hardware_version="cpu", firmware="owm-mine", device_id="",
            )
        )  # fmt: skip
        answer = self.receive()
        if not isinstance(answer, sv2.SetupConnectionSuccess):
            raise FrameMalformed(f"the pool refused the connection: {answer}")

    def open_channel(self, identity: Identity, worker: str, nominal_hash_rate: float = 1e6) -> None:
        """Open a standard channel signed in as ``identity``; wait for its first work."""
        login = user_identity(identity, worker, self.connection.handshake_hash)
        self.send(sv2.OpenStandardMiningChannel(1, login, nominal_hash_rate, b"\xff" * 32))
        answer = self.receive()
        if not isinstance(answer, sv2.OpenStandardMiningChannelSuccess):
            raise FrameMalformed(f"the pool refused the channel: {answer}")
        self.channel_id, self.target = answer.channel_id, sv2.target_value(answer.target)
        while self.work is None:
            self.receive()

    def submit(self, work: Work, nonce: int, ntime: int | None = None) -> sv2.Message:
        """Submit one share and return the pool's answer (other messages are applied)."""
        assert self.channel_id is not None
        self._sequence += 1
        self.send(
            sv2.SubmitSharesStandard(
                self.channel_id,
                self._sequence,
                work.job_id,
                nonce,
                ntime or work.ntime,
                work.version,
            )
        )
        while True:
            answer = self.receive()
            if isinstance(answer, sv2.SubmitSharesSuccess | sv2.SubmitSharesError):
                return answer

    def find_nonce(self, max_hashes: int, start: int = 0) -> tuple[int | None, int]:
        """Hash the current work from nonce ``start`` with the hasher: (the first nonce from
        ``start`` meeting the target, or None; nonces covered from ``start``). The hasher
        searches up to a batch at a time (fewer when the target is easy); hits past the one
        returned are answered by later calls on the same work and target without hashing."""
        work, target = self.work, self.target
        assert work is not None
        end = min(start + max_hashes, _MAX_NONCE)
        if end <= start:
            return None, max_hashes  # the nonce space is spent
        searched = self._search_from <= start <= self._searched_to
        if (work, target) != self._search_key or not searched:
            self._search_key, self._pending = (work, target), deque()
            self._search_from = self._searched_to = start
        pending = self._pending
        while pending and pending[0] < start:
            pending.popleft()
        if not pending and self._searched_to < end:
            easy = 4 * ((1 << 256) // (target + 1))  # about four shares' worth of hashes
            upto = min(end, self._searched_to + min(self.hasher.batch, max(easy, _MIN_SEARCH)))
            pending.extend(
                self.hasher.search(work.header_prefix(), self._searched_to,
                                   upto - self._searched_to, target)
            )  # fmt: skip
            self._searched_to = upto
        if pending and pending[0] < end:
            found = pending.popleft()
            return found, found - start + 1
        return None, min(self._searched_to, end) - start

    def mine(
        self, shares: int, max_hashes: int = 1 << 22, stop: Callable[[], bool] = lambda: False
    ) -> MiningResult:
        """Find and submit up to ``shares`` shares; counts of hashes, accepted and rejected.
        A later call on the same work goes on from the next nonce (no share found twice)."""
        hashes, accepted = 0, 0
        rejected: dict[str, int] = {}
        nonce = self._next_nonce if self._nonce_work == self.work else 0
        while accepted + sum(rejected.values()) < shares and hashes < max_hashes and not stop():
            assert self.work is not None
            work = self.work
            found, spent = self.find_nonce(max_hashes - hashes, nonce)
            hashes += spent
            nonce = (found + 1) if found is not None else nonce + spent
            if found is None:
                continue
            answer = self.submit(work, found)
            if isinstance(answer, sv2.SubmitSharesSuccess):
                accepted += 1
            else:
                assert isinstance(answer, sv2.SubmitSharesError)
                rejected[answer.error_code] = rejected.get(answer.error_code, 0) + 1
            if self.work != work:
                nonce = 0
        self._next_nonce, self._nonce_work = nonce, self.work
        return MiningResult(hashes, accepted, rejected)

    def close(self) -> None:
        self.connection.close()


_SOCKS_VARIABLES = ("ALL_PROXY", "all_proxy", "SOCKS_PROXY", "socks_proxy")


def check_clearnet(host: str, environment: Mapping[str, str]) -> None:
    """owm-mine mines over clearnet only (SRS-NET-05): an onion pool or a SOCKS proxy in the
    environment is refused rather than silently used or bypassed."""
    if host.lower().endswith(".onion"):
        raise PolicyViolation("owm-mine connects over clearnet only; a .onion pool is refused")
    for name in _SOCKS_VARIABLES:
        if environment.get(name):
            raise PolicyViolation(f"owm-mine refuses a SOCKS proxy ({name} is set); unset it")
