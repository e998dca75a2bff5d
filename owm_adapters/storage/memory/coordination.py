"""In-memory twin: challenges, used nonces and rate-limit logs (shared state, SRS-COORD-05)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from owm_adapters.storage.memory.state import StateRepository
from owm_core.access.ratelimit import Admission, RateLimit, admit_to_log
from owm_core.coordination.challenges import Challenge
from owm_core.market.streams import OpenStream


class MemoryChallengeRepository(StateRepository):
    """Outstanding challenges by nonce, oldest first."""

    def __len__(self) -> int:
        with self._lock:
            return len(self._state.challenges)

    def add(self, challenge: Challenge, keep: int) -> None:
        """Hold ``challenge``; then at most ``keep`` challenges, the oldest dropped first."""
        with self._lock:
            held = self._state.challenges
            held[challenge.nonce] = challenge
            excess = len(held) - keep
            if excess > 0:
                for nonce in sorted(held, key=lambda n: (held[n].issued_at, n))[:excess]:
                    del held[nonce]

    def take(self, nonce: str) -> Challenge | None:
        """Remove and return the challenge with ``nonce`` (None if none)."""
        with self._lock:
            return self._state.challenges.pop(nonce, None)

    def forget_expired(self, now: int) -> int:
        """Drop every challenge that expired before ``now``; how many."""
        return self._drop_where("challenges", lambda _n, c: c.expires_at < now)


class MemoryNonceRepository(StateRepository):
    """Used nonces by (signer, nonce), with the time each may be forgotten."""

    def claim(self, signer: str, nonce: str, expires_at: int) -> bool:
        """Record ``(signer, nonce)`` until ``expires_at``; False if recorded already."""
        return (signer, nonce) in self.claim_many([(signer, nonce, expires_at)])

    def claim_many(self, claims: Sequence[tuple[str, str, int]]) -> set[tuple[str, str]]:
        """:meth:`claim` for every ``(signer, nonce, expires_at)``; the pairs newly recorded."""
        with self._lock:
            held = self._state.nonces
            new = {(s, n): at for s, n, at in claims if (s, n) not in held}
            held.update(new)
            return set(new)

    def forget_expired(self, now: int) -> int:
        """Drop every nonce that expired before ``now``; how many."""
        return self._drop_where("nonces", lambda _k, at: at < now)


class MemoryRateLogRepository(StateRepository):
    """Admitted request times per (scope, key), oldest first."""

    def admit(self, scope: str, key: str, now: int, rate: RateLimit) -> Admission:
        """Admit one request by the sliding-log rule, recording it when admitted."""
        with self._lock:
            stamps = self._state.rate_log.get((scope, key), [])
            admission, record = admit_to_log(stamps, now, rate)
            if record is not None:
                horizon = record - rate.window_s
                self._state.rate_log[(scope, key)] = [s for s in stamps if s > horizon] + [record]
            return admission


class MemoryQuotaRepository(StateRepository):
    """Uses counted per (scope, key, period)."""

    def spend(self, scope: str, key: str, period: int, limit: int, amount: int = 1) -> int | None:
        """Count ``amount`` uses unless that would pass ``limit``; the count, or None."""
        with self._lock:
            used = self._state.quotas.get((scope, key, period), 0)
            if used + amount > limit:
                return None
            self._state.quotas[(scope, key, period)] = used + amount
            return used + amount

    def give_back(self, scope: str, key: str, period: int, amount: int) -> None:
        """Uncount ``amount`` (never below nothing)."""
        with self._lock:
            used = self._state.quotas.get((scope, key, period))
            if used is not None:
                self._state.quotas[(scope, key, period)] = max(0, used - amount)

    def forget_before(self, period: int) -> int:
        """Drop the counters of every period before ``period``; how many."""
        return self._drop_where("quotas", lambda key, _used: key[2] < period)


class MemoryTokenCreditRepository(StateRepository):
    """Per-token credits: token → (msat left, until)."""

    def open(self, token: str, paid_msat: int, until: int) -> None:
        """Know ``token``'s credit unless it is known already (what is left stays)."""
        with self._lock:
            self._state.token_credits.setdefault(token, (paid_msat, until))

    def charge(self, token: str, price_msat: int, now: int) -> int | None:
        """Take ``price_msat`` from ``token``'s credit if it covers it and has not expired."""
        with self._lock:
            left, until = self._state.token_credits.get(token, (0, now))
            if left < price_msat or until <= now:
                return None
            self._state.token_credits[token] = (left - price_msat, until)
            return left - price_msat

    def refund(self, token: str, price_msat: int) -> None:
        """Give ``price_msat`` back to ``token``'s credit (nothing if it is not known)."""
        with self._lock:
            if token in self._state.token_credits:
                left, until = self._state.token_credits[token]
                self._state.token_credits[token] = (left + price_msat, until)

    def forget_expired(self, now: int) -> int:
        """Drop the credits of tokens whose access ended at or before ``now``; how many."""
        return self._drop_where("token_credits", lambda _t, credit: credit[1] <= now)


class MemoryTaskStreamRepository(StateRepository):
    """The open task streams, one record per node."""

    def put(self, stream: OpenStream) -> None:
        """Record ``stream`` as its node's stream, replacing any record the node had."""
        with self._lock:
            self._state.task_streams[stream.node_id] = stream

    def refresh(self, streams: Sequence[OpenStream], now: int) -> None:
        """Confirm ``streams`` at ``now`` (a node's record of another stream stays)."""
        with self._lock:
            held = self._state.task_streams
            for stream in streams:
                current = held.get(stream.node_id)
                if current is None or current.stream_id == stream.stream_id:
                    held[stream.node_id] = attrs.evolve(stream, seen_at=now)

    def remove(self, node_id: str, stream_id: str) -> bool:
        """Forget ``node_id``'s record if it is still of ``stream_id``."""
        with self._lock:
            current = self._state.task_streams.get(node_id)
            if current is None or current.stream_id != stream_id:
                return False
            del self._state.task_streams[node_id]
            return True

    def seen_since(self, since: int) -> list[OpenStream]:
        """The records seen at or after ``since``, by node id."""
        with self._lock:
            held = self._state.task_streams
            return [held[n] for n in sorted(held) if held[n].seen_at >= since]

    def forget_before(self, before: int) -> int:
        """Drop the records last seen before ``before``; how many."""
        return self._drop_where("task_streams", lambda _n, s: s.seen_at < before)
