"""SQL repositories: model releases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, insert, select, update

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository, int64
from owm_core.errors import Conflict
from owm_core.provenance.releases import ModelRelease
from owm_core.provenance.versions import ModelVersion, ProofStatus


def _release_row(r: ModelRelease) -> dict[str, Any]:
    return {
        "release_id": r.release_id,
        "version": r.version.version,
        "sub_model": r.version.sub_model,
        "digest": r.version.digest,
        "parent": r.version.parent,
        "created_at": int64("created_at", r.version.created_at),
        "proof_status": r.proof_status.value,
        "checked_at": int64("checked_at", r.checked_at),
        "ots_proof": r.ots_proof,
    }


def _row_release(row: Row[Any]) -> ModelRelease:
    m = row._mapping
    version = ModelVersion(
        version=m["version"],
        sub_model=m["sub_model"],
        digest=m["digest"],
        created_at=m["created_at"],
        parent=m["parent"],
    )
    proof = m["ots_proof"]
    return ModelRelease(
        version=version,
        proof_status=ProofStatus(m["proof_status"]),
        checked_at=m["checked_at"],
        ots_proof=None if proof is None else bytes(proof),
    )


class SqlModelReleaseRepository(SqlRepository):
    """Published model releases in ``model_releases``."""

    def add(self, release: ModelRelease) -> None:
        """Store a new release; Conflict if its release_id (sub_model@version) exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.model_releases).values(_release_row(release)))

    def save(self, release: ModelRelease) -> None:
        """Replace a release's proof and status (upgrade, verification); Conflict if unknown."""
        c = t.model_releases.c
        row = _release_row(release)
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.model_releases)
                .where(c.release_id == release.release_id, c.digest == release.version.digest)
                .values(row)
            )
        if done.rowcount == 0:
            raise Conflict(f"model release {release.release_id} is unknown or has another digest")

    def get(self, release_id: str) -> ModelRelease | None:
        """The release with ``release_id``, or None."""
        query = select(t.model_releases).where(t.model_releases.c.release_id == release_id)
        with self._db.tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else _row_release(row)

    def list(self) -> Sequence[ModelRelease]:
        """Every release, newest ``created_at`` first, then by release_id."""
        c = t.model_releases.c
        query = select(t.model_releases).order_by(c.created_at.desc(), c.release_id)
        with self._db.tx() as conn:
            return [_row_release(r) for r in conn.execute(query).all()]
