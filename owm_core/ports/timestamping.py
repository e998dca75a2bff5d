"""The timestamping port: anchoring digests in Bitcoin and checking the proofs (OpenTimestamps).

Proofs travel as the bytes of an OpenTimestamps ``.ots`` file, so that what OWM stores, serves
(GET /v1/model/versions/{id}/ots) and verifies is exactly what the standard ``ots`` client reads.
"""

from __future__ import annotations

from typing import Protocol

from owm_core.provenance.versions import Verification


class Timestamping(Protocol):
    """Stamps SHA-256 digests, upgrades pending proofs and verifies them against Bitcoin."""

    def stamp(self, digest: bytes) -> bytes:
        """Submit a 32-byte SHA-256 digest to the calendars; the ``.ots`` bytes, pending."""
        ...

    def upgrade(self, proof: bytes) -> bytes:
        """Ask the calendars to complete pending attestations; the (possibly same) proof."""
        ...

    def verify(self, proof: bytes, digest: bytes) -> Verification:
        """Whether ``proof`` proves ``digest`` existed at a valid Bitcoin block, and when."""
        ...
