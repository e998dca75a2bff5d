"""API keys: who may call the public API, on which plan, and how a secret is checked.

This module owns the stored form of an API key (SRS-API-02 rate-limits per key, SRS-API-03
unlocks commercial access). Only the SHA-256 of the secret is ever kept: the secret itself is
shown to its owner once, when the key is created, and a leaked database reveals no usable key.
Checking a presented secret compares digests in constant time.
"""

from __future__ import annotations

import enum
import hashlib
import hmac

import attrs

from owm_core import fields


class Plan(enum.Enum):
    """The access plan of a key: free (rate-limited) or commercial (paid, SRS-API-03)."""

    FREE = "free"
    COMMERCIAL = "commercial"


def secret_sha256(secret: str) -> str:
    """Lower-case hex SHA-256 of a presented secret's UTF-8 bytes: what is stored and compared."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@attrs.frozen
class ApiKey:
    """One API key: its public id, the SHA-256 of its secret (never the secret), owner, plan."""

    key_id: str = attrs.field(validator=fields.text(max_len=64, pattern=r"[A-Za-z0-9_-]+"))
    secret_sha256: str = attrs.field(validator=fields.hex_digest(32))
    owner: str = attrs.field(validator=fields.text(max_len=256))
    plan: Plan = attrs.field(validator=fields.instance_of(Plan))
    created_at: int = attrs.field(validator=fields.timestamp())
    revoked: bool = attrs.field(default=False, validator=fields.instance_of(bool))

    def accepts(self, secret: str) -> bool:
        """Whether ``secret`` is this key's secret and the key is not revoked (constant time)."""
        if not isinstance(secret, str):
            return False
        matches = hmac.compare_digest(secret_sha256(secret), self.secret_sha256)
        return matches and not self.revoked

    def revoke(self) -> ApiKey:
        """The same key, revoked for good."""
        return attrs.evolve(self, revoked=True)
