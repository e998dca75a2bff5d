"""The vector store port: passages' vectors with their payload, searchable by similarity.

Retrieval runs on Qdrant through ``qdrant-client``: its embedded local mode
(a directory, or ``:memory:``) by default, a Qdrant server by URL for scale. Points carry a
string id (the passage id) and a JSON payload; every payload has ``dataset_id`` and
``sub_models`` (a list of names), which :meth:`VectorStore.search`, :meth:`VectorStore.count`
and :meth:`VectorStore.delete_dataset` filter on. Scores are cosine similarities, higher is
closer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from owm_core.knowledge.vectors import VectorHit, VectorPoint


class VectorStore(Protocol):
    """A collection-based vector index with payload filters (Qdrant or its in-memory twin)."""

    def ensure_collection(self, name: str, dimension: int) -> None:
        """Create collection ``name`` for ``dimension``-long cosine vectors if it is missing."""
        ...

    def upsert(self, collection: str, points: Sequence[VectorPoint]) -> None:
        """Insert or replace ``points`` (by id); durable/visible to search on return."""
        ...

    def search(
        self,
        collection: str,
        vector: npt.NDArray[np.float32],
        limit: int,
        sub_models: Sequence[str] | None = None,
    ) -> list[VectorHit]:
        """The ``limit`` closest points, best first; only those of ``sub_models`` if given."""
        ...

    def count(self, collection: str, sub_model: str | None = None) -> int:
        """How many points the collection holds (of ``sub_model`` if given); 0 if missing."""
        ...

    def delete_dataset(self, collection: str, dataset_id: str) -> None:
        """Remove every point whose payload's ``dataset_id`` is ``dataset_id``."""
        ...

    def close(self) -> None:
        """Release files/connections; the store must not be used afterwards."""
        ...
