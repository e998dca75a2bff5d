"""The repositories of state several coordinators on one database share (SRS-COORD-05).

Outstanding challenges, the nonces the replay guards have seen and the requests the
sliding-window rate limits counted: one coordinator's memory held them before, so a challenge
issued by one coordinator could not be answered at another, and a nonce or a limit held at one
only. The semantics every store keeps are in :mod:`owm_core.ports.repositories`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from owm_core.access.ratelimit import Admission, RateLimit
from owm_core.coordination.challenges import Challenge
from owm_core.market.streams import OpenStream


class ChallengeRepository(Protocol):
    """Challenges issued and not yet answered (SRS-SEC-03), one use each."""

    def __len__(self) -> int:
        """How many challenges are outstanding (expired ones not yet forgotten included)."""
        ...

    def add(self, challenge: Challenge, keep: int) -> None:
        """Hold ``challenge``; then at most ``keep`` challenges, the oldest dropped first."""
        ...

    def take(self, nonce: str) -> Challenge | None:
        """Remove and return the challenge with ``nonce`` (None if none): of several callers
        taking one nonce at once, exactly one gets it."""
        ...

    def forget_expired(self, now: int) -> int:
        """Drop every challenge that expired before ``now``; how many."""
        ...


class NonceRepository(Protocol):
    """Envelope nonces already used, per signer, kept until they expire (SRS-SEC-03)."""

    def claim(self, signer: str, nonce: str, expires_at: int) -> bool:
        """Record ``(signer, nonce)`` until ``expires_at``; False if it is recorded already
        (of several callers claiming one pair at once, exactly one gets True)."""
        ...

    def claim_many(self, claims: Sequence[tuple[str, str, int]]) -> set[tuple[str, str]]:
        """:meth:`claim` for every ``(signer, nonce, expires_at)`` in one round trip; the
        ``(signer, nonce)`` pairs that were new and are now recorded (a pair named twice in
        ``claims`` is claimed once)."""
        ...

    def forget_expired(self, now: int) -> int:
        """Drop every nonce that expired before ``now``; how many."""
        ...


class RateLogRepository(Protocol):
    """The times each sliding-window limit admitted a request, per key (SRS-SEC-04, API-02)."""

    def admit(self, scope: str, key: str, now: int, rate: RateLimit) -> Admission:
        """Admit one request for ``key`` of the limit ``scope`` at ``now`` by the sliding-log
        rule (:func:`owm_core.access.ratelimit.admit_to_log`), recording it when admitted; one
        key's requests are admitted one at a time, whichever coordinator asks."""
        ...


class QuotaRepository(Protocol):
    """Per-key counters of a period (a UTC day, SRS-API-03) that several coordinators spend
    from together (SRS-COORD-05)."""

    def spend(self, scope: str, key: str, period: int, limit: int, amount: int = 1) -> int | None:
        """Count ``amount`` uses of ``key`` in ``period`` unless that would pass ``limit``:
        how many are counted now, or None when they do not fit (nothing counted; of many
        callers at once, exactly as many as fit get a number)."""
        ...

    def give_back(self, scope: str, key: str, period: int, amount: int) -> None:
        """Uncount ``amount`` of what ``key`` spent in ``period`` (never below nothing): a
        reservation that turned out larger than what was used."""
        ...

    def forget_before(self, period: int) -> int:
        """Drop the counters of every period before ``period``; how many."""
        ...


class TokenCreditRepository(Protocol):
    """What each L402 token's payment still covers under per-query pricing (SRS-API-03), spent
    by several coordinators together (SRS-COORD-05)."""

    def open(self, token: str, paid_msat: int, until: int) -> None:
        """Know ``token``'s credit: ``paid_msat``, usable until ``until``; a token already
        known keeps what is left of its credit (using it again refills nothing)."""
        ...

    def charge(self, token: str, price_msat: int, now: int) -> int | None:
        """Take ``price_msat`` from ``token``'s credit: the msat left, or None when the credit
        does not cover it or the token is unknown or expired (nothing is taken then). Of many
        callers charging one token at once, only as many succeed as its credit covers."""
        ...

    def refund(self, token: str, price_msat: int) -> None:
        """Give ``price_msat`` back to ``token``'s credit (a query that failed unanswered)."""
        ...

    def forget_expired(self, now: int) -> int:
        """Drop the credits of tokens whose access ended at or before ``now``; how many."""
        ...


class TaskStreamRepository(Protocol):
    """The task streams open at every coordinator sharing the store, one record per node
    (:mod:`owm_core.market.streams`, SRS-COORD-05)."""

    def put(self, stream: OpenStream) -> None:
        """Record ``stream`` as its node's stream, replacing any record the node had (a newer
        connection supersedes an older one, wherever each is held)."""
        ...

    def refresh(self, streams: Sequence[OpenStream], now: int) -> None:
        """Confirm ``streams`` at ``now``: a node's record of the same stream is seen at
        ``now``, a node without a record gets this one; a node whose record names another
        stream (it reconnected elsewhere) keeps it."""
        ...

    def remove(self, node_id: str, stream_id: str) -> bool:
        """Forget ``node_id``'s record if it is still of ``stream_id``; whether it was."""
        ...

    def seen_since(self, since: int) -> list[OpenStream]:
        """The records seen at or after ``since``, by node id."""
        ...

    def forget_before(self, before: int) -> int:
        """Drop the records last seen before ``before``; how many."""
        ...
