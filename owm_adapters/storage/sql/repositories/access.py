"""SQL repositories: aPI keys."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select, update

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository
from owm_adapters.storage.sql.rows import (
    from_row,
    register_row,
    row_converter,
)
from owm_core.access.api_keys import ApiKey

_ROWS = row_converter()
"""How this context's values become rows and back."""
register_row(_ROWS, ApiKey)


class SqlApiKeyRepository(SqlRepository):
    """API keys (secret digests only) in ``api_keys``."""

    def add(self, key: ApiKey) -> None:
        """Store a new key; Conflict if its key_id or secret digest exists."""
        row = {
            "key_id": key.key_id,
            "secret_sha256": key.secret_sha256,
            "owner": key.owner,
            "plan": key.plan.value,
            "created_at": key.created_at,
            "revoked": key.revoked,
        }
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.api_keys).values(row))

    def get(self, key_id: str) -> ApiKey | None:
        """The key with ``key_id``, or None."""
        with self._db.tx() as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.key_id == key_id)).first()
        return None if row is None else from_row(_ROWS, row, ApiKey)

    def get_by_secret_sha256(self, secret_sha256: str) -> ApiKey | None:
        """The key whose secret hashes to ``secret_sha256``, or None (authentication)."""
        with self._db.tx() as conn:
            row = conn.execute(
                select(t.api_keys).where(t.api_keys.c.secret_sha256 == secret_sha256)
            ).first()
        return None if row is None else from_row(_ROWS, row, ApiKey)

    def revoke(self, key_id: str) -> bool:
        """Mark the key revoked; True if it existed."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.api_keys).where(t.api_keys.c.key_id == key_id).values(revoked=True)
            )
        return done.rowcount > 0

    def for_owner(self, owner: str) -> Sequence[ApiKey]:
        """The owner's keys, oldest first."""
        c = t.api_keys.c
        query = select(t.api_keys).where(c.owner == owner).order_by(c.created_at, c.seq)
        with self._db.tx() as conn:
            return [from_row(_ROWS, r, ApiKey) for r in conn.execute(query).all()]
