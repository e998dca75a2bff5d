"""SQL repositories: challenges, used nonces and rate-limit logs, the state several
coordinators on one database share (SRS-COORD-05).

Each one-use step is one statement the database serialises: a challenge is taken by
``DELETE … RETURNING`` (two coordinators taking one nonce: one gets the row), a nonce is
claimed by an insert that skips a stored key (``ON CONFLICT DO NOTHING``), and one key's
rate log is read and written under a transaction-scoped PostgreSQL advisory lock on the
(scope, key) pair (SQLite's ``BEGIN IMMEDIATE`` already serialises every writer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import case, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository
from owm_core.access.ratelimit import Admission, RateLimit, admit_to_log
from owm_core.coordination.challenges import Challenge


class SqlChallengeRepository(SqlRepository):
    """Outstanding challenges in ``challenges``."""

    def __len__(self) -> int:
        with self._db.tx() as conn:
            return int(conn.execute(select(func.count()).select_from(t.challenges)).scalar_one())

    def add(self, challenge: Challenge, keep: int) -> None:
        """Hold ``challenge``; then at most ``keep`` challenges, the oldest dropped first."""
        c = t.challenges.c
        with self._db.tx(write=True) as conn:
            conn.execute(
                t.challenges.insert().values(
                    nonce=challenge.nonce, public_key=challenge.public_key,
                    purpose=challenge.purpose.value, issued_at=challenge.issued_at,
                    expires_at=challenge.expires_at,
                )
            )
            newest = (
                select(c.nonce).order_by(c.issued_at.desc(), c.nonce.desc()).limit(keep)
            ).scalar_subquery()
            beyond = select(c.issued_at).order_by(c.issued_at.desc()).offset(keep).limit(1)
            if conn.execute(beyond).first() is not None:
                conn.execute(delete(t.challenges).where(c.nonce.not_in(newest)))

    def take(self, nonce: str) -> Challenge | None:
        """Remove and return the challenge with ``nonce`` (None if none)."""
        c = t.challenges.c
        with self._db.tx(write=True) as conn:
            row = conn.execute(
                delete(t.challenges).where(c.nonce == nonce).returning(*t.challenges.c)
            ).first()
        if row is None:
            return None
        return Challenge(row.public_key, row.purpose, row.nonce, row.issued_at, row.expires_at)

    def forget_expired(self, now: int) -> int:
        """Drop every challenge that expired before ``now``; how many."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(delete(t.challenges).where(t.challenges.c.expires_at < now))
        return int(done.rowcount)


_CLAIM_ROWS = 1_000
"""Rows per INSERT of claimed nonces (3 parameters each: within SQLite's parameter limit)."""


class SqlNonceRepository(SqlRepository):
    """Used nonces in ``seen_nonces``."""

    def claim(self, signer: str, nonce: str, expires_at: int) -> bool:
        """Record ``(signer, nonce)`` until ``expires_at``; False if recorded already."""
        return (signer, nonce) in self.claim_many([(signer, nonce, expires_at)])

    def claim_many(self, claims: Sequence[tuple[str, str, int]]) -> set[tuple[str, str]]:
        """:meth:`claim` for every ``(signer, nonce, expires_at)`` in one statement; the pairs
        newly recorded (the rows the insert did not find there)."""
        rows = {(s, n): at for s, n, at in claims}
        if not rows:
            return set()
        c = t.seen_nonces.c
        values = [{"signer": s, "nonce": n, "expires_at": at} for (s, n), at in rows.items()]
        claimed: set[tuple[str, str]] = set()
        with self._db.tx(write=True) as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            for start in range(0, len(values), _CLAIM_ROWS):
                statement = (
                    dialect_insert(t.seen_nonces)
                    .values(values[start : start + _CLAIM_ROWS])
                    .on_conflict_do_nothing()
                    .returning(c.signer, c.nonce)
                )
                claimed.update((signer, nonce) for signer, nonce in conn.execute(statement))
        return claimed

    def forget_expired(self, now: int) -> int:
        """Drop every nonce that expired before ``now``; how many."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(delete(t.seen_nonces).where(t.seen_nonces.c.expires_at < now))
        return int(done.rowcount)


class SqlRateLogRepository(SqlRepository):
    """Admitted request times in ``rate_hits``."""

    def admit(self, scope: str, key: str, now: int, rate: RateLimit) -> Admission:
        """Admit one request by the sliding-log rule, recording it when admitted."""
        c = t.rate_hits.c
        mine = (c.scope == scope) & (c.key == key)
        with self._db.tx(write=True) as conn:
            if conn.dialect.name == "postgresql":
                lock = {"id": _lock_id(scope, key)}
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), lock)
            stamps = list(conn.execute(select(c.at).where(mine).order_by(c.at, c.seq)).scalars())
            admission, record = admit_to_log(stamps, now, rate)
            if record is not None:
                conn.execute(delete(t.rate_hits).where(mine & (c.at <= record - rate.window_s)))
                conn.execute(t.rate_hits.insert().values(scope=scope, key=key, at=record))
        return admission


def _lock_id(scope: str, key: str) -> int:
    """A signed 64-bit advisory lock id for one (scope, key) pair."""
    digest = hashlib.sha256(f"owm/rate\x00{scope}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SqlQuotaRepository(SqlRepository):
    """Uses counted per (scope, key, period) in ``quota_counts``."""

    def spend(self, scope: str, key: str, period: int, limit: int, amount: int = 1) -> int | None:
        """Count ``amount`` uses unless that would pass ``limit``, in one upsert that adds
        only while it fits; the count, or None."""
        if amount > limit:
            return None
        c = t.quota_counts.c
        with self._db.tx(write=True) as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            insert = dialect_insert(t.quota_counts).values(
                scope=scope, key=key, period=period, used=amount
            )
            statement = insert.on_conflict_do_update(
                index_elements=[c.scope, c.key, c.period],
                set_={"used": c.used + amount},
                where=c.used + amount <= limit,
            ).returning(c.used)
            used = conn.execute(statement).scalar()
        return None if used is None else int(used)

    def give_back(self, scope: str, key: str, period: int, amount: int) -> None:
        """Uncount ``amount`` in one update (never below nothing)."""
        c = t.quota_counts.c
        with self._db.tx(write=True) as conn:
            conn.execute(
                update(t.quota_counts)
                .where(c.scope == scope, c.key == key, c.period == period)
                .values(used=case((c.used > amount, c.used - amount), else_=0))
            )

    def forget_before(self, period: int) -> int:
        """Drop the counters of every period before ``period``; how many."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(delete(t.quota_counts).where(t.quota_counts.c.period < period))
        return int(done.rowcount)
