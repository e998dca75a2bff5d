"""SQL repositories: stake records, their channel flattened into the ``stakes`` row.

SRS-STAKE-01..03.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository, upsert
from owm_core.nodes.tiers import Tier
from owm_core.stake.channel import Stake, StakeChannel, StakeStatus


def _stake_row(stake: Stake) -> dict[str, Any]:
    ch = stake.channel
    return {
        "public_key": stake.public_key,
        "tier": stake.tier.value,
        "status": stake.status.value,
        "required_sats": stake.required_sats,
        "capacity_sat": stake.capacity_sat,
        "bonus_bps": stake.bonus_bps,
        "changed_at": stake.changed_at,
        "next_verification_at": stake.next_verification_at,
        "grace_until": stake.grace_until,
        "cooldown_until": stake.cooldown_until,
        "channel_id": None if ch is None else ch.channel_id,
        "channel_point": None if ch is None else ch.channel_point,
        "channel_peer_pubkey": None if ch is None else ch.peer_pubkey,
        "channel_capacity_sat": None if ch is None else ch.capacity_sat,
        "channel_local_balance_sat": None if ch is None else ch.local_balance_sat,
        "channel_remote_balance_sat": None if ch is None else ch.remote_balance_sat,
        "channel_confirmations": None if ch is None else ch.confirmations,
        "channel_active": None if ch is None else ch.active,
    }


def _row_stake(row: Row[Any]) -> Stake:
    m = row._mapping
    channel = None
    if m["channel_id"] is not None:
        channel = StakeChannel(
            channel_id=m["channel_id"],
            channel_point=m["channel_point"],
            peer_pubkey=m["channel_peer_pubkey"],
            capacity_sat=m["channel_capacity_sat"],
            local_balance_sat=m["channel_local_balance_sat"],
            remote_balance_sat=m["channel_remote_balance_sat"],
            confirmations=m["channel_confirmations"],
            active=bool(m["channel_active"]),
        )
    return Stake(
        public_key=m["public_key"],
        tier=Tier(m["tier"]),
        status=StakeStatus(m["status"]),
        required_sats=m["required_sats"],
        capacity_sat=m["capacity_sat"],
        bonus_bps=m["bonus_bps"],
        changed_at=m["changed_at"],
        channel=channel,
        next_verification_at=m["next_verification_at"],
        grace_until=m["grace_until"],
        cooldown_until=m["cooldown_until"],
    )


class SqlStakeRepository(SqlRepository):
    """Stake records (with their channel flattened) in the ``stakes`` table."""

    def save(self, stake: Stake) -> None:
        """Insert or replace the stake record of ``stake.public_key``."""
        with self._db.tx(write=True) as conn:
            upsert(conn, t.stakes, _stake_row(stake), "public_key")

    def get(self, public_key: str) -> Stake | None:
        """The stake record of ``public_key``, or None (keeps slashed keys for the cooldown)."""
        with self._db.tx() as conn:
            row = conn.execute(select(t.stakes).where(t.stakes.c.public_key == public_key)).first()
        return None if row is None else _row_stake(row)

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
        return [_row_stake(r) for r in rows]
