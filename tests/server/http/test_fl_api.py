"""The FL endpoints: uploads (RFC 7807 on every refusal), the round listing, weight downloads."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import attrs
import numpy as np
import pytest
from starlette.testclient import TestClient

from owm_adapters.models.tinynet import PARAM_SHAPES
from owm_adapters.services.api import ApiConfig, ApiServices
from owm_core.fl.attacks import Attack
from owm_core.fl.updates import sign_update
from owm_core.provenance.verification import verify_model_version
from owm_server.http.app import create_app
from tests.services.fl_world import FlWorld, build_fl_world, count_decodes


@attrs.define
class Api:
    world: FlWorld
    services: ApiServices
    client: TestClient
    key: dict[str, str]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    world = build_fl_world(tmp_path)
    services = ApiServices.over(world.coordinator, b"\x22" * 32, ApiConfig(cache_ttl_ms=0),
                                fl=world.fl)
    client = TestClient(create_app(services), raise_server_exceptions=False)
    _key, secret = services.access.create_api_key("tester")
    try:
        yield Api(world, services, client, {"Authorization": f"Bearer {secret}"})
    finally:
        client.close()
        world.provenance.stop()


def test_an_upload_is_accepted_with_202_and_the_same_one_again_is_a_duplicate(api: Api) -> None:
    fl_round = api.world.start_round()
    out = api.world.trained(fl_round)
    body = api.world.body(fl_round, api.world.nodes[0], out["weights"], out)
    first = api.client.post("/v1/fl/updates", json=body)
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "accepted"
    assert first.json()["node_id"] == api.world.nodes[0].node_id
    again = api.client.post("/v1/fl/updates", json=body)
    assert again.status_code == 202 and again.json()["status"] == "duplicate"
    other = api.world.body(fl_round, api.world.nodes[0], [0.0] * len(out["weights"]), out)
    conflict = api.client.post("/v1/fl/updates", json=other)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"signature": "ab" * 64}, "signature"),
        ({"weights": [0.5, "x"]}, "weights[1]"),
        ({"weights": [0.5, 1e39]}, "weights"),
        ({"public_key": "zz"}, "body.public_key"),
        ({"extra": 1}, "body.extra"),
        ({"round": -1}, "body.round"),
    ],
)
def test_a_bad_upload_is_a_problem_naming_the_field(
    api: Api, change: dict[str, object], field: str
) -> None:
    fl_round = api.world.start_round()
    body = {**api.world.body(fl_round, api.world.nodes[0], [0.1] * 2762), **change}
    reply = api.client.post("/v1/fl/updates", json=body)
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == field


def test_unknown_rounds_are_404_and_other_nodes_tasks_409(api: Api) -> None:
    fl_round = api.world.start_round()
    out = api.world.trained(fl_round)
    body = api.world.body(fl_round, api.world.nodes[0], out["weights"], out)
    late = sign_update(api.world.nodes[0], round_number=fl_round.number + 1, sub_model="owm-base",
                       task_id=body["task_id"], num_examples=64, loss=0.5, weights=out["weights"])
    assert api.client.post("/v1/fl/updates", json=late).status_code == 404
    stranger = sign_update(api.world.nodes[4], round_number=fl_round.number,
                           sub_model="owm-base", task_id=body["task_id"], num_examples=64,
                           loss=0.5, weights=out["weights"])
    refused = api.client.post("/v1/fl/updates", json=stranger)
    assert refused.status_code == 409 and refused.json()["code"] == "invalid-transition"


def test_rounds_list_accuracy_participants_flags_and_the_version_with_its_weights(
    api: Api,
) -> None:
    world = api.world
    fl_round = world.start_round()
    out = world.trained(fl_round)
    for node in world.nodes[:3]:
        reply = api.client.post("/v1/fl/updates", json=world.body(fl_round, node, out["weights"],
                                                                  out))
        assert reply.status_code == 202
    poisoned = world.poisoned_body(fl_round, world.nodes[3], Attack.SCALED)
    assert api.client.post("/v1/fl/updates", json=poisoned).status_code == 202
    world.fl.tick()  # all four replicas uploaded: the round closes, and the next one starts
    listing = api.client.get("/v1/fl/rounds", headers=api.key)
    assert listing.status_code == 200, listing.text
    nxt, shown = listing.json()["rounds"]
    assert nxt["state"] == "open" and nxt["base_version"] == shown["version"]
    assert shown["state"] == "closed" and shown["participants"] == 4
    assert shown["flagged"] == [world.nodes[3].node_id]
    assert 0.0 < shown["accuracy"] <= 1.0 and shown["rule"] == "trimmed"
    version = shown["version"]
    meta = api.client.get(f"/v1/model/versions/{version}", headers=api.key).json()
    assert meta["ots_status"] == "pending" and meta["parent"] is None
    weights = api.client.get(f"/v1/model/versions/{version}/weights", headers=api.key)
    assert weights.status_code == 200
    with np.load(io.BytesIO(weights.content)) as npz:
        tensors = {name: npz[name] for name, _ in PARAM_SHAPES}
    world.provenance.flush()
    world.fl.upgrade_proofs()
    confirmed = api.client.get(f"/v1/model/versions/{version}", headers=api.key).json()
    assert confirmed["ots_status"] == "confirmed" and confirmed["ots_verified"] is True
    release = api.services.releases.release(version)
    assert release.ots_proof is not None
    assert verify_model_version(release.version, release.ots_proof, world.provenance, tensors).ok
    missing = api.client.get("/v1/model/versions/owm-base@owm-v9.9.9/weights", headers=api.key)
    assert missing.status_code == 404


def test_without_an_fl_service_the_endpoints_answer_503(api: Api) -> None:
    without = TestClient(create_app(attrs.evolve(api.services, fl=None)),
                         raise_server_exceptions=False)
    assert without.get("/v1/fl/rounds", headers=api.key).status_code == 503


def test_an_anonymous_megabyte_upload_for_no_assignment_is_refused_without_decoding_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = count_decodes(monkeypatch)
    fl_round = api.world.start_round()
    out = api.world.trained(fl_round)
    honest = api.world.body(fl_round, api.world.nodes[0], out["weights"], out)
    junk = {**honest, "public_key": "ab" * 32, "signature": "cd" * 64,
            "weights": [0.123456] * 100_000}  # fmt: skip
    raw = json.dumps(junk).encode()
    assert len(raw) > 900_000
    json_type = {"content-type": "application/json"}
    unassigned = api.client.post("/v1/fl/updates", content=raw, headers=json_type)
    assert unassigned.status_code == 409 and unassigned.json()["code"] == "invalid-transition"
    probe = {**junk, "round": 1_000, "task_id": "fl:0"}  # the review's probe: no such round
    unknown = api.client.post("/v1/fl/updates", content=json.dumps(probe), headers=json_type)
    assert unknown.status_code == 404
    assert decoded == []
    assert api.client.post("/v1/fl/updates", json=honest).status_code == 202
    assert len(decoded) == 1
