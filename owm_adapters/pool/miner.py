"""owm-mine's Stratum V2 client and CPU hasher (SRS-NODE-13, SRS-POOL-02, SRS-POOL-03).

:class:`StratumMiner` connects to a pool over TCP, checks the pool's certificate against its
authority key during the Noise handshake, sets the connection up for the mining protocol and
opens one standard channel signed in with the node's identity
(:func:`owm_core.identity.pool_login.user_identity`, bound to this session). It then keeps the
latest job and previous hash the pool sent and hashes headers on the CPU (:meth:`mine`), which
is meant for tests and devnets: real hash rate comes from SV2 firmware or a proxy in front of
GPU/ASIC miners, which connect to the same port.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Mapping

import attrs

from owm_adapters.pool.connection import Entropy, NoiseSocket, connect
from owm_core.errors import FrameMalformed, PolicyViolation
from owm_core.identity.keys import Identity
from owm_core.identity.pool_login import user_identity
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.bitcoin import double_sha256


@attrs.frozen
class Work:
    """What the channel hashes now: a job activated by a previous hash."""

    job_id: int
    version: int
    prev_hash: bytes
    merkle_root: bytes
    ntime: int
    nbits: int


@attrs.frozen
class MiningResult:
    """How one :meth:`StratumMiner.mine` call went."""

    hashes: int
    accepted: int
    rejected: dict[str, int]


class StratumMiner:
    """One SV2 connection with one standard channel."""

    def __init__(self, connection: NoiseSocket) -> None:
        self.connection = connection
        self.channel_id: int | None = None
        self.target = 0
        self._jobs: dict[int, sv2.NewMiningJob] = {}
        self.work: Work | None = None
        self._sequence = 0
        self._next_nonce = 0
        self._nonce_work: Work | None = None

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
    ) -> StratumMiner:
        """Connect over clearnet TCP (never through a proxy, SRS-NET-05) and run the handshake."""
        sock = socket.create_connection((host, port), timeout=timeout_s)
        try:
            connection, _static = connect(sock, authority_xonly, entropy, now, max_payload=1 << 20)
        except BaseException:
            sock.close()
            raise
        return cls(connection)

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
        """CPU-hash the current work from nonce ``start``: (a nonce meeting the target, hashes)."""
        work = self.work
        assert work is not None
        prefix = struct.pack("<I", work.version) + work.prev_hash + work.merkle_root
        prefix += struct.pack("<II", work.ntime, work.nbits)
        for count, nonce in enumerate(range(start, min(start + max_hashes, 1 << 32)), 1):
            digest = double_sha256(prefix + struct.pack("<I", nonce))
            if int.from_bytes(digest, "little") <= self.target:
                return nonce, count
        return None, max_hashes

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
            found, spent = self.find_nonce(min(1 << 16, max_hashes - hashes), nonce)
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
