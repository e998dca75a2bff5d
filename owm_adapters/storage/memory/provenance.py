"""In-memory twin: model releases."""

from __future__ import annotations

from collections.abc import Sequence

from owm_adapters.storage.memory.state import KeyedStateRepository
from owm_core.errors import Conflict
from owm_core.provenance.releases import ModelRelease
from owm_core.provenance.versions import ModelVersion


class MemoryModelReleaseRepository(KeyedStateRepository[ModelRelease]):
    """Published model releases per release id (sub_model@version)."""

    _table = "releases"
    _key = "release_id"
    _taken = "model release {} already exists"

    def save(self, release: ModelRelease) -> None:
        """Replace a release's proof and status (upgrade, verification); Conflict if unknown."""
        with self._lock:
            stored = self._state.releases.get(release.release_id)
            if stored is None:
                raise Conflict(f"model release {release.release_id} is unknown")
            if stored.version != release.version:
                raise Conflict(f"model release {release.release_id} has another digest")
            self._state.releases[release.release_id] = release

    def list(self) -> Sequence[ModelRelease]:
        """Every release, newest ``created_at`` first, then by release_id."""
        with self._lock:
            releases = sorted(self._state.releases.values(), key=lambda r: r.release_id)
            return sorted(releases, key=lambda r: r.version.created_at, reverse=True)

    def versions(self) -> Sequence[ModelVersion]:
        """Every release's version, in no particular order."""
        with self._lock:
            return [r.version for r in self._state.releases.values()]
