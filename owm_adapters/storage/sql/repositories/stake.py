"""SQL repositories: stake records, their channel flattened into the ``stakes`` row.

SRS-STAKE-01..03.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from sqlalchemy import delete, func, insert, select

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository, upsert
from owm_adapters.storage.sql.rows import (
    Flat,
    MappedRepository,
    from_row,
    register_row,
    to_row,
)
from owm_core.errors import Conflict
from owm_core.stake.changes import StakeChange, change_of
from owm_core.stake.channel import Stake, StakeStatus
from owm_core.stake.reporters import channel_taken
from owm_core.stake.tally import StakeTally

register_row(
    Stake,
    flat=[
        Flat(
            "channel",
            {
                "channel_id": "channel_id",
                "channel_point": "channel_point",
                "peer_pubkey": "channel_peer_pubkey",
                "capacity_sat": "channel_capacity_sat",
                "local_balance_sat": "channel_local_balance_sat",
                "remote_balance_sat": "channel_remote_balance_sat",
                "confirmations": "channel_confirmations",
                "active": "channel_active",
            },
        )
    ],
)


register_row(StakeChange)


class SqlStakeRepository(MappedRepository):
    """Stake records (with their channel flattened) in the ``stakes`` table."""

    def save(self, stake: Stake) -> None:
        """Insert or replace the stake record of ``stake.public_key``, recording a change of
        status in ``stake_changes`` in the same transaction."""
        c = t.stakes.c
        with self._db.tx(write=True) as conn:
            row = conn.execute(
                select(t.stakes).where(c.public_key == stake.public_key).with_for_update()
            ).first()
            before = None if row is None else from_row(row, Stake)
            upsert(conn, t.stakes, to_row(stake), "public_key")
            change = change_of(before, stake)
            if change is not None:
                conn.execute(insert(t.stake_changes).values(to_row(change)))

    def get(self, public_key: str) -> Stake | None:
        """The stake record of ``public_key``, or None (keeps slashed keys for the cooldown)."""
        with self._db.tx() as conn:
            row = conn.execute(select(t.stakes).where(t.stakes.c.public_key == public_key)).first()
        return None if row is None else from_row(row, Stake)

    def get_many(self, public_keys: Collection[str]) -> Mapping[str, Stake]:
        """The stake records of ``public_keys``, by key (a key with none: absent)."""
        return self._by_keys(t.stakes, "public_key", public_keys, Stake)

    def due_for_verification(self, now: int) -> Sequence[Stake]:
        """Stakes whose ``next_verification_at`` ≤ ``now``, earliest first (SRS-STAKE-03)."""
        c = t.stakes.c
        query = (
            select(t.stakes)
            .where(c.next_verification_at.is_not(None), c.next_verification_at <= now)
            .order_by(c.next_verification_at, c.public_key)
        )
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        return [from_row(r, Stake) for r in rows]

    def tally(self) -> StakeTally:
        """The tally of the registered nodes' stakes (SRS-STAKE-09), in one aggregate query:
        :func:`~owm_core.stake.tally.tally_stakes`'s rule over the stakes joined to ``nodes``."""
        c = t.stakes.c
        live = c.status.in_([StakeStatus.ACTIVE.value, StakeStatus.DEGRADED.value])
        query = (
            select(
                func.count().filter(c.status == StakeStatus.ACTIVE.value),
                func.coalesce(func.sum(c.capacity_sat).filter(live), 0),
                func.count().filter(c.status == StakeStatus.DEGRADED.value),
            )
            .select_from(t.stakes.join(t.nodes, t.nodes.c.public_key == c.public_key))
        )
        with self._db.tx() as conn:
            active_channels, staked, degraded = conn.execute(query).one()
        return StakeTally(int(active_channels), int(staked), int(degraded))

    def changes(self, start: int, limit: int = 10_000) -> Sequence[StakeChange]:
        """Up to ``limit`` status changes at or after ``start``, in the order they were saved."""
        c = t.stake_changes.c
        query = select(t.stake_changes).where(c.at >= start).order_by(c.seq).limit(limit)
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        return [from_row(r, StakeChange) for r in rows]


class SqlChannelBindingRepository(SqlRepository):
    """Channel bindings in the ``channel_bindings`` table (channel point primary key)."""

    def bind(self, channel_point: str, node_id: str, now: int) -> None:
        """Bind ``channel_point`` to ``node_id`` in place of the node's earlier channel;
        Conflict naming the channel when another node holds it (SRS-STAKE-01)."""
        c = t.channel_bindings.c
        try:
            with self._db.tx(write=True) as conn:
                holder = conn.execute(
                    select(c.node_id).where(c.channel_point == channel_point)
                ).scalar()
                if holder == node_id:
                    return
                if holder is not None:
                    raise channel_taken(channel_point)
                conn.execute(delete(t.channel_bindings).where(c.node_id == node_id))
                conn.execute(
                    insert(t.channel_bindings).values(
                        channel_point=channel_point, node_id=node_id, bound_at=now
                    )
                )
        except Conflict:
            raise channel_taken(channel_point) from None

    def node_of(self, channel_point: str) -> str | None:
        """The node id ``channel_point`` backs, or None."""
        c = t.channel_bindings.c
        with self._db.tx() as conn:
            found = conn.execute(select(c.node_id).where(c.channel_point == channel_point))
            node_id = found.scalar()
        return None if node_id is None else str(node_id)

    def release(self, channel_point: str) -> None:
        """Free ``channel_point`` (the node left cooperatively); unknown points are ignored."""
        c = t.channel_bindings.c
        with self._db.tx(write=True) as conn:
            conn.execute(delete(t.channel_bindings).where(c.channel_point == channel_point))
