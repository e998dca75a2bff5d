"""SQL repositories: model releases."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from sqlalchemy import select

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.rows import Flat, KeyedRepository, register_row
from owm_core.provenance.releases import ModelRelease
from owm_core.provenance.versions import ModelVersion

register_row(
    ModelRelease,
    flat=[Flat("version", {a.name: a.name for a in attrs.fields(ModelVersion)})],
    computed={"release_id": lambda r: r.release_id},
    int64_columns=["created_at", "checked_at"],
)


class SqlModelReleaseRepository(KeyedRepository[ModelRelease]):
    """Published model releases in ``model_releases``, by release id (sub_model@version)."""

    _table = t.model_releases

    def save(self, release: ModelRelease) -> None:
        """Replace a release's proof and status (upgrade, verification); Conflict if unknown."""
        c = t.model_releases.c
        self._overwrite(
            t.model_releases, release,
            f"model release {release.release_id} is unknown or has another digest",
            c.release_id == release.release_id, c.digest == release.version.digest,
        )

    def list(self) -> Sequence[ModelRelease]:
        """Every release, newest ``created_at`` first, then by release_id."""
        c = t.model_releases.c
        query = select(t.model_releases).order_by(c.created_at.desc(), c.release_id)
        return self._all(query, ModelRelease)

    def versions(self) -> Sequence[ModelVersion]:
        """Every release's version: its own columns only, not the proofs (kilobytes each)."""
        c = t.model_releases.c
        columns = [c[a.name] for a in attrs.fields(ModelVersion)]
        with self._db.tx() as conn:
            rows = conn.execute(select(*columns)).all()
        return [ModelVersion(**row._mapping) for row in rows]
