"""Bounds on what one gRPC caller can hold: threads, idle streams, message sizes (SRS-COORD-02).

``grpc.server`` serves every RPC on a thread of a fixed pool, and a streaming RPC holds its
thread for as long as it stays open. Without bounds, 64 idle ``HeartbeatStream`` calls that
never send a byte would hold every thread, and no node could register or heartbeat any more.
:class:`StreamLimiter`, a server interceptor, keeps that from happening:

* long-lived streams (``HeartbeatStream``, ``TaskStream``) together take at most
  :meth:`GrpcLimits.stream_slots` threads — always fewer than the pool — so unary RPCs
  always find one; a stream beyond the cap is refused at once with RESOURCE_EXHAUSTED;
* client streams (``HeartbeatStream``: a bound certificate is all they need, and anyone gets
  one from the node issuer) take at most :meth:`GrpcLimits.heartbeat_slots` of those (a
  quarter by default), so the rest are kept for task streams, which only registered,
  staked nodes open after answering a challenge (one per key: a new one replaces the old);
* one client holds at most ``streams_per_peer`` client streams: a client is its address
  group (:func:`~owm_core.access.ratelimit.address_group`: the IPv4 address or the IPv6
  /64), or over the onion service its TLS client certificate;
* a client stream that waits longer than ``idle_s`` for its next message is ended with
  RESOURCE_EXHAUSTED ``stream-idle`` by one watchdog thread (not a thread per stream).

Messages larger than ``max_message_bytes`` are refused by gRPC itself before they are parsed
(the cheap size check first). What a stream must send to stay open (a batch with at least one
admissible heartbeat; a node that keeps heartbeating) is the servicer's rule.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import grpc

from owm_adapters.bootstrap.settings import CoordinatorSection
from owm_adapters.control_plane.grpc_client import MAX_MESSAGE_BYTES
from owm_core.access.ratelimit import ip_key
from owm_server.grpc.interceptor import BehaviourInterceptor

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = MAX_MESSAGE_BYTES
"""A task's largest input and its envelope; larger messages are refused unparsed."""


