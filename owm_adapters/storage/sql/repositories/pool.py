"""SQL repositories: accepted mining shares and mining payouts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository, int64
from owm_adapters.storage.sql.rows import (
    MappedRepository,
    PutRepository,
    register_row,
)
from owm_core.pool.bitcoin import AcceptedShare
from owm_core.pool.fpps import MinerCredit
from owm_core.pool.stats import HOUR_S, HourlyWork, MiningPayout, PaidTotal

HOURLY_WORK_MEM = "64MB"
"""PostgreSQL's memory for the hourly sums (the default 4 MB makes the planner sort a day's
shares on disk: 1.3 s at 10 million shares instead of a hash in memory)."""

register_row(MiningPayout, int64_columns=["paid_at", "amount_sat"])
register_row(MinerCredit, int64_columns=["credited_msat", "updated_at"])


def _share_row(share: AcceptedShare, accepted_at: int) -> dict[str, object]:
    credited = Fraction(share.credited_difficulty)
    return {
        "hash_hex": share.hash_hex,
        "miner_id": share.miner_id,
        "share_difficulty": int64("share_difficulty", share.share_difficulty),
        "credited_numerator": str(credited.numerator),
        "credited_denominator": str(credited.denominator),
        "is_block": share.is_block,
        "accepted_at": accepted_at,
    }


class SqlShareRepository(SqlRepository):
    """Accepted shares in ``shares`` (credited difficulty as an exact fraction in text)."""

    def add(self, share: AcceptedShare, accepted_at: int) -> None:
        """Record an accepted share at ``accepted_at``; Conflict if its hash is already stored."""
        self.add_many([share], accepted_at)

    def add_many(self, shares: Sequence[AcceptedShare], accepted_at: int) -> None:
        """Record ``shares`` in order with one multi-row ``INSERT`` (one round trip a batch,
        SRS-PERF-11), all or none; Conflict if a hash is stored or repeats."""
        if not shares:
            return
        rows = [_share_row(share, accepted_at) for share in shares]
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.shares), rows)

    def contains(self, hash_hex: str) -> bool:
        """Whether a share with this header hash is stored (duplicate detection)."""
        with self._db.tx() as conn:
            row = conn.execute(
                select(t.shares.c.seq).where(t.shares.c.hash_hex == hash_hex)
            ).first()
        return row is not None

    def since(self, start: int, miner_id: str | None = None) -> Sequence[tuple[int, AcceptedShare]]:
        """(accepted_at, share) with accepted_at ≥ ``start`` (of one miner), in accepted order."""
        c = t.shares.c
        condition = [c.accepted_at >= start]
        if miner_id is not None:
            condition.append(c.miner_id == miner_id)
        query = select(t.shares).where(*condition).order_by(c.accepted_at, c.seq)
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        found = []
        for r in rows:
            m = r._mapping
            share = AcceptedShare(
                miner_id=m["miner_id"],
                share_difficulty=m["share_difficulty"],
                credited_difficulty=Fraction(
                    int(m["credited_numerator"]), int(m["credited_denominator"])
                ),
                hash_hex=m["hash_hex"],
                is_block=bool(m["is_block"]),
            )
            found.append((int(m["accepted_at"]), share))
        return found

    def delete_older_than(self, cutoff: int) -> int:
        """Delete shares accepted before ``cutoff`` but blocks (retention, SRS-POOL-11)."""
        c = t.shares.c
        with self._db.tx(write=True) as conn:
            done = conn.execute(delete(t.shares).where(c.accepted_at < cutoff, ~c.is_block))
        return int(done.rowcount)

    def latest_block_at(self) -> int | None:
        """When the newest stored share that was a block was accepted; None if there is none."""
        c = t.shares.c
        with self._db.tx() as conn:
            found = conn.execute(select(func.max(c.accepted_at)).where(c.is_block)).scalar()
        return None if found is None else int(found)

    def hourly_work(self, now: int, hours: int) -> Sequence[HourlyWork]:
        """The shares of the last ``hours`` hours up to ``now``, summed per hour ago and miner
        (one GROUP BY over ``ix_shares_accepted_at_work``: the dashboard at 10M shares)."""
        c = t.shares.c
        ago = ((now - c.accepted_at) // HOUR_S).label("ago")
        query = (
            select(ago, c.miner_id, func.count(), func.sum(c.share_difficulty))
            .where(c.accepted_at > now - HOUR_S * hours, c.accepted_at <= now)
            .group_by(ago, c.miner_id)
            .order_by(ago, c.miner_id)
        )
        with self._db.tx() as conn:
            if conn.dialect.name == "postgresql":  # sum in memory, not a sort spilled to disk
                conn.execute(text(f"SET LOCAL work_mem = '{HOURLY_WORK_MEM}'"))
            rows = conn.execute(query).all()
        return [HourlyWork(int(a), m, int(n), int(w)) for a, m, n, w in rows]

    def blocks_since(self, start: int, miner_id: str | None = None) -> int:
        """How many stored shares (of one miner) accepted at ≥ ``start`` were blocks."""
        c = t.shares.c
        query = select(func.count()).select_from(t.shares).where(c.is_block, c.accepted_at >= start)
        if miner_id is not None:
            query = query.where(c.miner_id == miner_id)
        with self._db.tx() as conn:
            return int(conn.execute(query).scalar() or 0)


class SqlShareRejectionRepository(SqlRepository):
    """Rejected-share totals in ``share_rejections``, one row per (miner id, reason code)."""

    def add(self, counts: Mapping[tuple[str, str], int], at: int) -> None:
        """Add ``counts`` (per ``(miner_id, code)``) to the stored totals, in one write."""
        if not counts:
            return
        table = t.share_rejections
        with self._db.tx(write=True) as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            for (miner, code), n in sorted(counts.items()):
                statement = dialect_insert(table).values(
                    miner_id=miner, code=code, rejected=int64("rejected", n), updated_at=at
                )
                conn.execute(statement.on_conflict_do_update(
                    index_elements=[table.c.miner_id, table.c.code],
                    set_={"rejected": table.c.rejected + statement.excluded.rejected,
                          "updated_at": statement.excluded.updated_at},
                ))  # fmt: skip

    def by_miner(self) -> dict[str, dict[str, int]]:
        """The stored totals per miner id, then reason code (both sorted)."""
        c = t.share_rejections.c
        with self._db.tx() as conn:
            rows = conn.execute(
                select(c.miner_id, c.code, c.rejected).order_by(c.miner_id, c.code)
            ).all()
        found: dict[str, dict[str, int]] = {}
        for miner, code, n in rows:
            found.setdefault(miner, {})[code] = int(n)
        return found


class SqlMiningPayoutRepository(MappedRepository):
    """Mining payouts in ``mining_payouts``."""

    def add(self, payout: MiningPayout) -> None:
        """Record one payout; Conflict if its payment_hash is already recorded."""
        self._insert(t.mining_payouts, payout)

    def recent(
        self, limit: int = 100, miner_id: str | None = None, since: int | None = None
    ) -> Sequence[MiningPayout]:
        """Up to ``limit`` payouts (to one miner if given; paid at or after ``since`` if
        given), newest first, then by hash."""
        c = t.mining_payouts.c
        query = select(t.mining_payouts).order_by(c.paid_at.desc(), c.payment_hash).limit(limit)
        if miner_id is not None:
            query = query.where(c.miner_id == miner_id)
        if since is not None:
            query = query.where(c.paid_at >= since)
        return self._all(query, MiningPayout)

    def paid_by_hours_ago(self, now: int, hours: int) -> Mapping[int, int]:
        """The sat paid each whole hour before ``now``, the last ``hours``, summed in SQL over
        the ``paid_at`` index (a day of hourly FPPS payouts to many miners is many rows)."""
        c = t.mining_payouts.c
        ago = ((now - c.paid_at) // HOUR_S).label("ago")
        query = (
            select(ago, func.sum(c.amount_sat))
            .where(c.paid_at > now - hours * HOUR_S, c.paid_at <= now)
            .group_by(ago)
        )
        with self._db.tx() as conn:
            return {int(h): int(sat) for h, sat in conn.execute(query).all()}

    def totals(self, miner_id: str | None = None) -> PaidTotal:
        """How many payouts were recorded (to one miner if given) and their sat, counted."""
        c = t.mining_payouts.c
        query = select(func.count(), func.coalesce(func.sum(c.amount_sat), 0))
        if miner_id is not None:
            query = query.where(c.miner_id == miner_id)
        with self._db.tx() as conn:
            count, sat = conn.execute(query.select_from(t.mining_payouts)).one()
        return PaidTotal(int(count), int(sat))


class SqlMinerCreditRepository(PutRepository[MinerCredit]):
    """Miners' FPPS credits in ``miner_credits``, by miner id."""

    _table = t.miner_credits

    def list(self, limit: int = 10_000, after: str = "") -> Sequence[MinerCredit]:
        """Up to ``limit`` credits, by miner id, each after ``after`` (a sweep's keyset page)."""
        return self._in_key_order(limit, after)
