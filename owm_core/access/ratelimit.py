"""Sliding-window rate limits: API keys, node registration, the onion endpoint.

This module owns the exact sliding-log limiter (SRS-API-02) and the limits OWM applies with it:

* :data:`API_KEY_FREE_TIER` — 100 requests per API key per day (SRS-API-02);
* :data:`REGISTRATION_PER_IP` — 10 new nodes per client IP per hour (SRS-SEC-04);
* :data:`ONION_REGISTRATION_PER_NODE_KEY` — the same 10 per hour on the Tor hidden service,
  keyed by the registering node's **public key**, not by IP (SRS-NET-07): behind a hidden
  service every connection arrives from the local Tor daemon, i.e. 127.0.0.1, so an IP key
  would put all onion users into one bucket. A fresh key is free to make, so this limit only
  paces a single key; the cost of a Sybil identity is the stake channel (SRS-STAKE-01).

Use :func:`registration_key` to pick the right key for a request's transport.

API: :meth:`SlidingWindowLimiter.admit` returns an :class:`Admission` and never raises for a
full window (it records the request only when admitted); :meth:`SlidingWindowLimiter.enforce`
is the same call raising :class:`~owm_core.errors.RateLimited` for shells that prefer that.

Guarantee: for every key and every sequence of non-decreasing ``now`` values, no interval
``[s, s + window_s)`` contains more than ``limit`` admitted requests, and a request is admitted
whenever fewer than ``limit`` were admitted in ``(now - window_s, now]`` — in particular after
``window_s`` seconds of silence the full quota is back. Each key keeps at most ``limit``
timestamps, and keys idle for ``window_s`` are dropped, so memory is bounded by the keys active
within one window. A ``now`` earlier than one already seen for a key is treated as that later
time (the limiter never admits more because a clock stepped back).
"""

from __future__ import annotations

import enum
import ipaddress
from collections import OrderedDict, deque
from typing import Protocol

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue, RateLimited
from owm_core.identity.keys import parse_public_key

MAX_KEY_LEN = 512
DAY_S = 86_400
"""The period of the daily quotas of paying callers (a UTC day, SRS-API-03)."""
IPV6_PREFIX = 64


@attrs.frozen
class RateLimit:
    """At most ``limit`` admissions per key in any ``window_s`` seconds."""

    limit: int = attrs.field(validator=fields.integer(minimum=1, maximum=10**9))
    window_s: int = attrs.field(validator=fields.integer(minimum=1, maximum=10**9))


API_KEY_FREE_TIER = RateLimit(limit=100, window_s=86_400)
REGISTRATION_PER_IP = RateLimit(limit=10, window_s=3_600)
ONION_REGISTRATION_PER_NODE_KEY = RateLimit(limit=10, window_s=3_600)


@attrs.frozen
class Admission:
    """The answer to one request: admitted or not, slots left, seconds until the next slot."""

    admitted: bool
    remaining: int = attrs.field(validator=fields.integer(minimum=0))
    retry_after_s: int = attrs.field(validator=fields.integer(minimum=0))


class RateLedger(Protocol):
    """The requests each limit counted, shared by every coordinator on one database
    (SRS-COORD-05): the shape of :class:`owm_core.ports.repositories.RateLogRepository`."""

    def admit(self, scope: str, key: str, now: int, rate: RateLimit) -> Admission:
        """:meth:`SlidingWindowLimiter.admit` for ``key`` of the limit named ``scope``."""
        ...


