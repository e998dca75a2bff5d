"""Model releases as the API serves them (SRS-API-01, SRS-NODE-10).

Every response names the release answering queries and its OpenTimestamps status
(:meth:`Releases.current_release`); clients list releases and download their proofs; the FL
rounds and the OTS upgrader publish new releases and proofs through :meth:`publish_release`.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from owm_adapters.services.api.config import ReadCache
from owm_core.errors import must_exist
from owm_core.ports.repositories import Repositories
from owm_core.provenance.releases import ModelRelease, current_version


@attrs.define(eq=False)
class Releases:
    """Read and publish model releases (see the module docstring)."""

    _repositories: Repositories
    _cache: ReadCache
    #: The chain the coordinator checks proofs against (``bitcoin-main``, ``bitcoin-test``,
    #: ``bitcoin-signet``, ``bitcoin-regtest``, ``embedded-regtest`` for a devnet's own
    #: chain; ``none`` without one): what ``X-OWM-OTS-Verified`` and the listing name.
    chain: str = "none"

    def current_release(self) -> ModelRelease | None:
        """The release answering queries now (its id and OTS status head every response):
        chosen among the versions alone, then that one release read with its proof."""
        return self._cache.get("current", self._current)

    def _current(self) -> ModelRelease | None:
        releases = self._repositories.releases
        chosen = current_version(releases.versions())
        return None if chosen is None else releases.get(chosen.id)

    def releases(self) -> Sequence[ModelRelease]:
        """Every published release, newest first."""
        return self._cache.get("releases", self._repositories.releases.list)

    def release(self, release_id: str) -> ModelRelease:
        """One release; NotFound if unknown."""
        return must_exist(
            self._repositories.releases.get(release_id), f"no model version {release_id}"
        )

    def publish_release(self, release: ModelRelease) -> None:
        """Record a new release, or a new proof/status of a known one (FL rounds, OTS upgrades)."""
        if self._repositories.releases.get(release.release_id) is None:
            self._repositories.releases.add(release)
        else:
            self._repositories.releases.save(release)
        self._cache.clear()
