"""The coordinator's embedded OpenTimestamps provenance: a calendar over a local chain.

:class:`EmbeddedProvenance` is the :class:`~owm_core.ports.timestamping.Timestamping` port a
coordinator uses when ``[provenance] backend = "embedded"`` (SRS-NODE-10): the OWM calendar
(:class:`owm_adapters.provenance.ots_calendar.Calendar`) and a regtest-difficulty chain
(:class:`owm_adapters.chain.local_chain.LocalChain`) in ``<directory>/calendar.sqlite3`` and
``<directory>/chain.sqlite3``, behind :class:`owm_adapters.provenance.ots.OpenTimestamps`. A
background
:class:`~owm_adapters.provenance.ots_calendar.IntervalFlusher` commits the pending digests every
``interval_s`` seconds into one freshly mined block, so a pending proof can be upgraded to a
confirmed one seconds later.

Nothing is created until the first stamp, upgrade or verification: a coordinator that never
publishes a model version leaves no files behind.
"""

from __future__ import annotations

import threading
from pathlib import Path

import attrs

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.files import private_directory
from owm_adapters.provenance.calendar_server import CalendarEndpoints
from owm_adapters.provenance.ots import OpenTimestamps
from owm_adapters.provenance.ots_calendar import DEFAULT_URL, Calendar, IntervalFlusher
from owm_core.provenance.versions import Network, Verification

CALENDAR_FILE = "calendar.sqlite3"
CHAIN_FILE = "chain.sqlite3"


@attrs.define(eq=False)
class EmbeddedProvenance:
    """Timestamping through the embedded calendar and chain under ``directory`` (see module)."""

    directory: Path
    interval_s: int = attrs.field(default=5, kw_only=True)
    url: str = attrs.field(default=DEFAULT_URL, kw_only=True)
    _poll_s: float = attrs.field(default=1.0, kw_only=True)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    #: Opened on first use (:meth:`_open`), under the lock.
    _ots: OpenTimestamps | None = attrs.field(init=False, default=None)
    _calendar: Calendar | None = attrs.field(init=False, default=None)
    _chain: LocalChain | None = attrs.field(init=False, default=None)
    _flusher: IntervalFlusher | None = attrs.field(init=False, default=None)
    _stopped: bool = attrs.field(init=False, default=False)

    @property
    def chain_path(self) -> Path:
        """The local chain file nodes verify proofs against (``[chain] local_chain``)."""
        return self.directory / CHAIN_FILE

    def _open(self) -> OpenTimestamps:
        with self._lock:
            if self._ots is None:
                private_directory(self.directory)
                chain = self._chain = LocalChain(self.chain_path)
                self._calendar = Calendar(
                    self.directory / CALENDAR_FILE, chain, url=self.url, interval_s=self.interval_s
                )
                calendar = self._calendar
                # Pending attestations written under an earlier URL (a devnet restarted on new
                # ports) are still this calendar's: it answers by commitment, KeyError if not.
                self._ots = OpenTimestamps(chain, Network.REGTEST, [calendar],
                                           remote_calendar=lambda _url: calendar)
                if not self._stopped:
                    self._flusher = IntervalFlusher(self._calendar, self._poll_s).start()
            return self._ots

    def chain_height(self) -> int:
        """The local chain's tip height: what the coordinator's readiness probe asks."""
        self._open()
        assert self._chain is not None
        return self._chain.tip_height()

    def endpoints(self) -> CalendarEndpoints:
        """The calendar and chain as the reference tools ask them over HTTP
        (``[provenance] calendar_listen``; ``owm_server.http.ots_calendar`` serves them)."""
        self._open()
        assert self._calendar is not None and self._chain is not None
        return CalendarEndpoints(self._calendar, self._chain)

    def stamp(self, digest: bytes) -> bytes:
        """Submit a digest to the embedded calendar; the pending ``.ots`` bytes."""
        return self._open().stamp(digest)

    def upgrade(self, proof: bytes) -> bytes:
        """Complete the proof's pending attestation once the calendar committed it."""
        return self._open().upgrade(proof)

    def verify(self, proof: bytes, digest: bytes) -> Verification:
        """Check the proof against the local chain."""
        return self._open().verify(proof, digest)

    def flush(self) -> None:
        """Commit the pending digests now (tests, and a clean shutdown)."""
        self._open()
        assert self._calendar is not None
        self._calendar.flush()

    def stop(self) -> None:
        """Stop the background flusher (a flush in progress completes)."""
        with self._lock:
            self._stopped = True
            flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.stop()
