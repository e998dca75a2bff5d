"""SQL repositories: aPI keys."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.rows import MappedRepository, register_row
from owm_core.access.api_keys import ApiKey

register_row(ApiKey)


class SqlApiKeyRepository(MappedRepository):
    """API keys (secret digests only) in ``api_keys``."""

    def add(self, key: ApiKey) -> None:
        """Store a new key; Conflict if its key_id or secret digest exists."""
        self._insert(t.api_keys, key)

    def get(self, key_id: str) -> ApiKey | None:
        """The key with ``key_id``, or None."""
        return self._first(select(t.api_keys).where(t.api_keys.c.key_id == key_id), ApiKey)

    def get_by_secret_sha256(self, secret_sha256: str) -> ApiKey | None:
        """The key whose secret hashes to ``secret_sha256``, or None (authentication)."""
        query = select(t.api_keys).where(t.api_keys.c.secret_sha256 == secret_sha256)
        return self._first(query, ApiKey)

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
        return self._all(query, ApiKey)
