"""In-memory twin: model releases."""

from __future__ import annotations

from collections.abc import Sequence

from owm_adapters.storage.memory.state import StateRepository
from owm_core.errors import Conflict
from owm_core.provenance.releases import ModelRelease


class MemoryModelReleaseRepository(StateRepository):
    """Published model releases per release id."""

    def add(self, release: ModelRelease) -> None:
        """Store a new release; Conflict if its release_id (sub_model@version) exists."""
        self._insert_new(
            "releases",
            release.release_id,
            release,
            f"model release {release.release_id} already exists",
        )

    def save(self, release: ModelRelease) -> None:
        """Replace a release's proof and status (upgrade, verification); Conflict if unknown."""
        with self._lock:
            stored = self._state.releases.get(release.release_id)
            if stored is None:
                raise Conflict(f"model release {release.release_id} is unknown")
            if stored.version != release.version:
                raise Conflict(f"model release {release.release_id} has another digest")
            self._state.releases[release.release_id] = release

    def get(self, release_id: str) -> ModelRelease | None:
        """The release with ``release_id``, or None."""
        with self._lock:
            return self._state.releases.get(release_id)

    def list(self) -> Sequence[ModelRelease]:
        """Every release, newest ``created_at`` first, then by release_id."""
        with self._lock:
            releases = sorted(self._state.releases.values(), key=lambda r: r.release_id)
            return sorted(releases, key=lambda r: r.version.created_at, reverse=True)
