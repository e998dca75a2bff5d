"""In-memory twin: aPI keys."""

from __future__ import annotations

from collections.abc import Sequence

from owm_adapters.storage.memory.state import StateRepository
from owm_core.access.api_keys import ApiKey
from owm_core.errors import Conflict


class MemoryApiKeyRepository(StateRepository):
    """API keys per key id."""

    def add(self, key: ApiKey) -> None:
        """Store a new key; Conflict if its key_id or secret digest exists."""
        with self._lock:
            if key.key_id in self._state.api_keys:
                raise Conflict(f"API key {key.key_id} already exists")
            if any(k.secret_sha256 == key.secret_sha256 for _, k in self._state.api_keys.values()):
                raise Conflict("an API key with this secret already exists")
            self._state.api_keys[key.key_id] = (self._state.next_seq(), key)

    def get(self, key_id: str) -> ApiKey | None:
        """The key with ``key_id``, or None."""
        with self._lock:
            stored = self._state.api_keys.get(key_id)
            return None if stored is None else stored[1]

    def get_by_secret_sha256(self, secret_sha256: str) -> ApiKey | None:
        """The key whose secret hashes to ``secret_sha256``, or None (authentication)."""
        with self._lock:
            return next(
                (k for _, k in self._state.api_keys.values() if k.secret_sha256 == secret_sha256),
                None,
            )

    def revoke(self, key_id: str) -> bool:
        """Mark the key revoked; True if it existed."""
        with self._lock:
            stored = self._state.api_keys.get(key_id)
            if stored is None:
                return False
            self._state.api_keys[key_id] = (stored[0], stored[1].revoke())
            return True

    def for_owner(self, owner: str) -> Sequence[ApiKey]:
        """The owner's keys, oldest first."""
        with self._lock:
            rows = sorted(self._state.api_keys.values(), key=lambda r: (r[1].created_at, r[0]))
            return [k for _, k in rows if k.owner == owner]
