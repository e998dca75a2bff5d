"""SQL repositories: sub-models and contributed datasets with their documents."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, insert, select

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.rows import (
    KeyedRepository,
    MappedRepository,
    from_row,
    register_row,
    to_row,
)
from owm_core.knowledge.datasets import DatasetRecord, Document
from owm_core.knowledge.submodels import SubModel

register_row(SubModel, int64_columns=["created_at"])
register_row(
    DatasetRecord,
    omitted=["sub_models"],
    int64_columns=["submitted_at", "size_bytes"],
)
register_row(Document)


class SqlSubModelRepository(KeyedRepository[SubModel]):
    """The sub-model registry in ``sub_models``, by name."""

    _table = t.sub_models
    _unknown = "sub-model {} is unknown"

    def list(self) -> Sequence[SubModel]:
        """Every sub-model, ordered by name."""
        return self._all(select(t.sub_models).order_by(t.sub_models.c.name), SubModel)


class SqlDatasetRepository(MappedRepository):
    """Contributed datasets in ``datasets``, ``dataset_sub_models`` and ``dataset_documents``."""

    def add(self, record: DatasetRecord, documents: Sequence[Document]) -> None:
        """Store a contribution and its documents; Conflict if its id exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.datasets).values(to_row(record)))
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
                        {"dataset_id": record.dataset_id, "position": i, **to_row(d)}
                        for i, d in enumerate(documents)
                    ],
                )

    def save(self, record: DatasetRecord) -> None:
        """Replace a stored record (its proof); Conflict if unknown or its digest differs."""
        c = t.datasets.c
        self._overwrite(
            t.datasets, record, f"dataset {record.dataset_id} is unknown or has another digest",
            c.dataset_id == record.dataset_id, c.digest == record.digest,
        )

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
        return from_row(row, DatasetRecord, sub_models=tuple(names))

    def documents(self, dataset_id: str) -> Sequence[Document]:
        """The dataset's documents in submission order (empty if unknown)."""
        c = t.dataset_documents.c
        query = select(t.dataset_documents).where(c.dataset_id == dataset_id).order_by(c.position)
        return self._all(query, Document)

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
        return [
            from_row(r, DatasetRecord, sub_models=tuple(names[r.dataset_id])) for r in rows
        ]
