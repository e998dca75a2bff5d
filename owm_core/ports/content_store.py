"""The content-addressed store port: bytes kept under their own SHA-256 (seed 001).

What a contribution brings (a repository archive at its merge, a signed contribution record
with its OpenTimestamps proof) is kept under the hex SHA-256 of its bytes, so a reference is
also a check: whatever comes back for a digest is verified against it. Adapters: a folder on
disk (default) and an in-memory twin (``owm_adapters/storage/content.py``), an S3-compatible
bucket (``owm_adapters/storage/s3_content.py``); Arweave would implement the same three methods.
"""

from __future__ import annotations

from typing import Protocol


class ContentStore(Protocol):
    """Bytes by their SHA-256."""

    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent); its hex SHA-256."""
        ...

    def get(self, digest: str) -> bytes:
        """The bytes stored under ``digest``, checked against it; NotFound if none."""
        ...

    def has(self, digest: str) -> bool:
        """Whether ``digest`` is stored."""
        ...
