"""The embeddings port: turning text into vectors whose cosine similarity means closeness.

Retrieval and routing compare a query with passages and with sub-models'
domain descriptions in one vector space. The production adapter is MiniLM (all-MiniLM-L6-v2,
384 dimensions, weights shipped in a package, no download at run time); a hashed bag-of-words
twin serves fast tests. Both return L2-normalised rows, so a dot product is a cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt


class Embedder(Protocol):
    """Encodes texts as unit-length float32 vectors of a fixed dimension."""

    @property
    def model_id(self) -> str:
        """A stable name of the encoder (vectors of different encoders must never be mixed)."""
        ...

    @property
    def dimension(self) -> int:
        """The length of every vector this embedder returns."""
        ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """An array of shape (len(texts), dimension), each row L2-normalised (zero text → zero)."""
        ...
