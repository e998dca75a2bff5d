"""owm-mine inside the node daemon: one thread mining on the configured pool (SRS-NODE-13).

:class:`MiningWorker` connects over clearnet (SRS-NET-05: :func:`check_clearnet` before every
connection), signs in with the node's identity (SRS-POOL-02), hashes with its
:class:`~owm_core.ports.hasher.HeaderHasher` (the CPU, or torch on a GPU: ``[mining] hasher``)
in slices of :data:`SLICE_HASHES` nonces (or one batch of the hasher when larger) and rests
between slices so that hashing takes ``intensity`` percent of the time, and at most
``max_shares_per_minute`` shares a minute when set. A lost connection or a refusal is logged
and retried with a growing pause (up to 60 s); :meth:`stop` ends the thread after its current
slice.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from owm_adapters.hashing.cpu import CpuHasher
from owm_adapters.pool.miner import StratumMiner, check_clearnet
from owm_core.errors import DomainError
from owm_core.identity.keys import Identity
from owm_core.pool.noise import PoolUrl
from owm_core.ports.hasher import HeaderHasher

log = logging.getLogger(__name__)

SLICE_HASHES = 1 << 14
MAX_BACKOFF_S = 60.0


class MiningWorker:
    """The daemon's miner thread; counts what the pool answered."""

    def __init__(
        self, identity: Identity, pool_url: str, worker: str, intensity: int,
        max_shares_per_minute: int = 0, hasher: HeaderHasher | None = None,
    ) -> None:  # fmt: skip
        self._identity = identity
        self._url = PoolUrl.parse(pool_url)
        check_clearnet(self._url.host, os.environ)
        self._worker = worker
        self.hasher: HeaderHasher = hasher or CpuHasher()
        self._slice = max(SLICE_HASHES, self.hasher.batch)
        self._intensity = intensity
        self._min_gap_s = 60.0 / max_shares_per_minute if max_shares_per_minute else 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepted = 0
        self.rejected = 0
        self.hashes = 0
        self.connected = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="owm-mine", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._mine_session()
                backoff = 1.0
            except (DomainError, OSError) as error:
                self.connected = False
                log.warning("owm-mine: %s; retrying in %.0f s", error, backoff, extra={
                    **self._fields(), "error": str(error), "retry_s": backoff})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _fields(self) -> dict[str, object]:
        """The miner's facts as structured log fields (``--log-format json``)."""
        return {"node_id": self._identity.node_id, "worker": self._worker,
                "pool_host": self._url.host, "pool_port": self._url.port}

    def _mine_session(self) -> None:
        url = self._url
        check_clearnet(url.host, os.environ)
        miner = StratumMiner.dial(
            url.host, url.port, url.authority_xonly, int(time.time()), hasher=self.hasher
        )
        try:
            miner.setup(url.host, url.port)
            miner.open_channel(self._identity, self._worker)
            self.connected = True
            log.info(
                "owm-mine: mining on %s:%d as %s with the %s hasher",
                url.host,
                url.port,
                self._identity.node_id,
                self.hasher.name,
                extra={**self._fields(), "hasher": self.hasher.name},
            )
            while not self._stop.is_set():
                started = time.monotonic()
                result = miner.mine(shares=1, max_hashes=self._slice, stop=self._stop.is_set)
                self.hashes += result.hashes
                self.accepted += result.accepted
                self.rejected += sum(result.rejected.values())
                busy = time.monotonic() - started
                rest = busy * (100 - self._intensity) / self._intensity
                answered = result.accepted + sum(result.rejected.values())
                self._stop.wait(max(rest, self._min_gap_s - busy) if answered else rest)
        finally:
            self.connected = False
            miner.close()
