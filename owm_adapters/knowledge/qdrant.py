"""Qdrant as OWM's vector store, and its numpy twin.

:class:`QdrantVectorStore` implements :class:`~owm_core.ports.vector_store.VectorStore` with
``qdrant-client``: its embedded local mode (a directory, persisted by the client itself, or
``":memory:"``) is the default; ``url=`` talks to a Qdrant server for scale (REST, with an API
key if given). Qdrant point ids must be unsigned integers or UUIDs, so a passage id becomes a
UUID5 in a fixed OWM namespace and travels in the payload as ``point_id``. Collections use cosine
distance. The local mode is not safe for concurrent use, so every call holds one lock.

:class:`MemoryVectorStore` is the exact (brute-force numpy) twin with the same semantics; both
pass ``tests/adapters/knowledge/test_vector_store_contract.py``, which also runs the server mode
against a local server speaking Qdrant's REST API (``tests/fakes/qdrant_server.py``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient
from qdrant_client.http import models as qm

from owm_core.knowledge.vectors import VectorHit, VectorPoint

_NAMESPACE = uuid.UUID("5b0f3a52-8a8e-4d55-9c1f-0e3e3d0a0c6e")


def qdrant_point_id(point_id: str) -> str:
    """The UUID Qdrant stores for OWM's string ``point_id`` (stable across processes)."""
    return str(uuid.uuid5(_NAMESPACE, point_id))


def _sub_model_filter(sub_models: Sequence[str] | None) -> qm.Filter | None:
    if sub_models is None:
        return None
    return qm.Filter(
        must=[qm.FieldCondition(key="sub_models", match=qm.MatchAny(any=list(sub_models)))]
    )


def _dimension_mismatch(name: str, held: int, wanted: int) -> ValueError:
    """The error of ensuring collection ``name`` for ``wanted``-long vectors when it holds
    ``held``-long ones (both stores)."""
    return ValueError(f"collection {name} holds {held}-dimensional vectors, not {wanted}")


class QdrantVectorStore:
    """The :class:`~owm_core.ports.vector_store.VectorStore` port on Qdrant through
    qdrant-client: local mode at ``path`` / ``":memory:"``, or a server."""

    def __init__(
        self,
        location: str | None = None,
        *,
        path: Path | str | None = None,
        url: str | None = None,
        api_key: str | None = None,
        timeout_s: int = 10,
    ) -> None:
        chosen = [x is not None for x in (location, path, url)]
        if sum(chosen) > 1:
            raise ValueError("give one of location, path or url")
        if url is not None:
            self._client = QdrantClient(url=url, api_key=api_key, timeout=timeout_s)
            self._server = True
        elif path is not None:
            Path(path).mkdir(parents=True, exist_ok=True)
            self._client = QdrantClient(path=str(path))
            self._server = False
        else:
            self._client = QdrantClient(location=location or ":memory:")
            self._server = False
        self._lock = threading.Lock()
        self._known: dict[str, int] = {}

    def ensure_collection(self, name: str, dimension: int) -> None:
        """The port's ensure_collection; on a server, with keyword payload indexes on
        ``sub_models`` and ``dataset_id`` (the filters' fields)."""
        with self._lock:
            known = self._known.get(name)
            if known is not None:
                if known != dimension:
                    raise _dimension_mismatch(name, known, dimension)
                return
            if not self._client.collection_exists(name):
                self._client.create_collection(
                    collection_name=name,
                    vectors_config=qm.VectorParams(size=dimension, distance=qm.Distance.COSINE),
                )
                if self._server:
                    for key in ("sub_models", "dataset_id"):
                        self._client.create_payload_index(
                            name, field_name=key, field_schema=qm.PayloadSchemaType.KEYWORD
                        )
            else:
                info = self._client.get_collection(name)
                params = info.config.params.vectors
                size = getattr(params, "size", None)
                if size is not None and size != dimension:
                    raise _dimension_mismatch(name, size, dimension)
            self._known[name] = dimension

    def upsert(self, collection: str, points: Sequence[VectorPoint]) -> None:
        """Insert or replace ``points`` (by id); visible to search on return."""
        if not points:
            return
        structs = [
            qm.PointStruct(
                id=qdrant_point_id(p.point_id),
                vector=np.asarray(p.vector, dtype=np.float32).tolist(),
                payload={**p.payload, "point_id": p.point_id},
            )
            for p in points
        ]
        with self._lock:
            for start in range(0, len(structs), 256):
                self._client.upsert(collection, points=structs[start : start + 256], wait=True)

    def search(
        self,
        collection: str,
        vector: npt.NDArray[np.float32],
        limit: int,
        sub_models: Sequence[str] | None = None,
    ) -> list[VectorHit]:
        """The port's search, as one Qdrant query under the sub-model filter."""
        if limit < 1 or (sub_models is not None and not sub_models):
            return []
        with self._lock:
            if not self._client.collection_exists(collection):
                return []
            found = self._client.query_points(
                collection,
                query=np.asarray(vector, dtype=np.float32).tolist(),
                query_filter=_sub_model_filter(sub_models),
                limit=limit,
                with_payload=True,
            ).points
        hits = []
        for point in found:
            payload = dict(point.payload or {})
            point_id = str(payload.pop("point_id", point.id))
            hits.append(VectorHit(point_id=point_id, score=float(point.score), payload=payload))
        return hits

    def count(self, collection: str, sub_model: str | None = None) -> int:
        """The port's count: Qdrant's exact count under the sub-model filter."""
        with self._lock:
            if not self._client.collection_exists(collection):
                return 0
            query = None if sub_model is None else _sub_model_filter([sub_model])
            return int(self._client.count(collection, count_filter=query, exact=True).count)

    def delete_dataset(self, collection: str, dataset_id: str) -> None:
        """The port's delete_dataset: one delete by a payload filter, waited for."""
        selector = qm.FilterSelector(
            filter=qm.Filter(
                must=[qm.FieldCondition(key="dataset_id", match=qm.MatchValue(value=dataset_id))]
            )
        )
        with self._lock:
            if self._client.collection_exists(collection):
                self._client.delete(collection, points_selector=selector, wait=True)

    def close(self) -> None:
        """Close the client (flushes the local mode's storage)."""
        with self._lock:
            self._client.close()


