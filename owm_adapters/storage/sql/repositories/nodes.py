"""SQL repositories: nodes and their latest capability manifests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from owm_adapters.storage.envelopes import manifest_of
from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository, int64, upsert
from owm_adapters.storage.sql.rows import (
    EnvelopeRepository,
    Flat,
    KeyedRepository,
    from_row,
    register_row,
    to_row,
)
from owm_core.identity.envelopes import Envelope, to_bytes
from owm_core.nodes.activity import HeartbeatCount
from owm_core.nodes.registry import Node
from owm_core.nodes.tiers import Tier
from owm_core.stake.census import Presence
from owm_core.stake.channel import StakeStatus

register_row(
    Node,
    flat=[Flat("ln_node_uri", {"pubkey": "ln_pubkey", "host": "ln_host", "port": "ln_port"})],
)
register_row(HeartbeatCount, renamed={"count": "heartbeats"})


class SqlNodeRepository(KeyedRepository[Node]):
    """Nodes in the ``nodes`` table, by node id (their public keys are unique too)."""

    _table = t.nodes
    _unknown = "node {} is not registered"

    def get_by_public_key(self, public_key: str) -> Node | None:
        """The node registered with Ed25519 ``public_key`` (64 hex), or None."""
        return self._first(select(t.nodes).where(t.nodes.c.public_key == public_key), Node)

    def presence(self, silent_before: int) -> Sequence[Presence]:
        """The registered nodes counted by their stake's status, suspended mark and silence
        (one GROUP BY over the nodes joined to their stakes)."""
        n, stake_status = t.nodes.c, t.stakes.c.status
        silent = n.last_heartbeat < silent_before
        query = (
            select(stake_status, n.suspended, silent, func.count())
            .select_from(t.nodes.outerjoin(t.stakes, t.stakes.c.public_key == n.public_key))
            .group_by(stake_status, n.suspended, silent)
        )
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        known = {status.value: status for status in StakeStatus}
        return [
            Presence(None if status is None else known[status], bool(suspended), bool(quiet),
                     int(count))
            for status, suspended, quiet, count in rows
            if status is None or status in known
        ]  # fmt: skip

    def has_ln_pubkey(self, ln_pubkey: str) -> bool:
        """Whether a registered node names the Lightning node ``ln_pubkey``."""
        query = select(t.nodes.c.node_id).where(t.nodes.c.ln_pubkey == ln_pubkey).limit(1)
        with self._db.tx() as conn:
            return conn.execute(query).first() is not None

    def list(self) -> Sequence[Node]:
        """Every node, ordered by node_id."""
        return self._all(select(t.nodes).order_by(t.nodes.c.node_id), Node)

    def record_heartbeats(self, seen: Mapping[str, int]) -> int:
        """Batch-move ``last_heartbeat`` forward (node_id → at; never backwards); count updated."""
        if not seen:
            return 0
        c = t.nodes.c
        statement = (
            update(t.nodes)
            .where(c.node_id == bindparam("hb_node"), c.last_heartbeat < bindparam("hb_at"))
            .values(last_heartbeat=bindparam("hb_at"))
        )
        rows = [{"hb_node": node_id, "hb_at": at} for node_id, at in sorted(seen.items())]
        with self._db.tx(write=True) as conn:
            # One executemany round trip instead of a statement per node (SRS-PERF-04).
            return conn.execute(statement, rows).rowcount


ACTIVITY_CHUNK = 500
"""Rows per INSERT of heartbeat counts (far below SQLite's bound-parameter limit)."""


class SqlHeartbeatActivityRepository(SqlRepository):
    """Heartbeat counts per (minute, node) in the ``heartbeat_activity`` table."""

    def add(self, counts: Mapping[tuple[int, str], int]) -> None:
        """Add ``count`` to the stored count of each (minute start, node_id); counts ≥ 1."""
        rows = [
            to_row(HeartbeatCount(minute, node_id, n))
            for (minute, node_id), n in sorted(counts.items())
        ]
        with self._db.tx(write=True) as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            for i in range(0, len(rows), ACTIVITY_CHUNK):
                statement = dialect_insert(t.heartbeat_activity).values(rows[i:i + ACTIVITY_CHUNK])
                conn.execute(statement.on_conflict_do_update(
                    index_elements=[t.heartbeat_activity.c.minute, t.heartbeat_activity.c.node_id],
                    set_={"heartbeats": t.heartbeat_activity.c.heartbeats
                          + statement.excluded.heartbeats},
                ))

    def since(self, start: int) -> Sequence[HeartbeatCount]:
        """Counts of minutes starting at or after ``start``, by minute then node_id."""
        c = t.heartbeat_activity.c
        query = select(t.heartbeat_activity).where(c.minute >= start).order_by(c.minute, c.node_id)
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        return [from_row(r, HeartbeatCount) for r in rows]

    def delete_older_than(self, cutoff: int) -> int:
        """Forget counts of minutes starting before ``cutoff``; how many were forgotten."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                delete(t.heartbeat_activity).where(t.heartbeat_activity.c.minute < cutoff)
            )
        return int(done.rowcount)


def _manifest_row(envelope: Envelope) -> dict[str, Any]:
    manifest = manifest_of(envelope)
    return {
        "node_id": envelope.signer_node_id,
        "digest": manifest.digest(),
        "issued_at": envelope.issued_at,
        "tier": manifest.tier.value,
        "tier_rank": manifest.tier.rank,
        "vram_mb": manifest.vram_mb,
        "ram_mb": manifest.ram_mb,
        "bandwidth_mbps": manifest.bandwidth_mbps,
        "gpu_vendor": manifest.gpu_vendor,
        "gpu_count": manifest.gpu_count,
        "envelope": to_bytes(envelope),
    }


class SqlManifestRepository(EnvelopeRepository):
    """Manifest envelopes (canonical bytes plus query columns) in the ``manifests`` table."""

    def put(self, envelope: Envelope) -> bool:
        """Keep ``envelope`` as its signer's manifest unless a later one is stored; True if kept."""
        row = _manifest_row(envelope)
        with self._db.tx(write=True) as conn:
            return upsert(
                conn,
                t.manifests,
                row,
                "node_id",
                only_if=lambda new: t.manifests.c.issued_at <= new.issued_at,
            )

    def get(self, node_id: str) -> Envelope | None:
        """The latest manifest envelope of ``node_id``, or None."""
        return self._envelope(
            select(t.manifests.c.envelope).where(t.manifests.c.node_id == node_id)
        )

    def get_by_digest(self, node_id: str, digest: str) -> Envelope | None:
        """The node's current manifest if its body digest is ``digest`` (heartbeats cite it)."""
        c = t.manifests.c
        return self._envelope(select(c.envelope).where(c.node_id == node_id, c.digest == digest))

    def matching(self, min_tier: Tier, min_vram_mb: int, min_ram_mb: int) -> Sequence[Envelope]:
        """Manifests of tier ≥ ``min_tier`` with at least this VRAM and RAM, by node_id."""
        c = t.manifests.c
        query = (
            select(c.envelope)
            .where(
                c.tier_rank >= min_tier.rank,
                c.vram_mb >= int64("min_vram_mb", min_vram_mb),
                c.ram_mb >= int64("min_ram_mb", min_ram_mb),
            )
            .order_by(c.node_id)
        )
        return self._envelopes(query)

    def remove(self, node_id: str) -> bool:
        """Forget the node's manifest (deregistration); True if there was one."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(delete(t.manifests).where(t.manifests.c.node_id == node_id))
        return done.rowcount > 0