@attrs.frozen
class GrpcLimits:
    """How much of the server one caller may hold (see the module docstring)."""

    #: Long-lived streams served at once; None: the pool less a quarter (at least 2) kept
    #: for unary RPCs.
    max_streams: int | None = attrs.field(default=None)
    #: Client streams (``HeartbeatStream``) served at once; None: a quarter of the stream
    #: slots (at least 1). Never all of them: the rest are for task streams.
    heartbeat_streams: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )
    #: Client streams (``HeartbeatStream``) one client (IPv4 address, IPv6 /64, or onion
    #: client certificate) may hold open.
    streams_per_peer: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    #: Seconds a client stream may wait for its next message before it is ended.
    idle_s: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    #: How often an open ``TaskStream`` checks that its node is still online.
    liveness_check_s: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    #: The largest message the server receives or sends.
    max_message_bytes: int = attrs.field(
        default=DEFAULT_MAX_MESSAGE_BYTES, validator=attrs.validators.ge(1024)
    )

    def stream_slots(self, max_workers: int) -> int:
        """Streams the server holds at once: always at least one thread fewer than the pool."""
        if self.max_streams is not None:
            return max(1, min(self.max_streams, max_workers - 1))
        return max(1, max_workers - max(2, max_workers // 4))

    def heartbeat_slots(self, max_workers: int) -> int:
        """How many of :meth:`stream_slots` client streams may take: at least one slot is
        always left to task streams (none for client streams if there is only one)."""
        slots = self.stream_slots(max_workers)
        share = self.heartbeat_streams if self.heartbeat_streams is not None else slots // 4
        return max(0, min(max(1, share), slots - 1))

    @classmethod
    def of(cls, section: CoordinatorSection) -> GrpcLimits:
        """The limits ``[coordinator]`` sets (``grpc_stream_idle_s``,
        ``grpc_heartbeat_streams`` with 0 for the default share, and
        ``grpc_heartbeat_streams_per_peer``)."""
        return cls(
            idle_s=section.grpc_stream_idle_s,
            heartbeat_streams=section.grpc_heartbeat_streams or None,
            streams_per_peer=section.grpc_heartbeat_streams_per_peer,
        )

    def server_options(self) -> list[tuple[str, int]]:
        """The ``grpc.server`` options that set the message sizes explicitly."""
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]


def peer_address(context: grpc.ServicerContext) -> str:
    """The caller's address without its port (``ipv4:1.2.3.4:5`` → ``ipv4:1.2.3.4``)."""
    return (context.peer() or "unknown").rpartition(":")[0] or "unknown"


def client_ip(context: grpc.ServicerContext) -> str | None:
    """The peer's IP address from ``context.peer()`` (``ipv4:1.2.3.4:5`` / ``ipv6:[::1]:5``)."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        host = rest.rpartition(":")[0]
        return host.strip("[]").replace("%5B", "").replace("%5D", "")
    return None


def via_onion(context: grpc.ServicerContext, onion: bool) -> bool:
    """Whether the call came over the onion service: one is configured (``onion``) and the
    peer is on loopback or a unix socket, where Tor delivers every onion connection from."""
    if not onion:
        return False
    address = peer_address(context)
    host = address.partition(":")[2].strip("[]").replace("%5B", "").replace("%5D", "")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return address.startswith("unix")


def stream_owner(context: grpc.ServicerContext, onion: bool) -> str:
    """Whom ``streams_per_peer`` counts a client stream against: the peer's address group
    (the IPv4 address or the IPv6 /64, so addresses rotated inside one /64 count once), or,
    for a call over the onion service (every Tor client shares 127.0.0.1), its TLS client
    certificate — bound to one node key (SRS-NET-07)."""
    if not via_onion(context, onion):
        ip = client_ip(context)
        return ip_key(ip) if ip is not None else peer_address(context)
    certificates = (context.auth_context() or {}).get("x509_pem_cert") or [b""]
    return "cert:" + hashlib.sha256(bytes(certificates[0])).hexdigest()


def end_with_status(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> None:
    """End a call from another thread, with ``code`` and ``details`` where grpcio allows.

    ``ServicerContext.cancel`` (the only public way) tells the client just CANCELLED; the
    call object beneath it takes a status. If a grpcio release moves it, the public way stays.
    """
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        call.cancel(code.value[0], details)  # type: ignore[union-attr]
    except (AttributeError, TypeError):
        context.cancel()


@attrs.define(eq=False)
class _Slot:
    context: grpc.ServicerContext
    #: Whom a client stream counts against; None for a task stream.
    peer: str | None
    waiting_since: float | None = None
    released: bool = False


class StreamLimiter(BehaviourInterceptor):
    """Caps long-lived streams and ends idle client streams (see the module docstring)."""

    def __init__(
        self,
        limits: GrpcLimits,
        max_workers: int,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        onion: bool = False,
    ) -> None:
        self.limits = limits
        #: With an onion port, loopback peers are Tor clients: their streams are counted per
        #: client certificate (one per node key), never per address (SRS-NET-07).
        self.onion = onion
        self.capacity = limits.stream_slots(max_workers)
        #: Of ``capacity``, what client streams may hold: the rest is task streams' alone.
        self.heartbeat_capacity = limits.heartbeat_slots(max_workers)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._slots: set[_Slot] = set()
        self._per_peer: dict[str, int] = {}
        self._client_streams = 0
        self._stopped = threading.Event()
        self._watchdog: threading.Thread | None = None

    @property
    def open_streams(self) -> int:
        """How many long-lived streams hold a thread now."""
        with self._lock:
            return len(self._slots)

    def stop(self) -> None:
        """Stop the watchdog thread (the server is stopping)."""
        self._stopped.set()

    def wrap(self, kind: str, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        """Limit the server's one-way streams; unary and bidirectional RPCs pass untouched."""
        if kind == "stream_unary":
            return self._client_stream(behavior)
        if kind == "unary_stream":
            return self._server_stream(behavior)
        return behavior

    # -- wrapping ------------------------------------------------------------------------------

    def _client_stream(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def limited(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            slot = self._take(context, stream_owner(context, self.onion))
            try:
                return behavior(self._watched(requests, slot), context)
            finally:
                self._release(slot)

        return limited

    def _server_stream(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def limited(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            slot = self._take(context, None)
            context.add_callback(lambda: self._release(slot))
            try:
                yield from behavior(request, context)
            finally:
                self._release(slot)

        return limited

    def _watched(self, requests: Iterator[Any], slot: _Slot) -> Iterator[Any]:
        """The request stream, its waits visible to the watchdog."""
        while True:
            slot.waiting_since = self._monotonic()
            try:
                request = next(requests)
            except StopIteration:
                return
            finally:
                slot.waiting_since = None
            yield request

    # -- slots ---------------------------------------------------------------------------------

    def _refusal(self, peer: str | None) -> str | None:
        """Why one more stream (a client stream of ``peer``; None: a task stream) is refused
        now, or None; call with the lock held."""
        if len(self._slots) >= self.capacity:
            return f"the server holds {self.capacity} streams already; retry later"
        if peer is None:
            return None
        if self._client_streams >= self.heartbeat_capacity:
            return (
                f"the server holds {self.heartbeat_capacity} heartbeat streams already (the "
                "other stream slots are kept for task streams); retry later"
            )
        if self._per_peer.get(peer, 0) >= self.limits.streams_per_peer:
            return f"{self.limits.streams_per_peer} streams from this address are open"
        return None

    def _take(self, context: grpc.ServicerContext, peer: str | None) -> _Slot:
        with self._lock:
            refusal = self._refusal(peer)
            if refusal is None:
                slot = _Slot(context, peer)
                self._slots.add(slot)
                if peer is not None:
                    self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
                    self._client_streams += 1
                if peer is not None and self._watchdog is None:
                    self._watchdog = threading.Thread(
                        target=self._watch, name="owm-rpc-idle", daemon=True
                    )
                    self._watchdog.start()
                return slot
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"too-many-streams: {refusal}")
        raise AssertionError("unreachable")  # context.abort always raises

    def _release(self, slot: _Slot) -> None:
        with self._lock:
            if slot.released:
                return
            slot.released = True
            self._slots.discard(slot)
            if slot.peer is not None:
                self._client_streams -= 1
                left = self._per_peer.pop(slot.peer) - 1
                if left:
                    self._per_peer[slot.peer] = left

    def _watch(self) -> None:
        """End client streams that waited longer than ``idle_s`` for a message."""
        idle_s = self.limits.idle_s
        while not self._stopped.wait(min(1.0, idle_s / 4)):
            now = self._monotonic()
            with self._lock:
                idle = [
                    s for s in self._slots
                    if s.peer is not None
                    and s.waiting_since is not None
                    and now - s.waiting_since > idle_s
                ]
            for slot in idle:
                log.info("ending a gRPC stream from %s idle for %.0f s", slot.peer, idle_s)
                self._release(slot)
                end_with_status(
                    slot.context,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"stream-idle: no message for {idle_s:g} s; the stream is closed",
                )
