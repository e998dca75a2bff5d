"""The public API's tuning, and the read-through cache its read models share."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from owm_core.access.ratelimit import API_KEY_FREE_TIER, RateLimit
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories

_T = TypeVar("_T")

INVOICES_PER_CLIENT = RateLimit(limit=120, window_s=3_600)
"""Access invoices one client address may have the treasury create per hour."""
PUBLIC_PER_CLIENT = RateLimit(limit=120, window_s=60)
"""Requests to public operations (no credential) one client address may make per minute."""


@attrs.frozen
class ApiConfig:
    """Tuning of the public API (defaults suit the embedded single-machine coordinator)."""

    l402_price_msat: int = 10_000
    """What 24 hours of commercial access cost (10 sat by default)."""
    query_price_msat: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    """Per-query pricing: what each query costs an L402 token, out of what its invoice paid
    (0: off, queries count against the daily quota only). A token whose credit no longer
    covers a query is answered 402 with a new invoice."""
    invoice_expiry_s: int = 600
    invoices_per_client: RateLimit = INVOICES_PER_CLIENT
    public_per_client: RateLimit = PUBLIC_PER_CLIENT
    """Requests to public operations per client address (IPv6 /64) and window, counted by each
    coordinator on its own: a bound on what strangers make it compute (SRS-SEC-04)."""
    free_tier: RateLimit = API_KEY_FREE_TIER
    cache_ttl_ms: int = 1_000
    """How stale public aggregates (stats, lists) may be; 0 disables the cache."""
    auth_cache_ttl_ms: int = 5_000
    """How long an API key lookup is reused; a revoked key stops working within this time."""
    signed_window_s: int = 300
    replay_guard_max_entries: int = 1_000_000
    """Signed requests of registered nodes remembered within one window (replays refused)."""
    signed_per_key: int = 3_000
    """Signed requests one registered node key may make per window (10 a second on average)."""
    dashboard_interval_s: float = 5.0
    """How often the live mining dashboard (WebSocket) pushes metrics."""
    onion_address: str = ""
    """The control plane's ``<v3>.onion:<port>`` when the coordinator runs its onion service
    (``GET /v1/network/coordinator``, SRS-COORD-07); empty: none."""
    tls_fingerprint: str = ""
    """The SHA-256 fingerprint of the control plane's TLS certificate, published with it."""
    dashboard_access: str = attrs.field(
        default="loopback", validator=attrs.validators.in_(("loopback", "off", "public"))
    )
    """Who sees ``/dashboard`` and the live mining feed: loopback peers, nobody or everyone."""
    max_list: int = 500
    paid_requests_per_day: int = 20_000
    """Requests a commercial key or an L402 token may make per UTC day (SRS-API-03)."""
    writes_per_day: int = 1_000
    """Writes (proposals, comments, bounties, analyses…) per key or token and UTC day."""
    max_bounty_sat: int = 10_000_000
    """The largest bounty a caller may open (0.1 BTC by default)."""
    bounty_budget_sat: int = 100_000_000
    """What the treasury's open bounties may hold together (1 BTC by default; sponsored ones
    do not count: their sponsors paid)."""
    bounty_maintainers: tuple[str, ...] = ()
    """The API key owners (``owm-coordinator api-key create --owner``) who open
    treasury-funded bounties; every other caller only sponsors one (``[github]
    bounty_maintainers``; SRS-LN-08)."""
    max_requested_sat: int = 100_000_000
    """The largest amount a governance proposal may request (1 BTC by default)."""
    max_comments_per_proposal: int = 500
    max_comments_per_author: int = 20
    """Comments one caller may leave on one proposal."""


class ReadCache:
    """A tiny read-through cache keyed by name; values expire after ``ttl_ms``.

    The API's capabilities share one: public aggregates are recomputed at most once per
    ``cache_ttl_ms`` under 1,000 concurrent clients (SRS-PERF-08), and every write through the
    API (a registration, a release, a proposal, a bounty) clears it, so its author reads it back.
    Full, it drops the value used least recently, never everything: a flood of new keys pushes
    out only what nobody asked for since (SRS-SEC-04). Thread-safe.
    """

    def __init__(self, clock: Clock, ttl_ms: int, max_entries: int = 10_000) -> None:
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._max = max_entries
        self._values: OrderedDict[Any, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._flights: dict[Any, threading.Lock] = {}

    def get(self, key: Any, compute: Callable[[], _T]) -> _T:
        """The cached value of ``key``, or ``compute()`` kept for ``ttl_ms``. Requests that
        miss the same key together wait for one computation instead of each running it (an
        expired aggregate under 1,000 concurrent clients is read from the store once)."""
        if self._ttl_ms <= 0:
            return compute()
        hit, cached = self.lookup(key)
        if not hit:
            with self._lock:
                flight = self._flights.setdefault(key, threading.Lock())
            with flight:
                hit, cached = self.lookup(key)  # computed while this request waited?
                if not hit:
                    try:
                        cached = compute()
                        self.put(key, cached)
                    finally:
                        with self._lock:
                            if self._flights.get(key) is flight:
                                del self._flights[key]
        value: _T = cached
        return value

    def lookup(self, key: Any) -> tuple[bool, Any]:
        """Whether ``key`` holds a fresh value, and the value (marked as just used)."""
        if self._ttl_ms <= 0:
            return False, None
        now = self._clock.monotonic_ms()
        with self._lock:
            hit = self._values.get(key)
            if hit is None or now - hit[0] >= self._ttl_ms:
                return False, None
            self._values.move_to_end(key)
            return True, hit[1]

    def put(self, key: Any, value: Any) -> None:
        """Keep ``value`` for ``key`` (dropping the least recently used value when full)."""
        if self._ttl_ms <= 0:
            return
        now = self._clock.monotonic_ms()
        with self._lock:
            self._values[key] = (now, value)
            self._values.move_to_end(key)
            while len(self._values) > self._max:
                self._values.popitem(last=False)

    def __len__(self) -> int:
        """How many values are kept (fresh or not)."""
        return len(self._values)

    def forget(self, key: Any) -> None:
        """Drop one value (it is computed again on the next read)."""
        with self._lock:
            self._values.pop(key, None)

    def clear(self) -> None:
        """Drop every value: something the reads depend on changed."""
        with self._lock:
            self._values.clear()


@attrs.define(eq=False)
class CachedReads:
    """What the API's proposal and bounty capabilities share: the store, the clock, the read
    cache (by default none: every read goes to the store), the API's tuning and the randomness
    new ids are drawn from."""

    _repositories: Repositories
    _clock: Clock
    _cache: ReadCache = attrs.field()
    _config: ApiConfig = attrs.Factory(ApiConfig)
    _entropy: Callable[[int], bytes] = os.urandom

    @_cache.default
    def _uncached(self) -> ReadCache:
        return ReadCache(self._clock, ttl_ms=0)