@attrs.define
class SlidingWindowLimiter:
    """An exact sliding-log limiter for one :class:`RateLimit`, keyed by arbitrary strings.

    With a ``ledger`` the log lives there, under ``scope``, so that several coordinators on
    one database share one limit (SRS-COORD-05); otherwise in this process's memory.
    """

    rate: RateLimit = attrs.field(validator=fields.instance_of(RateLimit))
    ledger: RateLedger | None = attrs.field(default=None, kw_only=True)
    scope: str = attrs.field(default="", kw_only=True)
    _log: OrderedDict[str, deque[int]] = attrs.field(init=False, factory=OrderedDict)

    def __len__(self) -> int:
        """How many keys currently hold timestamps (for memory checks and metrics)."""
        return len(self._log)

    def admit(self, key: str, now: int) -> Admission:
        """Admit and record one request for ``key`` at ``now`` if the window has room."""
        _check_key(key)
        if isinstance(now, bool) or not isinstance(now, int) or now < 0:
            raise InvalidValue("now", "must be a non-negative integer")
        if self.ledger is not None:
            return self.ledger.admit(self.scope, key, now, self.rate)
        self._forget_idle_keys(now)
        stamps = self._log.get(key)
        if stamps is None:
            stamps = deque()
        elif stamps:
            now = max(now, stamps[-1])
        horizon = now - self.rate.window_s
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if len(stamps) >= self.rate.limit:
            if stamps:
                self._log[key] = stamps
            retry = stamps[0] + self.rate.window_s - now
            return Admission(admitted=False, remaining=0, retry_after_s=retry)
        stamps.append(now)
        self._log[key] = stamps
        self._log.move_to_end(key)
        return Admission(admitted=True, remaining=self.rate.limit - len(stamps), retry_after_s=0)

    def enforce(self, key: str, now: int) -> Admission:
        """Like :meth:`admit`, but raise :class:`RateLimited` (with ``retry_after_s``) if full."""
        admission = self.admit(key, now)
        if not admission.admitted:
            raise RateLimited(
                f"rate limit of {self.rate.limit} per {self.rate.window_s} s reached",
                retry_after_s=admission.retry_after_s,
            )
        return admission

    def _forget_idle_keys(self, now: int) -> None:
        # Keys are ordered by their latest admission, so idle ones gather at the front.
        horizon = now - self.rate.window_s
        while self._log:
            key, stamps = next(iter(self._log.items()))
            if stamps and stamps[-1] > horizon:
                break
            del self._log[key]


def _check_key(key: object) -> None:
    if not isinstance(key, str):
        raise InvalidValue("key", f"must be text, got {type(key).__name__}")
    if not 1 <= len(key) <= MAX_KEY_LEN:
        raise InvalidValue("key", f"length must be in [1, {MAX_KEY_LEN}]")


class Transport(enum.Enum):
    """How a request reached the coordinator (SRS-NET-01)."""

    CLEARNET = "clearnet"
    ONION = "onion"


def address_group(client_ip: str) -> str:
    """What one client at ``client_ip`` is counted under wherever OWM caps a client address
    (rate limits, the pool's connections, the control plane's streams; SRS-SEC-04/16): the IPv4
    address, or the /64 of an IPv6 address (what one subscriber is usually given, so rotating
    addresses inside it escapes nothing); an IPv4-mapped IPv6 address counts as its IPv4
    address, and a zone (``%eth0``) is ignored. ``InvalidValue`` if it is no IP address."""
    try:
        address = ipaddress.ip_address(client_ip.partition("%")[0])
    except ValueError:
        raise InvalidValue("client_ip", "is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def ip_key(client_ip: str) -> str:
    """The limiter key of a clearnet client address: ``ip:`` and its :func:`address_group`."""
    return f"ip:{address_group(client_ip)}"


def node_key(node_public_key: str) -> str:
    """The limiter key of a node's Ed25519 public key (onion endpoint, SRS-NET-07)."""
    return "node:" + parse_public_key(node_public_key, "node_public_key")


def registration_key(transport: Transport, client_ip: str | None, node_public_key: str) -> str:
    """The key a registration is counted under: IP on clearnet, node key on onion.

    On the onion endpoint ``client_ip`` is ignored — it is always the local Tor daemon.
    """
    if transport is Transport.ONION:
        return node_key(node_public_key)
    if client_ip is None:
        raise InvalidValue("client_ip", "is required for clearnet requests")
    return ip_key(client_ip)


def registration_limit(transport: Transport) -> RateLimit:
    """The registration limit that applies on ``transport`` (SRS-SEC-04, SRS-NET-07)."""
    if transport is Transport.ONION:
        return ONION_REGISTRATION_PER_NODE_KEY
    return REGISTRATION_PER_IP


def admit_to_log(stamps: list[int], now: int, rate: RateLimit) -> tuple[Admission, int | None]:
    """The sliding-log rule over one key's recorded times ``stamps`` (oldest first): the
    admission, and the time to record (None when refused). A shared ledger applies exactly
    the rule :meth:`SlidingWindowLimiter.admit` applies in memory (SRS-COORD-05)."""
    if stamps:
        now = max(now, stamps[-1])
    horizon = now - rate.window_s
    live = [at for at in stamps if at > horizon]
    if len(live) >= rate.limit:
        retry = live[-rate.limit] + rate.window_s - now
        return Admission(admitted=False, remaining=0, retry_after_s=max(0, retry)), None
    return Admission(admitted=True, remaining=rate.limit - len(live) - 1, retry_after_s=0), now
