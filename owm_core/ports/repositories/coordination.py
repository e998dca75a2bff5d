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

    def spend(self, scope: str, key: str, period: int, limit: int) -> int | None:
        """Count one use of ``key`` in ``period`` unless ``limit`` uses are counted already:
        how many are counted now, or None when the limit was reached (of many callers at once,
        exactly ``limit`` get a number)."""
        ...

    def forget_before(self, period: int) -> int:
        """Drop the counters of every period before ``period``; how many."""
        ...
