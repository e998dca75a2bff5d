"""The embeddings contract: MiniLM (the real encoder, offline) and its hashing twin both return
unit-length float32 rows of their stated dimension, deterministically, and put a text closer to
a paraphrase sharing its words than to an unrelated text."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from owm_adapters.knowledge.minilm import MINILM_DIMENSION, HashingEmbedder, shared_minilm
from owm_core.ports.embeddings import Embedder


@pytest.fixture(scope="module", params=["minilm", "hashing"])
def embedder(request: pytest.FixtureRequest) -> Embedder:
    if request.param == "minilm":
        return shared_minilm()
    return HashingEmbedder()


def test_rows_are_unit_float32_vectors_of_the_stated_dimension(embedder: Embedder) -> None:
    vectors = embedder.embed(["Paris is the capital of France.", "Photosynthesis makes sugar."])
    assert vectors.shape == (2, embedder.dimension)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_no_texts_give_an_empty_array(embedder: Embedder) -> None:
    assert embedder.embed([]).shape == (0, embedder.dimension)


def test_embedding_is_deterministic_and_independent_of_the_batch(embedder: Embedder) -> None:
    alone = embedder.embed(["What is the capital of France?"])
    batched = embedder.embed(["Something else entirely.", "What is the capital of France?"])
    assert np.allclose(alone[0], batched[1], atol=1e-5)


def test_a_question_is_closer_to_its_answer_than_to_an_unrelated_text(embedder: Embedder) -> None:
    q, answer, other = embedder.embed(
        [
            "What is the capital of France?",
            "Paris is the capital and largest city of France.",
            "Mitochondria release energy from glucose in cells.",
        ]
    )
    assert float(q @ answer) > float(q @ other) + 0.1


def test_concurrent_callers_get_the_same_vectors(embedder: Embedder) -> None:
    expected = embedder.embed(["The Nile flows north."])[0]
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(embedder.embed(["The Nile flows north."])[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert all(np.allclose(r, expected, atol=1e-5) for r in results)


def test_minilm_is_the_384_dimensional_all_minilm_l6_v2_loaded_offline() -> None:
    import os

    model = shared_minilm()
    assert model.dimension == MINILM_DIMENSION == 384
    assert model.model_id.endswith("all-MiniLM-L6-v2")
    model.warm()
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
