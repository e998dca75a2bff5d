"""POST/GET /v1/data/datasets and GET /v1/submodels (SRS 2.2): an authenticated
caller contributes a dataset and is recorded as its contributor; errors are RFC 7807 problems
naming the field. The knowledge base runs on the hashing embedder and the numpy store here
(retrieval quality with MiniLM + Qdrant: tests/e2e/test_knowledge_retrieval.py)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from owm_adapters.knowledge.minilm import HashingEmbedder
from owm_adapters.knowledge.qdrant import MemoryVectorStore
from owm_adapters.services.knowledge import KnowledgeBase
from tests.server.http.world import World, build_world

DATASET: dict[str, Any] = {
    "name": "rivers",
    "sub_models": ["owm-geo"],
    "source": "Alice's atlas",
    "licence": "CC-BY-4.0",
    "documents": [
        {"title": "Danube", "text": "The Danube flows into the Black Sea."},
        {"title": "Rhine", "text": "The Rhine flows into the North Sea.", "licence": "CC0-1.0"},
    ],
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    for built in build_world(tmp_path):
        kb = KnowledgeBase(built.repos, HashingEmbedder(), MemoryVectorStore())
        kb.register_sub_model("owm-geo", "Geography of the world.", built.clock.now())
        built.serve(knowledge=kb)
        yield built


def test_a_dataset_is_accepted_and_attributed_to_the_api_keys_owner(world: World) -> None:
    reply = world.client.post("/v1/data/datasets", json=DATASET, headers=world.api_key("alice"))
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["contributor"] == "alice"
    assert body["dataset_id"] == "ds-" + body["digest"][:24]
    assert (body["documents"], body["passages"]) == (2, 2)
    assert body["licences"] == ["CC-BY-4.0", "CC0-1.0"]
    assert body["ots_status"] == "none"
    listed = world.client.get("/v1/data/datasets?contributor=alice", headers=world.api_key())
    assert [d["dataset_id"] for d in listed.json()["datasets"]] == [body["dataset_id"]]
    assert world.client.get(
        "/v1/data/datasets?sub_model=owm-history", headers=world.api_key()
    ).json() == {"datasets": []}


def test_the_sub_model_registry_lists_versions_that_the_model_endpoint_knows(
    world: World,
) -> None:
    world.client.post("/v1/data/datasets", json=DATASET, headers=world.api_key("alice"))
    reply = world.client.get("/v1/submodels", headers=world.api_key())
    assert reply.status_code == 200
    [geo] = reply.json()["sub_models"]
    assert (geo["name"], geo["kind"], geo["version"]) == ("owm-geo", "retrieval-reader",
                                                          "owm-v0.1.1")
    assert len(geo["datasets"]) == 1
    version = world.client.get(f"/v1/model/versions/{geo['version_id']}", headers=world.api_key())
    assert version.status_code == 200, version.text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.pop("licence"), "documents[0].licence"),
        (lambda d: d["documents"][1].update(text="  "), "documents[1].text"),
        (lambda d: d.update(sub_models=["owm-cooking"]), "sub_models"),
    ],
)
def test_an_invalid_dataset_is_a_422_problem_naming_the_field(
    world: World, change: Any, field: str
) -> None:
    body = copy.deepcopy(DATASET)
    change(body)
    reply = world.client.post("/v1/data/datasets", json=body, headers=world.api_key("alice"))
    assert reply.status_code == 422
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["field"] == field


def test_a_dataset_is_refused_unauthenticated_and_when_another_contributor_gave_it(
    world: World,
) -> None:
    assert world.client.post("/v1/data/datasets", json=DATASET).status_code in (401, 402)
    assert world.client.post(
        "/v1/data/datasets", json=DATASET, headers=world.api_key("alice")
    ).status_code == 201
    again = world.client.post("/v1/data/datasets", json=DATASET, headers=world.api_key("alice"))
    assert again.status_code == 201
    stolen = world.client.post("/v1/data/datasets", json=DATASET, headers=world.api_key("eve"))
    assert stolen.status_code == 409
    assert stolen.json()["code"] == "conflict"


def test_without_a_knowledge_base_the_data_endpoints_answer_503(world: World) -> None:
    world.serve(knowledge=None)
    reply = world.client.get("/v1/submodels", headers=world.api_key())
    assert reply.status_code == 503
    assert reply.json()["code"] == "knowledge-unavailable"
