"""SQL repositories: sub-models and contributed datasets with their documents."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository, int64
from owm_core.errors import Conflict
from owm_core.knowledge.datasets import DatasetRecord, Document
from owm_core.knowledge.submodels import SubModel, SubModelKind


def _sub_model_row(m: SubModel) -> dict[str, Any]:
    return {
        "name": m.name,
        "description": m.description,
        "kind": m.kind.value,
        "version": m.version,
        "version_digest": m.version_digest,
        "created_at": int64("created_at", m.created_at),
        "dataset_ids": json.dumps(list(m.dataset_ids)),
        "host_node_ids": json.dumps(list(m.host_node_ids)),
    }


def _row_sub_model(row: Row[Any]) -> SubModel:
    m = row._mapping
    return SubModel(
        name=m["name"],
        description=m["description"],
        kind=SubModelKind(m["kind"]),
        version=m["version"],
        version_digest=m["version_digest"],
        created_at=m["created_at"],
        dataset_ids=tuple(json.loads(m["dataset_ids"])),
        host_node_ids=tuple(json.loads(m["host_node_ids"])),
    )


class SqlSubModelRepository(SqlRepository):
    """The sub-model registry in ``sub_models``."""

    def add(self, sub_model: SubModel) -> None:
        """Register a new sub-model; Conflict if its name is taken."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.sub_models).values(_sub_model_row(sub_model)))

    def save(self, sub_model: SubModel) -> None:
        """Replace a registered sub-model; Conflict if unknown."""
        self._replace(
            t.sub_models,
            t.sub_models.c.name,
            sub_model.name,
            _sub_model_row(sub_model),
            f"sub-model {sub_model.name} is unknown",
        )

    def get(self, name: str) -> SubModel | None:
        """The sub-model called ``name``, or None."""
        with self._db.tx() as conn:
            row = conn.execute(select(t.sub_models).where(t.sub_models.c.name == name)).first()
        return None if row is None else _row_sub_model(row)

    def list(self) -> Sequence[SubModel]:
        """Every sub-model, ordered by name."""
        with self._db.tx() as conn:
            rows = conn.execute(select(t.sub_models).order_by(t.sub_models.c.name)).all()
        return [_row_sub_model(r) for r in rows]


def _dataset_row(r: DatasetRecord) -> dict[str, Any]:
    return {
        "dataset_id": r.dataset_id,
        "digest": r.digest,
        "name": r.name,
        "contributor": r.contributor,
        "submitted_at": int64("submitted_at", r.submitted_at),
        "n_documents": r.n_documents,
        "n_passages": r.n_passages,
        "size_bytes": int64("size_bytes", r.size_bytes),
        "licences": json.dumps(list(r.licences)),
        "sources": json.dumps(list(r.sources)),
        "description": r.description,
        "proof": r.proof,
    }


def _row_dataset(row: Row[Any], sub_models: Sequence[str]) -> DatasetRecord:
    m = row._mapping
    proof = m["proof"]
    return DatasetRecord(
        dataset_id=m["dataset_id"],
        digest=m["digest"],
        name=m["name"],
        sub_models=tuple(sub_models),
        contributor=m["contributor"],
        submitted_at=m["submitted_at"],
        n_documents=m["n_documents"],
        n_passages=m["n_passages"],
        size_bytes=m["size_bytes"],
        licences=tuple(json.loads(m["licences"])),
        sources=tuple(json.loads(m["sources"])),
        description=m["description"],
        proof=None if proof is None else bytes(proof),
    )


class SqlDatasetRepository(SqlRepository):
    """Contributed datasets in ``datasets``, ``dataset_sub_models`` and ``dataset_documents``."""

    def add(self, record: DatasetRecord, documents: Sequence[Document]) -> None:
        """Store a contribution and its documents; Conflict if its id exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.datasets).values(_dataset_row(record)))
            conn.execute(
                insert(t.dataset_sub_models),
                [
                    {"dataset_id": record.dataset_id, "sub_model": name, "position": i}
                    for i, name in enumerate(record.sub_models)
                ],
            )
            if documents:
                conn.execute(
                    insert(t.dataset_documents),
                    [
                        {
                            "dataset_id": record.dataset_id,
                            "position": i,
                            "title": d.title,
                            "text": d.text,
                            "source": d.source,
                            "licence": d.licence,
                            "url": d.url,
                        }
                        for i, d in enumerate(documents)
                    ],
                )

    def save(self, record: DatasetRecord) -> None:
        """Replace a stored record (its proof); Conflict if unknown or its digest differs."""
        c = t.datasets.c
        row = _dataset_row(record)
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.datasets)
                .where(c.dataset_id == record.dataset_id, c.digest == record.digest)
                .values(row)
            )
        if done.rowcount == 0:
            raise Conflict(f"dataset {record.dataset_id} is unknown or has another digest")

    @staticmethod
    def _sub_models_of(conn: Connection, ids: Sequence[str]) -> dict[str, list[str]]:
        c = t.dataset_sub_models.c
        found: dict[str, list[str]] = {i: [] for i in ids}
        if not ids:
            return found
        query = (
            select(c.dataset_id, c.sub_model)
            .where(c.dataset_id.in_(list(ids)))
            .order_by(c.dataset_id, c.position)
        )
        for dataset_id, name in conn.execute(query).all():
            found[dataset_id].append(name)
        return found

    def get(self, dataset_id: str) -> DatasetRecord | None:
        """The contribution with ``dataset_id``, or None."""
        with self._db.tx() as conn:
            row = conn.execute(
                select(t.datasets).where(t.datasets.c.dataset_id == dataset_id)
            ).first()
            if row is None:
                return None
            names = self._sub_models_of(conn, [dataset_id])[dataset_id]
        return _row_dataset(row, names)

    def documents(self, dataset_id: str) -> Sequence[Document]:
        """The dataset's documents in submission order (empty if unknown)."""
        c = t.dataset_documents.c
        query = select(t.dataset_documents).where(c.dataset_id == dataset_id).order_by(c.position)
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        return [
            Document(title=r.title, text=r.text, source=r.source, licence=r.licence, url=r.url)
            for r in rows
        ]

    def list(
        self, sub_model: str | None = None, contributor: str | None = None, limit: int = 100
    ) -> Sequence[DatasetRecord]:
        """Up to ``limit`` records (filtered if asked), oldest first, then by id."""
        c = t.datasets.c
        query = select(t.datasets).order_by(c.submitted_at, c.dataset_id).limit(limit)
        if contributor is not None:
            query = query.where(c.contributor == contributor)
        if sub_model is not None:
            s = t.dataset_sub_models.c
            query = query.where(
                c.dataset_id.in_(select(s.dataset_id).where(s.sub_model == sub_model))
            )
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
            names = self._sub_models_of(conn, [r.dataset_id for r in rows])
        return [_row_dataset(r, names[r.dataset_id]) for r in rows]
