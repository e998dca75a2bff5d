"""The public API's HTTP shell itself (spec 4.8): headers on every response (SRS-API-01),
problem documents for every failure (SRS-API-04), versions as mounts (SRS-API-06), the OpenAPI
3.1 document, and the uvicorn server that ``owm-coordinator serve`` runs beside gRPC."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.storage.memory import memory_repositories
from owm_core.coordination.challenges import Challenge
from owm_core.provenance.versions import ProofStatus
from owm_server.http import app as app_module
from owm_server.http import v1
from owm_server.http.app import create_app, openapi_v1, version_routes
from owm_server.http.reference import render_markdown
from owm_server.http.serve import ApiServer, api_server_for
from tests.server.harness import SimNode, StepClock, start_coordinator
from tests.server.http.records import release
from tests.server.http.world import T0, World


def _is_problem(reply: httpx.Response, status: int, code: str) -> None:
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["type"] == f"https://owm.network/problems/{code}"
    assert body["status"] == status and body["title"] and body["detail"]


def test_every_response_names_the_model_version_and_its_ots_status(world: World) -> None:
    world.services.releases.publish_release(release("owm-v0.4.2", T0, ProofStatus.CONFIRMED))
    keys = world.api_key()
    replies = [
        world.client.get("/v1/stake/requirements", headers=keys),
        world.client.get("/v1/stake/requirements"),
        world.client.get("/v1/nope"),
        world.client.put("/v1/stake/requirements", headers=keys),
        world.client.get("/v1/openapi.json"),
        world.client.get("/"),
        world.client.post("/v1/query", json={"query": "x"}, headers=keys),
    ]
    for reply in replies:
        assert reply.headers["X-OWM-Model-Version"] == "owm-v0.4.2"
        assert reply.headers["X-OWM-OTS-Verified"] == "true; chain=embedded-regtest"


def test_routing_failures_and_bad_bodies_are_problem_documents(world: World) -> None:
    keys = world.api_key()
    _is_problem(world.client.get("/v1/nope"), 404, "not-found")
    _is_problem(world.client.get("/v2/stake/requirements"), 404, "not-found")
    not_allowed = world.client.put("/v1/governance/proposals", headers=keys)
    _is_problem(not_allowed, 405, "method-not-allowed")
    assert set(not_allowed.headers["allow"].split(", ")) >= {"GET", "POST"}
    post = "/v1/governance/proposals"
    _is_problem(world.client.post(post, content=b"{", headers=keys), 400, "malformed-request")
    _is_problem(
        world.client.post(post, content=b"{}", headers={**keys, "content-type": "text/plain"}),
        415,
        "unsupported-media-type",
    )
    big = b'{"title": "' + b"x" * (1 << 20) + b'"}'
    _is_problem(world.client.post(post, content=big, headers=keys), 413, "payload-too-large")
    surrogate = b'{"text": "\\ud800"}'
    comment = "/v1/governance/proposals/prop_x/comment"
    _is_problem(world.client.post(comment, content=surrogate, headers=keys), 400,
                "malformed-request")  # fmt: skip
    missing = world.client.post(post, json={"title": "t"}, headers=keys)
    _is_problem(missing, 422, "invalid-value")
    assert missing.json()["field"] == "body.description"
    bad_query = world.client.get("/v1/mining/payouts?limit=abc", headers=keys)
    _is_problem(bad_query, 422, "invalid-value")
    assert bad_query.json()["field"] == "query.limit"


def test_an_unexpected_failure_is_a_500_problem_without_a_trace(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_views: object) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(type(world.services.views), "pool_stats", broken)
    reply = world.client.get("/v1/mining/stats", headers=world.api_key())
    _is_problem(reply, 500, "internal")
    assert "secret" not in reply.text and "Traceback" not in reply.text
    assert reply.headers["X-OWM-Model-Version"] == "none"


def test_versions_are_mounts_so_a_v2_can_be_served_beside_v1(world: World) -> None:
    app = create_app(world.services)
    mounts = [r for r in app.routes if isinstance(r, Mount)]
    assert [m.path for m in mounts] == ["/v1"]
    v2 = [op for op in v1.operations() if op.operation_id == "stakeRequirements"]
    both = Starlette(
        routes=[*mounts, Mount("/v2", routes=version_routes(world.services, "/v2", v2))]
    )
    with TestClient(both) as client:
        keys = world.api_key()
        assert client.get("/v1/stake/requirements", headers=keys).status_code == 200
        assert client.get("/v2/stake/requirements", headers=keys).status_code == 200
        v2_doc = client.get("/v2/openapi.json").json()
        assert list(v2_doc["paths"]) == ["/v2/stake/requirements"]


def test_the_openapi_document_is_3_1_and_lists_every_operation(world: World) -> None:
    served = world.client.get("/v1/openapi.json").json()
    assert served == openapi_v1()
    assert served["openapi"] == "3.1.0"
    listed = {
        (method.upper(), path) for path, methods in served["paths"].items() for method in methods
    }
    expected = {(op.method, "/v1" + op.path) for op in v1.operations()}
    assert listed == expected
    spec_endpoints = {
        ("POST", "/v1/query"), ("POST", "/v1/query/stream"), ("GET", "/v1/query/{query_id}"),
        ("GET", "/v1/model/versions"), ("GET", "/v1/model/versions/{id}"),
        ("GET", "/v1/model/versions/{id}/ots"), ("POST", "/v1/github/analyze"),
        ("GET", "/v1/github/analysis/{id}"), ("GET", "/v1/github/bounties"),
        ("POST", "/v1/github/bounties"), ("POST", "/v1/nodes/register"),
        ("DELETE", "/v1/nodes/{node_id}"), ("GET", "/v1/nodes/{node_id}/status"),
        ("GET", "/v1/nodes/{node_id}/earnings"), ("GET", "/v1/network/stats"),
        ("GET", "/v1/network/nodes"), ("GET", "/v1/payments/invoice"),
        ("GET", "/v1/payments/history"), ("GET", "/v1/mining/stats"),
        ("GET", "/v1/mining/nodes/{node_id}"), ("GET", "/v1/mining/payouts"),
        ("GET", "/v1/mining/dashboard"), ("GET", "/v1/stake/requirements"),
        ("GET", "/v1/stake/nodes/{node_id}"), ("GET", "/v1/network/slashing-log"),
        ("GET", "/v1/governance/proposals"), ("POST", "/v1/governance/proposals"),
        ("POST", "/v1/governance/proposals/{id}/comment"),
    }  # fmt: skip
    assert spec_endpoints <= listed
    for methods in served["paths"].values():
        for operation in methods.values():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/problem+json"]["schema"]
                    assert schema["required"] == ["type", "title", "status", "detail", "code"]


def test_the_api_server_serves_on_a_real_port_and_stops_gracefully(world: World) -> None:
    server = ApiServer(create_app(world.services), "127.0.0.1:0", grace_s=2)
    server.start()
    url = f"http://127.0.0.1:{server.port}/v1/openapi.json"
    try:
        reply = httpx.get(url, timeout=5)
        assert reply.status_code == 200
        assert reply.headers["X-OWM-Model-Version"] == "none"
    finally:
        server.stop()
    try:
        httpx.get(url, timeout=1)
        raise AssertionError("the server still answers after stop()")
    except httpx.TransportError:
        pass


def test_the_committed_api_reference_is_rendered_from_the_current_code() -> None:
    committed = Path(__file__).parents[3] / "docs" / "api-reference.md"
    assert committed.read_text(encoding="utf-8") == render_markdown(openapi_v1()), (
        "docs/api-reference.md is stale: run scripts/gen-api-docs"
    )


def test_http_and_grpc_share_one_coordinator_and_its_registration_use_case(
    tmp_path: Path,
) -> None:
    """What ``owm-coordinator serve`` runs: gRPC and HTTP over the same CoordinatorService."""
    clock = StepClock(T0)
    coordinator = start_coordinator(memory_repositories(), SimLedger(tmp_path / "ln"), clock)
    api = api_server_for(coordinator.app, "127.0.0.1:0", data_dir=tmp_path, grace_s=2)
    api.start()
    try:
        base = f"http://127.0.0.1:{api.port}"
        node = SimNode.create()
        node.stake(coordinator)
        grpc_node = SimNode.create()
        grpc_node.stake(coordinator)
        grpc_node.register(coordinator.stub, clock.now())
        challenge = httpx.post(
            f"{base}/v1/nodes/challenge",
            json={"public_key": node.public_key, "purpose": "register"},
        ).json()
        details = {"ln_node_uri": node.ln_node_uri, "manifest_digest": node.manifest.digest(),
                   "onion_address": None}  # fmt: skip
        answer = node.answer(Challenge(challenge["public_key"], challenge["purpose"],
                                       challenge["nonce"], challenge["issued_at"],
                                       challenge["expires_at"]), details)  # fmt: skip
        reply = httpx.post(f"{base}/v1/nodes/register", json={
            "public_key": node.public_key, "challenge_nonce": challenge["nonce"],
            "signature": answer, "ln_node_uri": node.ln_node_uri,
            "ln_signature": node.ln_key.sign_registration(node.public_key, challenge["nonce"]),
            "manifest_envelope": base64.b64encode(node.manifest_envelope(clock.now())).decode(),
        })  # fmt: skip
        assert reply.status_code == 201, reply.text
        over_grpc = coordinator.stub.StakeStatus(pb.StakeStatusRequest(node_id=node.node_id))
        assert over_grpc.status == "active"
        assert (tmp_path / "l402.secret").stat().st_mode & 0o777 == 0o600
    finally:
        api.stop()
        coordinator.stop()


def test_the_openapi_document_validates_against_the_official_3_1_schema() -> None:
    import jsonschema_rs
    from schemathesis.specs.openapi.definitions import OPENAPI_31

    errors = [str(e) for e in jsonschema_rs.validator_for(OPENAPI_31).iter_errors(openapi_v1())]
    assert errors == []


@given(text=st.text(), ascii_only=st.booleans())
def test_a_body_the_surrogate_scan_passes_holds_no_surrogate(text: str, ascii_only: bool) -> None:
    raw = json.dumps({"text": text}, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if not app_module._may_hold_surrogates(raw):
        json.dumps(json.loads(raw), ensure_ascii=False).encode("utf-8")  # never raises
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert app_module._may_hold_surrogates(raw)
