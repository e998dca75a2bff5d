"""The vector store contract: Qdrant through qdrant-client — its local mode on disk and in
memory, and its server mode over HTTP against a local server speaking Qdrant's REST API
(``tests/fakes/qdrant_server.py``) — and the numpy twin store, search, filter, count and delete
passages the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from owm_adapters.knowledge.qdrant import MemoryVectorStore, QdrantVectorStore
from owm_core.knowledge.vectors import VectorPoint
from owm_core.ports.vector_store import VectorStore
from tests.fakes.qdrant_server import FakeQdrant

DIM = 8
pytestmark = [
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection"),
    # qdrant-client probes the server's version in a thread that may outlive a short test
    pytest.mark.filterwarnings("ignore:Failed to obtain server version"),
]


def _unit(*values: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def _point(pid: str, vector: np.ndarray, dataset: str, sub_models: list[str]) -> VectorPoint:
    return VectorPoint(
        point_id=pid,
        vector=vector,
        payload={"dataset_id": dataset, "sub_models": sub_models, "text": f"text of {pid}"},
    )


@pytest.fixture(params=["qdrant-path", "qdrant-memory", "qdrant-server", "numpy"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    built: VectorStore
    server = None
    if request.param == "qdrant-server":
        server = FakeQdrant(api_key="s3cret").start()
        built = QdrantVectorStore(url=server.url, api_key="s3cret")
    elif request.param == "qdrant-path":
        built = QdrantVectorStore(path=tmp_path / "qdrant")
    elif request.param == "qdrant-memory":
        built = QdrantVectorStore(":memory:")
    else:
        built = MemoryVectorStore()
    built.ensure_collection("passages", DIM)
    yield built
    built.close()
    if server is not None:
        server.stop()


def _fill(store: VectorStore) -> None:
    store.upsert(
        "passages",
        [
            _point("ds-a:0:0", _unit(1, 0), "ds-a", ["owm-geo"]),
            _point("ds-a:1:0", _unit(1, 1), "ds-a", ["owm-geo"]),
            _point("ds-b:0:0", _unit(0, 1), "ds-b", ["owm-history"]),
            _point("ds-c:0:0", _unit(0, 0, 1), "ds-c", ["owm-geo", "owm-history"]),
        ],
    )


def test_search_returns_the_closest_points_best_first_with_cosine_scores(
    store: VectorStore,
) -> None:
    _fill(store)
    hits = store.search("passages", _unit(1, 0), 2)
    assert [h.point_id for h in hits] == ["ds-a:0:0", "ds-a:1:0"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[1].score == pytest.approx(np.sqrt(0.5), abs=1e-5)
    assert hits[0].payload["text"] == "text of ds-a:0:0"
    assert hits[0].payload["sub_models"] == ["owm-geo"]
    assert "point_id" not in hits[0].payload


def test_search_can_be_limited_to_sub_models(store: VectorStore) -> None:
    _fill(store)
    hits = store.search("passages", _unit(1, 0), 10, sub_models=["owm-history"])
    assert sorted(h.point_id for h in hits) == ["ds-b:0:0", "ds-c:0:0"]
    assert store.search("passages", _unit(1, 0), 10, sub_models=["owm-none"]) == []


def test_upserting_an_id_again_replaces_the_point(store: VectorStore) -> None:
    _fill(store)
    store.upsert("passages", [_point("ds-a:0:0", _unit(0, 0, 0, 1), "ds-a", ["owm-geo"])])
    assert store.count("passages") == 4
    assert store.search("passages", _unit(0, 0, 0, 1), 1)[0].point_id == "ds-a:0:0"


def test_count_and_delete_by_dataset(store: VectorStore) -> None:
    _fill(store)
    assert store.count("passages") == 4
    assert store.count("passages", "owm-geo") == 3
    store.delete_dataset("passages", "ds-a")
    assert store.count("passages") == 2
    assert {h.point_id for h in store.search("passages", _unit(1, 0), 10)} == {
        "ds-b:0:0", "ds-c:0:0",
    }


def test_a_missing_collection_is_empty(store: VectorStore) -> None:
    assert store.count("nothing") == 0
    assert store.search("nothing", _unit(1), 5) == []


def test_ensure_collection_is_idempotent_and_refuses_another_dimension(
    store: VectorStore,
) -> None:
    _fill(store)
    store.ensure_collection("passages", DIM)
    assert store.count("passages") == 4
    with pytest.raises(ValueError, match="dimensional"):
        store.ensure_collection("passages", DIM + 1)


def test_qdrant_local_mode_keeps_points_and_dimension_across_reopening(tmp_path: Path) -> None:
    first = QdrantVectorStore(path=tmp_path / "q")
    first.ensure_collection("passages", DIM)
    _fill(first)
    first.close()
    again = QdrantVectorStore(path=tmp_path / "q")
    try:
        assert again.count("passages") == 4
        with pytest.raises(ValueError, match="dimensional"):
            again.ensure_collection("passages", DIM + 1)
        again.ensure_collection("passages", DIM)
        assert again.search("passages", _unit(0, 1), 1)[0].point_id == "ds-b:0:0"
    finally:
        again.close()


def test_server_mode_talks_qdrants_rest_api_with_the_api_key_and_payload_indexes() -> None:
    server = FakeQdrant(api_key="s3cret").start()
    try:
        store = QdrantVectorStore(url=server.url, api_key="s3cret")
        store.ensure_collection("passages", DIM)
        _fill(store)
        again = QdrantVectorStore(url=server.url, api_key="s3cret")
        again.ensure_collection("passages", DIM)
        with pytest.raises(ValueError, match="dimensional"):
            QdrantVectorStore(url=server.url, api_key="s3cret").ensure_collection(
                "passages", DIM + 1
            )
        assert again.count("passages", "owm-history") == 2
        assert ("PUT", "/collections/passages/index") in server.requests
        with pytest.raises(Exception, match=r"401|api-key"):
            QdrantVectorStore(url=server.url, api_key="wrong").count("passages")
    finally:
        server.stop()
