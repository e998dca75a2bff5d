"""The login proxy: SV2 firmware and proxies mine for a node without an OWM login of their own
(SRS-POOL-02, SRS-POOL-03).

SV2 firmware, and proxies such as SRI's translator in front of Stratum V1 hardware or GPU
software miners, put a plain user name in a channel opening's ``user_identity``; the OWM pool
opens a channel only for a login signed by a registered node's key for that very Noise session
(:mod:`owm_core.identity.pool_login`). A :class:`Relay` stands between one such miner and the
pool: the miner connects to the proxy's own listener (a
:class:`~owm_adapters.pool.server.PoolServer`: Noise with the proxy's certificate, its caps and
its login deadline), the relay opens one connection to the pool for it and passes every frame
through unchanged both ways, except the channel openings, whose ``user_identity`` becomes the
node's login for the upstream session, the miner's user name its worker
(:func:`~owm_core.identity.pool_login.worker_name`). So the shares count for the node's profile,
and the node's key never leaves the proxy.

Whoever reaches the proxy mines in the node's name and takes one of the node's connection places
at the pool (``[pool] max_connections_per_node``): the proxy listens on the loopback address
unless told otherwise, and belongs on the node's own machine or farm network.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Sequence

import attrs

from owm_adapters.pool.connection import ConnectionClosed, NoiseSocket
from owm_core.errors import DomainError
from owm_core.identity.keys import Identity
from owm_core.identity.pool_login import user_identity, worker_name
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.sv2_frames import Frame

log = logging.getLogger(__name__)

_OPENINGS = {sv2.OpenStandardMiningChannel.MSG_TYPE, sv2.OpenExtendedMiningChannel.MSG_TYPE}
_OPENED = {
    sv2.OpenStandardMiningChannelSuccess.MSG_TYPE,
    sv2.OpenExtendedMiningChannelSuccess.MSG_TYPE,
}
_ANSWERS = {sv2.SubmitSharesSuccess.MSG_TYPE, sv2.SubmitSharesError.MSG_TYPE}


class UpstreamUnavailable(DomainError):
    """The pool could not be reached for a miner (down, refusing, or not the pool the
    authority key certifies): that miner's connection to the proxy is closed."""

    code = "upstream-unavailable"


@attrs.define(eq=False)
class RelayCounts:
    """What the proxy's miners did, for its periodic report: miners connected now, and the
    shares the pool accepted and rejected (by error code) since the proxy started."""

    miners: int = 0
    accepted: int = 0
    rejected: collections.Counter[str] = attrs.Factory(collections.Counter)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    def now(self) -> tuple[int, int, dict[str, int]]:
        """Miners connected, shares accepted, shares rejected by code: one consistent read."""
        with self._lock:
            return self.miners, self.accepted, dict(self.rejected)

    def summary(self) -> str:
        """One line: ``miners 2, shares accepted 120, rejected 2 (stale-share 2)``."""
        miners, accepted, rejected = self.now()
        codes = ", ".join(f"{code} {n}" for code, n in sorted(rejected.items()))
        why = f" ({codes})" if codes else ""
        refused = sum(rejected.values())
        return f"miners {miners}, shares accepted {accepted}, rejected {refused}{why}"

    def _joined(self, change: int) -> None:
        with self._lock:
            self.miners += change

    def _answered(self, answer: sv2.Message) -> None:
        with self._lock:
            if isinstance(answer, sv2.SubmitSharesSuccess):
                self.accepted += answer.new_submits_accepted_count
            elif isinstance(answer, sv2.SubmitSharesError):
                self.rejected[answer.error_code] += 1


@attrs.define(eq=False)
class Relay:
    """One miner's connection to the proxy (``downstream``) and the proxy's connection to the
    pool for it (``upstream``): the proxy listener's frame handler for that miner. A thread of
    its own carries the pool's frames down; the listener's thread carries the miner's up."""

    _downstream: NoiseSocket
    _upstream: NoiseSocket
    _identity: Identity
    _counts: RelayCounts
    _opened: bool = attrs.field(init=False, default=False)
    _worker: str = attrs.field(init=False, default="")

    def __attrs_post_init__(self) -> None:
        self._counts._joined(1)
        threading.Thread(target=self._down, name="sv2-relay", daemon=True).start()

    @property
    def authenticated(self) -> bool:
        """Whether the pool opened a channel for this miner (with the node's login)."""
        return self._opened

    def on_frames(self, frames: Sequence[Frame]) -> None:
        """The miner's frames, up to the pool (channel openings signed in as the node)."""
        self._upstream.send_batch([self._signed(f) if f.msg_type in _OPENINGS else f
                                   for f in frames])  # fmt: skip

    def closed(self) -> None:
        """The miner is gone: so is its connection to the pool."""
        self._upstream.close()
        self._counts._joined(-1)

    def _signed(self, frame: Frame) -> Frame:
        opening = sv2.decode(frame)
        assert isinstance(opening, sv2.OpenStandardMiningChannel | sv2.OpenExtendedMiningChannel)
        self._worker = worker_name(opening.user_identity)
        login = user_identity(self._identity, self._worker, self._upstream.handshake_hash)
        return sv2.encode(attrs.evolve(opening, user_identity=login))

    def _down(self) -> None:
        """The pool's frames, down to the miner, until either side closes."""
        try:
            while True:
                frames = self._upstream.receive_batch()
                for frame in frames:
                    if frame.msg_type in _OPENED:
                        if not self._opened:
                            log.info("miner %r mining as node %s", self._worker,
                                     self._identity.node_id)  # fmt: skip
                        self._opened = True
                    elif frame.msg_type in _ANSWERS:
                        self._counts._answered(sv2.decode(frame))
                self._downstream.send_batch(frames)
        except (DomainError, ConnectionClosed, OSError) as error:
            log.debug("relay of miner %r ended: %s", self._worker, error)
        finally:
            self._downstream.close()


def relays(
    dial: Callable[[], NoiseSocket], identity: Identity, counts: RelayCounts
) -> Callable[[NoiseSocket], Relay]:
    """The proxy listener's handler factory: each miner gets a :class:`Relay` over a fresh
    connection to the pool (``dial``); :class:`UpstreamUnavailable` when there is none."""

    def relay(downstream: NoiseSocket) -> Relay:
        try:
            upstream = dial()
        except (DomainError, ConnectionClosed, OSError) as error:
            message = getattr(error, "message", None) or str(error) or type(error).__name__
            raise UpstreamUnavailable(f"the pool cannot be reached: {message}") from None
        return Relay(downstream, upstream, identity, counts)

    return relay
