"""Passages' vectors as a vector store holds them: a point to store and a search hit.

The :class:`~owm_core.ports.vector_store.VectorStore` port takes :class:`VectorPoint` and
answers :class:`VectorHit`; scores are cosine similarities, higher is closer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt


@attrs.frozen(eq=False)
class VectorPoint:
    """One vector to store: its id, the vector and the JSON payload returned with hits."""

    point_id: str
    vector: npt.NDArray[np.float32]
    payload: Mapping[str, Any]


@attrs.frozen
class VectorHit:
    """One search result: the point's id, its cosine similarity to the query and its payload."""

    point_id: str
    score: float
    payload: Mapping[str, Any]
