"""The API keys repository: who may call the public API; only secret digests are stored
(SRS-API-02/03).

The semantics every store keeps are in :mod:`owm_core.ports.repositories`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from owm_core.access.api_keys import ApiKey


class ApiKeyRepository(Protocol):
    """API keys (SRS-API-02/03); only secret digests are stored."""

    def add(self, key: ApiKey) -> None:
        """Store a new key; Conflict if its key_id or secret digest exists."""
        ...

    def get(self, key_id: str) -> ApiKey | None:
        """The key with ``key_id``, or None."""
        ...

    def get_by_secret_sha256(self, secret_sha256: str) -> ApiKey | None:
        """The key whose secret hashes to ``secret_sha256``, or None (authentication)."""
        ...

    def revoke(self, key_id: str) -> bool:
        """Mark the key revoked; True if it existed."""
        ...

    def for_owner(self, owner: str) -> Sequence[ApiKey]:
        """The owner's keys, oldest first."""
        ...
