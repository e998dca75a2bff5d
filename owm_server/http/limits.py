"""How long and how many connections the public API holds (SRS-SEC-04, SRS-PERF-08).

uvicorn 0.49 bounds idle keep-alive connections and all open connections, nothing else, so
:class:`LimitedHttpProtocol` (its httptools protocol, subclassed) adds, per connection:

* **a header deadline** — a request's line and headers must arrive within
  ``header_timeout_s`` of its first byte (of the connection's opening for the first request);
  otherwise the connection is closed without an answer (slowloris);
* **a body deadline** — once the headers are complete, the whole body must arrive within
  ``body_timeout_s``; otherwise the request is answered ``408`` (an RFC 7807 problem,
  ``request-timeout``) when nothing was answered yet, and the connection is closed (a body
  trickled a byte a second);
* **a per-address cap** — at most ``max_connections_per_ip`` open connections from one IPv4
  address or IPv6 /64 (loopback included); the next one is answered ``429``
  (``rate-limited``) and closed before it reaches the application or takes one of the
  ``max_connections``. A peer listed in ``trusted_proxies`` is not capped as a peer (it carries
  every client's connections); the client its ``X-Forwarded-For`` names — read the way
  uvicorn's proxy middleware reads it — may have at most that many requests in flight
  through it, the next answered 429.

Everything here runs on the server's event loop (one thread), so the counters need no lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter, deque

import attrs
from starlette.types import Receive, Scope, Send
from uvicorn._types import ASGI3Application
from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from owm_core.access.ratelimit import ip_key
from owm_core.errors import InvalidValue
from owm_server.http.problems import PROBLEM_MEDIA_TYPE, TITLES, problem_type

log = logging.getLogger(__name__)

REFUSAL_LINGER_S = 1.0
"""How long a refused connection is kept open (reading and dropping what arrives) so that
its client reads the 429 instead of a reset."""


@attrs.frozen
class HttpLimits:
    """How long and how many connections the API holds (see the module docstring)."""

    header_timeout_s: float = 10.0
    """A request's line and headers must arrive within this time of its first byte."""
    body_timeout_s: float = 30.0
    """A request's whole body must arrive within this time of its headers (else 408)."""
    keep_alive_s: int = 5
    """An idle keep-alive connection is closed after this time."""
    max_connections: int = 2_048
    """Open connections beyond this are answered 503 (above SRS-PERF-08's 1,000 clients)."""
    max_connections_per_ip: int = 64
    """Open connections one client address (IPv4, IPv6 /64) may hold; the next gets 429."""
    trusted_proxies: tuple[str, ...] = ()
    """Peers whose ``X-Forwarded-For`` names the client; empty: never trust the header."""


DEFAULT_LIMITS = HttpLimits()


def problem_parts(status: int, code: str, detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body of a problem answer that closes its connection: what the
    protocol answers itself, before or instead of the application."""
    body = json.dumps(
        {"type": problem_type(code), "title": TITLES[code], "status": status,
         "detail": detail, "code": code},
        separators=(",", ":"),
    ).encode()
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return headers, body


def problem_reply(status: int, code: str, detail: str) -> bytes:
    """:func:`problem_parts` as the bytes of a whole HTTP/1.1 response."""
    headers, body = problem_parts(status, code, detail)
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return STATUS_LINE[status] + head + b"\r\n" + body


def address_key(host: str | None) -> str | None:
    """The key one client address counts under (IPv6 /64 as one), None when not an IP."""
    if host is None:
        return None
    try:
        return ip_key(host)
    except InvalidValue:
        return None


class AddressSlots:
    """Open connections (or in-flight proxied requests) per client address, up to ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def take(self, key: str) -> bool:
        """Count one more for ``key``; False (nothing counted) when it holds ``limit``."""
        if self._open[key] >= self.limit:
            return False
        self._open[key] += 1
        return True

    def give(self, key: str) -> None:
        """Count one less for ``key``."""
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]

    def held(self, key: str) -> int:
        """How many ``key`` holds now."""
        return self._open[key]


class _TooMany(Exception):
    """The client a trusted proxy names has its share of requests in flight."""


