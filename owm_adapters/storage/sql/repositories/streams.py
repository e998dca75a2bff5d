"""SQL repository: the task streams open at each coordinator sharing the database
(``task_streams``, SRS-COORD-05).

One row per node. Opening a stream replaces the node's row (an upsert); a refresh is an upsert
that only touches a row of the same stream (``ON CONFLICT … DO UPDATE … WHERE stream_id``),
so a coordinator still holding a node's dead connection never overwrites the record of the
connection the node opened elsewhere; closing deletes the row only if it is still the
closing stream's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository
from owm_core.market.streams import OpenStream
from owm_core.market.tasks import NodeOffer
from owm_core.nodes.tiers import Tier

_UPSERT_ROWS = 500
"""Rows per refreshing INSERT (12 parameters each: within SQLite's parameter limit)."""


def _row(stream: OpenStream) -> dict[str, Any]:
    offer = stream.offer
    return {
        "node_id": offer.node_id, "stream_id": stream.stream_id,
        "coordinator": stream.coordinator, "capabilities": ",".join(sorted(offer.capabilities)),
        "tier": offer.tier.value, "has_gpu": offer.has_gpu, "vram_mb": offer.vram_mb,
        "ram_mb": offer.ram_mb, "ask_msat": offer.ask_msat,
        "reliability_ppm": offer.reliability_ppm, "opened_at": stream.opened_at,
        "seen_at": stream.seen_at,
    }


def _stream(row: Any) -> OpenStream:
    offer = NodeOffer(
        node_id=row.node_id, capabilities=frozenset(filter(None, row.capabilities.split(","))),
        tier=Tier(row.tier), has_gpu=bool(row.has_gpu), vram_mb=row.vram_mb, ram_mb=row.ram_mb,
        ask_msat=row.ask_msat, reliability_ppm=row.reliability_ppm,
    )
    return OpenStream(offer, row.stream_id, row.coordinator, row.opened_at, row.seen_at)


class SqlTaskStreamRepository(SqlRepository):
    """Open task streams in ``task_streams``."""

    def put(self, stream: OpenStream) -> None:
        """Record ``stream`` as its node's stream, replacing any record the node had."""
        row = _row(stream)
        with self._db.tx(write=True) as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            insert = dialect_insert(t.task_streams).values(row)
            conn.execute(insert.on_conflict_do_update(
                index_elements=[t.task_streams.c.node_id],
                set_={k: insert.excluded[k] for k in row if k != "node_id"},
            ))

    def refresh(self, streams: Sequence[OpenStream], now: int) -> None:
        """Confirm ``streams`` at ``now`` (a node's record of another stream stays)."""
        rows = [_row(s) | {"seen_at": now} for s in streams]
        c = t.task_streams.c
        with self._db.tx(write=True) as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            for start in range(0, len(rows), _UPSERT_ROWS):
                insert = dialect_insert(t.task_streams).values(rows[start : start + _UPSERT_ROWS])
                conn.execute(insert.on_conflict_do_update(
                    index_elements=[c.node_id],
                    set_={"seen_at": insert.excluded.seen_at},
                    where=c.stream_id == insert.excluded.stream_id,
                ))

    def remove(self, node_id: str, stream_id: str) -> bool:
        """Forget ``node_id``'s record if it is still of ``stream_id``."""
        c = t.task_streams.c
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                delete(t.task_streams).where((c.node_id == node_id) & (c.stream_id == stream_id))
            )
        return bool(done.rowcount)

    def seen_since(self, since: int) -> list[OpenStream]:
        """The records seen at or after ``since``, by node id."""
        c = t.task_streams.c
        with self._db.tx() as conn:
            rows = conn.execute(
                select(t.task_streams).where(c.seen_at >= since).order_by(c.node_id)
            ).all()
        return [_stream(row) for row in rows]

    def forget_before(self, before: int) -> int:
        """Drop the records last seen before ``before``; how many."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(delete(t.task_streams).where(t.task_streams.c.seen_at < before))
        return int(done.rowcount)