class MemoryVectorStore:
    """Exact cosine search over numpy arrays: the in-process twin of the
    :class:`~owm_core.ports.vector_store.VectorStore` port."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._collections: dict[str, tuple[int, dict[str, tuple[Any, Mapping[str, Any]]]]] = {}

    def ensure_collection(self, name: str, dimension: int) -> None:
        """The port's ensure_collection."""
        with self._lock:
            known = self._collections.get(name)
            if known is None:
                self._collections[name] = (dimension, {})
            elif known[0] != dimension:
                raise _dimension_mismatch(name, known[0], dimension)

    def upsert(self, collection: str, points: Sequence[VectorPoint]) -> None:
        """Insert or replace ``points`` (by id)."""
        with self._lock:
            dimension, stored = self._collections[collection]
            for p in points:
                vector = np.asarray(p.vector, dtype=np.float32)
                if vector.shape != (dimension,):
                    raise ValueError(f"vector of {p.point_id} is not {dimension}-dimensional")
                norm = float(np.linalg.norm(vector))
                unit = vector / norm if norm > 0 else vector
                stored[p.point_id] = (unit, dict(p.payload))

    def _matching(
        self, collection: str, sub_models: Sequence[str] | None
    ) -> list[tuple[str, Any, Mapping[str, Any]]]:
        if collection not in self._collections:
            return []
        wanted = None if sub_models is None else set(sub_models)
        return [
            (pid, vec, payload)
            for pid, (vec, payload) in self._collections[collection][1].items()
            if wanted is None or wanted.intersection(payload.get("sub_models", ()))
        ]

    def search(
        self,
        collection: str,
        vector: npt.NDArray[np.float32],
        limit: int,
        sub_models: Sequence[str] | None = None,
    ) -> list[VectorHit]:
        """The port's search, exact: dot products of unit vectors, ties by id."""
        if limit < 1:
            return []
        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        if norm > 0:
            query = query / norm
        with self._lock:
            rows = self._matching(collection, sub_models)
        scored = sorted(
            ((float(np.dot(vec, query)), pid, payload) for pid, vec, payload in rows),
            key=lambda r: (-r[0], r[1]),
        )
        return [VectorHit(point_id=pid, score=s, payload=dict(p)) for s, pid, p in scored[:limit]]

    def count(self, collection: str, sub_model: str | None = None) -> int:
        """The port's count."""
        with self._lock:
            return len(self._matching(collection, None if sub_model is None else [sub_model]))

    def delete_dataset(self, collection: str, dataset_id: str) -> None:
        """The port's delete_dataset."""
        with self._lock:
            if collection not in self._collections:
                return
            stored = self._collections[collection][1]
            for pid in [k for k, (_, p) in stored.items() if p.get("dataset_id") == dataset_id]:
                del stored[pid]

    def close(self) -> None:
        """Nothing to release."""
