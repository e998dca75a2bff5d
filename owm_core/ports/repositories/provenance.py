"""The model releases repository: published model versions with their OpenTimestamps proofs
(SRS-NODE-10).

The semantics every store keeps are in :mod:`owm_core.ports.repositories`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from owm_core.provenance.releases import ModelRelease
from owm_core.provenance.versions import ModelVersion


class ModelReleaseRepository(Protocol):
    """Published model versions with their OTS proofs (SRS-NODE-10, GET /v1/model/versions)."""

    def add(self, release: ModelRelease) -> None:
        """Store a new release; Conflict if its release_id (sub_model@version) exists."""
        ...

    def save(self, release: ModelRelease) -> None:
        """Replace a release's proof and status (upgrade, verification); Conflict if unknown."""
        ...

    def get(self, release_id: str) -> ModelRelease | None:
        """The release with ``release_id``, or None."""
        ...

    def list(self) -> Sequence[ModelRelease]:
        """Every release, newest ``created_at`` first, then by release_id."""
        ...

    def versions(self) -> Sequence[ModelVersion]:
        """Every release's version (no proofs), in no particular order."""
        ...
