"""Daily quotas of paying callers: requests and writes per API key or L402 token (SRS-API-03).

Commercial keys and L402 tokens are not held to the free tier's window, but a 10-sat token must
not buy unlimited treasury-paid queries and writes either. :class:`DailyQuota` counts per key
and UTC day — one counter per key, so a flood of paid tokens costs a few bytes each — and says
how long until the next day when a key is over its quota. :class:`QueryCredit` is the optional
per-query price: what a token's invoice paid, spent query by query. :class:`QueryShare` is each
caller's share of the treasury's daily ``queries`` budget, so one caller cannot spend it all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import attrs

from owm_core.access.callers import Caller
from owm_core.access.ratelimit import DAY_S
from owm_core.errors import RateLimited
from owm_core.ports.repositories import QuotaRepository, TokenCreditRepository


@attrs.frozen
class QuotaCheck:
    """One request counted: whether it was admitted, what is left and when the day turns."""

    admitted: bool
    remaining: int
    retry_after_s: int


@attrs.define(eq=False)
class DailyQuota:
    """At most ``limit`` admissions per key and UTC day (thread-safe; see module docstring).

    With a ``ledger`` (several coordinators on one database, SRS-COORD-05) the day's counters
    are the store's, under ``scope``, so a key has one quota behind a load balancer, not one
    per coordinator.
    """

    limit: int = attrs.field(validator=attrs.validators.ge(1))
    _ledger: QuotaRepository | None = None
    _scope: str = "api/daily"
    _day: int = attrs.field(init=False, default=-1)
    _counts: dict[str, int] = attrs.field(init=False, factory=dict)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def admit(self, key: str, now: int, amount: int = 1) -> QuotaCheck:
        """Count ``amount`` (one request, unless said) of ``key`` at ``now`` (unix s) unless
        it would pass the day's quota (then nothing is counted)."""
        day, into = divmod(now, DAY_S)
        if self._ledger is not None:
            used = self._ledger.spend(self._scope, key, day, self.limit, amount)
            if used is None:
                return QuotaCheck(False, 0, DAY_S - into)
            return QuotaCheck(True, self.limit - used, 0)
        with self._lock:
            if day != self._day:  # yesterday's counters are of no use any more
                self._day = day
                self._counts.clear()
            used = self._counts.get(key, 0)
            if used + amount > self.limit:
                return QuotaCheck(False, 0, DAY_S - into)
            self._counts[key] = used + amount
        return QuotaCheck(True, self.limit - used - amount, 0)

    def give_back(self, key: str, day: int, amount: int) -> None:
        """Uncount ``amount`` of what ``key`` was counted on ``day`` (never below nothing)."""
        if self._ledger is not None:
            self._ledger.give_back(self._scope, key, day, amount)
            return
        with self._lock:
            if day == self._day and key in self._counts:
                self._counts[key] = max(0, self._counts[key] - amount)


@attrs.define(eq=False)
class QueryCredit:
    """What each L402 token paid, spent ``price_msat`` per query (per-query pricing, SRS-API-03).

    A token's credit is its invoice's amount, known when the token is first used; each query
    takes ``price_msat`` of it, and a query the credit no longer covers is refused (the caller
    pays again). Entries are dropped once their token's access has expired, and at most
    ``max_tokens`` are kept (the oldest go first), so a flood of tokens costs bounded memory;
    a restart forgets what was spent. With a ``ledger`` (several coordinators on one database,
    SRS-COORD-05) the credits are the store's instead, so a token's payment is spent once
    behind a load balancer, not once per coordinator (the retention job drops expired ones).
    """

    price_msat: int = attrs.field(validator=attrs.validators.ge(1))
    _max: int = attrs.field(default=1_000_000, alias="max_tokens")
    _ledger: TokenCreditRepository | None = None
    #: token → (msat left, usable until)
    _left: OrderedDict[str, tuple[int, int]] = attrs.field(init=False, factory=OrderedDict)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def open(self, token: str, paid_msat: int, until: int) -> None:
        """Know ``token``'s credit: what its invoice paid, usable until ``until`` (unix s).
        A token already known keeps what is left of its credit."""
        if self._ledger is not None:
            self._ledger.open(token, paid_msat, until)
            return
        with self._lock:
            if token in self._left:
                return
            if len(self._left) >= self._max:
                self._left.popitem(last=False)
            self._left[token] = (paid_msat, until)

    def charge(self, token: str, now: int) -> int | None:
        """Take one query's price from ``token``'s credit; the msat left, or None when the
        credit does not cover it, or the token is unknown or expired (nothing is taken then)."""
        if self._ledger is not None:
            return self._ledger.charge(token, self.price_msat, now)
        with self._lock:
            while self._left and next(iter(self._left.values()))[1] <= now:
                self._left.popitem(last=False)
            left, until = self._left.get(token, (0, now))
            if left < self.price_msat or until <= now:
                return None
            self._left[token] = (left - self.price_msat, until)
            return left - self.price_msat

    def refund(self, token: str) -> None:
        """Give one query's price back (the query failed before it was answered)."""
        if self._ledger is not None:
            self._ledger.refund(token, self.price_msat)
            return
        with self._lock:
            if token in self._left:
                left, until = self._left[token]
                self._left[token] = (left + self.price_msat, until)


@attrs.frozen
class QueryHold:
    """What one admitted query holds of its caller's share: its worst case, on its day."""

    key: str
    day: int
    msat: int


@attrs.define(eq=False)
class QueryShare:
    """Each caller's share of the treasury's daily ``queries`` budget (``share_msat`` a UTC
    day), so one key or one 10-sat token cannot spend the budget every other caller's queries
    are paid from.

    A query holds the most it can draw (``most_msat``) while it runs, so a caller's parallel
    queries are admitted only while their worst cases fit, and gives back what it did not
    spend once it is answered (:meth:`settle`): a caller is held to what its queries cost,
    never to their worst case. A query whose tasks may still be paid after its answer (one
    timed out) keeps its hold. With a ``ledger`` the counts are the store's (SRS-COORD-05), one
    share per caller behind a load balancer.
    """

    share_msat: int
    most_msat: int
    _quota: DailyQuota = attrs.field(init=False)
    _ledger: QuotaRepository | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        limit = max(self.share_msat, self.most_msat)  # a share always admits one query
        self._quota = DailyQuota(limit, self._ledger, "api/query-share-msat")

    def admit(self, caller: Caller, now: int) -> QueryHold:
        """Hold one query's worst case of ``caller``'s share, or RateLimited (HTTP 429 with
        Retry-After) saying the share is spent and when the day turns."""
        key = f"{caller.kind.value}:{caller.subject}"
        check = self._quota.admit(key, now, self.most_msat)
        if not check.admitted:
            raise RateLimited(
                f"this caller's share of the treasury's daily query budget is spent "
                f"({self.share_msat} msat a day; each query holds up to {self.most_msat} msat "
                f"until it is answered, then what it did not cost comes back); it resets at "
                f"00:00 UTC, in {check.retry_after_s} s",
                retry_after_s=check.retry_after_s,
            )
        return QueryHold(key, now // DAY_S, self.most_msat)

    def settle(self, hold: QueryHold, cost_msat: int | None) -> None:
        """The held query was answered at ``cost_msat``: give back the rest of its hold.
        ``None`` (some of its tasks may still be paid) keeps the whole hold."""
        if cost_msat is None:
            return
        unused = hold.msat - min(max(cost_msat, 0), hold.msat)
        if unused:
            self._quota.give_back(hold.key, hold.day, unused)