def _too_many_requests(limit: int) -> ASGI3Application:
    """An ASGI application answering 429 and closing: a request over the per-address cap."""
    detail = f"more than {limit} requests at once from this address"
    headers, body = problem_parts(429, "rate-limited", detail)

    async def app(_scope: Scope, _receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app  # type: ignore[return-value]


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and the cap of the module docstring.

    The limits are class attributes of the subclass :func:`protocol_for` makes, since uvicorn
    builds protocols from its config alone.
    """

    limits: HttpLimits = DEFAULT_LIMITS
    slots: AddressSlots = AddressSlots(DEFAULT_LIMITS.max_connections_per_ip)
    proxies: _TrustedHosts = _TrustedHosts([])
    _header_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _peer_slot: str | None = None
    _proxied: bool = False
    _refused: bool = False

    # -- the per-address cap -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else None
        self._proxied = host in self.proxies
        self._in_flight: deque[str | None] = deque()
        key = None if self._proxied else address_key(host)
        if key is not None and not self.slots.take(key):
            self._refuse(f"more than {self.slots.limit} open connections from this address")
            return
        self._peer_slot = key
        self._arm_header_timer()

    def _refuse(self, detail: str) -> None:
        """Answer 429 and close shortly after, without taking a connection slot."""
        self._refused = True
        self.connections.discard(self)
        self.transport.write(problem_reply(429, "rate-limited", detail))
        self.loop.call_later(REFUSAL_LINGER_S, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def _request_slot(self) -> str | None:
        """Through a trusted proxy, the key of the client it names when that client may have
        one more request in flight (counted); otherwise None. Raises _TooMany when it may not."""
        if not self._proxied:
            return None
        forwarded = b", ".join(v for k, v in self.headers if k == b"x-forwarded-for")
        host = None
        if forwarded:
            host, _port = self.proxies.get_trusted_client_address(forwarded.decode("latin-1"))
        key = address_key(host)
        if key is not None and not self.slots.take(key):
            raise _TooMany
        return key

    def _give_request_slot(self) -> None:
        if self._in_flight:
            key = self._in_flight.popleft()
            if key is not None:
                self.slots.give(key)

    # -- the header and body deadlines -------------------------------------------------------

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.limits.header_timeout_s, self._headers_late
            )

    def _disarm_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _body_late(self) -> None:
        """Answer 408 unless the application answered already, and close."""
        self._body_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The application's own answer, if it ever comes, goes nowhere.
            cycle.response_started = cycle.response_complete = cycle.disconnected = True
            cycle.message_event.set()
            detail = f"the request body did not arrive within {self.limits.body_timeout_s:g} s"
            self.transport.write(problem_reply(408, "request-timeout", detail))
        log.debug("closed a connection whose request body was late",
                 extra={"client": self.client[0] if self.client else None})
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_timers()
        app = self.app
        try:
            self._in_flight.append(self._request_slot())
        except _TooMany:
            self._in_flight.append(None)
            self.app = _too_many_requests(self.slots.limit)  # answers this request only
        try:
            super().on_headers_complete()
        finally:
            self.app = app
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_late)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._give_request_slot()
        super().on_response_complete()

    def handle_websocket_upgrade(self) -> None:
        """The WebSocket protocol takes the connection over (this protocol hears no more of
        it): its slots stay taken until that protocol loses the connection."""
        self._disarm_timers()
        super().handle_websocket_upgrade()
        socket = self.transport.get_protocol()
        lost = socket.connection_lost

        def release(exc: Exception | None) -> None:
            try:
                lost(exc)
            finally:
                self._release_slots()

        socket.connection_lost = release  # type: ignore[method-assign]

    def _release_slots(self) -> None:
        while self._in_flight:
            self._give_request_slot()
        if self._peer_slot is not None:
            self.slots.give(self._peer_slot)
            self._peer_slot = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_timers()
        self._release_slots()
        super().connection_lost(exc)


def protocol_for(limits: HttpLimits) -> type[LimitedHttpProtocol]:
    """The protocol class one server uses: ``limits`` and one shared :class:`AddressSlots`."""
    return type(
        "ApiHttpProtocol",
        (LimitedHttpProtocol,),
        {
            "limits": limits,
            "slots": AddressSlots(limits.max_connections_per_ip),
            "proxies": _TrustedHosts(list(limits.trusted_proxies)),
        },
    )
