"""Every status code the OpenAPI document promises is one the server really produces.

For each operation, the generic statuses (401 bad credential, 402 no credential, 429 free tier
used up or, node-signed, a full replay guard, 422/400/415/413 bad input, 404 for ids the router
cannot match) are provoked mechanically from the operation's own metadata; the
operation-specific ones (200/201/202, 404, 403, 409, 503, …) by one real scenario each. The
observed set must equal the documented set, operation by operation."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from owm_adapters.services.api import ApiConfig
from owm_adapters.services.api.access import ApiAccess
from owm_core.access.ratelimit import RateLimit
from owm_core.coordination.challenges import ChallengePurpose
from owm_core.errors import RateLimited
from owm_server.http import v1
from owm_server.http.app import create_app, openapi_v1
from owm_server.http.contract import Access, Operation
from owm_server.http.serve import ApiServer, HttpLimits
from tests.server.http.data_scenarios import DATA_SCENARIOS, DATASET
from tests.server.http.fl_scenarios import FL_SCENARIOS
from tests.server.http.github_scenarios import GITHUB_SCENARIOS
from tests.server.http.records import release
from tests.server.http.slashing_scenarios import SLASHING_SCENARIOS
from tests.server.http.treasury_scenarios import TREASURY_SCENARIOS
from tests.server.http.world import World, build_world
from tests.server.query_harness import query_service_without_data

GOOD_BODIES: dict[str, dict[str, Any]] = {
    "query": {"query": "hi"},
    "queryStream": {"query": "hi"},
    "analyzeRepository": {"repository": "owm-network/owm"},
    "createBounty": {"repository": "a/b", "issue_number": 1, "title": "t", "amount_sat": 1},
    "submitProposal": {
        "title": "t",
        "description": "d",
        "type": "technical",
        "implementation_plan": "p",
    },
    "commentProposal": {"text": "+1"},
    "setDataPayee": {"ln_node": "02" + "ab" * 32},
    "submitDataset": DATASET,
}


@pytest.fixture
def small_world(tmp_path: Path) -> Iterator[World]:
    yield from build_world(tmp_path, ApiConfig(cache_ttl_ms=0, free_tier=RateLimit(1, 86_400)))


class Probe:
    """Sends requests for one operation and records the statuses it gets."""

    def __init__(self, world: World, op: Operation, ids: dict[str, Any]) -> None:
        self.world, self.op, self.ids = world, op, ids
        self.seen: set[int] = set()

    def url(self, **overrides: str) -> str:
        values = {**self.ids, **overrides}
        return "/v1" + self.op.path.format(**{p.name: values[p.name] for p in self.op.params
                                              if p.location == "path"})  # fmt: skip

    def send(
        self, url: str | None = None, headers: dict[str, str] | None = None, body: Any = None,
        raw: bytes | None = None, content_type: str = "application/json",
    ) -> httpx.Response:  # fmt: skip
        url = url or self.url()
        if raw is None and body is None and self.op.body is not None:
            body = GOOD_BODIES.get(self.op.operation_id, {})
        content = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = dict(headers or {})
        if content is not None:
            all_headers.setdefault("content-type", content_type)
        if self.op.access is Access.NODE and headers is None:
            me = self.ids["me"]
            all_headers.update(self.world.signed(me, self.op.method, url, content or b""))
        reply: httpx.Response = self.world.client.request(
            self.op.method, url, headers=all_headers, content=content
        )
        self.seen.add(reply.status_code)
        return reply


def generic(probe: Probe) -> None:
    op, world = probe.op, probe.world
    has_plain_params = any(p.convertor is None for p in op.params)
    if op.access is Access.NODE:
        stranger = world.node()
        probe.send(headers=world.signed(stranger, op.method, probe.url()))
    elif op.access is not Access.PUBLIC:
        probe.send(headers={"Authorization": "Bearer owm_wrong"})
    if op.access in {Access.CLIENT, Access.NODE_MANAGEMENT}:
        probe.send(headers={})
        keys = world.api_key()
        probe.send(headers=keys)
        probe.send(headers=keys)
    if has_plain_params:
        query = [p for p in op.params if p.location == "query"]
        if query:
            probe.send(url=probe.url() + f"?{query[0].name}=-1")
        else:
            probe.send(url=probe.url(**{p.name: "!" for p in op.params if p.location == "path"}))
    if op.body is not None:  # with a credential: a stranger's body is refused unparsed
        def known() -> dict[str, str] | None:
            return world.api_key() if op.access in {Access.CLIENT, Access.NODE_MANAGEMENT} else None

        probe.send(body={"unexpected": 1}, headers=known())
        probe.send(raw=b"[1]", headers=known())
        probe.send(raw=b"{}", content_type="text/plain", headers=known())
        probe.send(raw=b"{" + b" " * (1 << 20) + b"}", headers=known())
    if any(p.convertor is not None for p in op.params):
        probe.send(url=probe.url(node_id="n-not-an-id"))


CROWDED = "198.51.100.9"
"""The address whose requests to public operations are used up."""


def crowded(probe: Probe) -> None:
    """A public operation asked from an address that used up its requests: the status."""
    access = probe.world.services.access
    with contextlib.suppress(RateLimited):
        while True:
            access.admit_public(CROWDED)
    client = TestClient(create_app(probe.world.services), raise_server_exceptions=False,
                        client=(CROWDED, 40_000))  # fmt: skip
    unnamed = {p.name: "x1" for p in probe.op.params
               if p.location == "path" and p.name not in probe.ids}  # fmt: skip
    with client:
        probe.seen.add(client.request(probe.op.method, probe.url(**unnamed)).status_code)


def guard_full(probe: Probe) -> None:
    """A node-signed request that finds its key's share of the replay guard taken (one nonce a
    window, on an access service built so): the status."""
    w = probe.world
    served = w.services.access
    one_a_window = ApiConfig(cache_ttl_ms=0, signed_per_key=1)
    w.serve(access=ApiAccess(w.repos, w.ledger.lightning("treasury"), w.clock, one_a_window,
                             b"\x11" * 32,
                             coordinator_key=w.services.coordinator.sealing.public_key_hex))
    try:
        probe.send()
        probe.send()
    finally:
        w.serve(access=served)


def late_body(probe: Probe, port: int) -> None:
    """Headers announcing a body that never comes, sent to a real server (the deadline is the
    server's, not the application's): the status it answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"{probe.op.method} {probe.url()} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: 10\r\n\r\n".encode()
        )
        status_line = sock.makefile("rb").readline()
    probe.seen.add(int(status_line.split()[1]))


def register_body(world: World, node: Any) -> dict[str, Any]:
    return world.registration(node)


def deregister_body(world: World, node: Any, valid: bool = True) -> dict[str, Any]:
    challenge = world.challenge(node, ChallengePurpose.DEREGISTER)
    signature = node.answer(challenge, {}) if valid else "00" * 64
    return {"public_key": node.public_key, "challenge_nonce": challenge.nonce,
            "signature": signature}  # fmt: skip


def specific(probe: Probe) -> None:
    """The operation's own statuses: one real scenario each."""
    w, op, ids = probe.world, probe.op, probe.ids
    key = w.api_key()
    other_key = w.api_key()
    name = op.operation_id
    if name == "registerNode":
        probe.send(headers={}, body=w.registration(w.node()))
        bad = w.registration(w.node())
        bad["signature"] = "00" * 64
        probe.send(body=bad)
        probe.send(body=w.registration(w.node(stake_sat=1_000)))
        for _ in range(12):
            if probe.send(body=w.registration(w.node())).status_code == 429:
                break
        w.clock.advance(3_601)  # the registration window (SRS-SEC-04) is free again
        return
    if name == "paymentsInvoice":
        for _ in range(200):
            if probe.send().status_code == 429:
                break
        w.clock.advance(3_601)  # the invoice window is free again
        return
    if name == "deregisterNode":
        leaving = w.register()
        probe.send(url=probe.url(node_id=leaving.node_id), body=deregister_body(w, leaving, False))
        probe.send(url=probe.url(node_id=leaving.node_id), body=deregister_body(w, leaving))
        stranger = w.node()
        probe.send(url=probe.url(node_id=stranger.node_id), body=deregister_body(w, stranger))
        return
    if name in SLASHING_SCENARIOS:  # tests/server/http/slashing_scenarios.py
        return SLASHING_SCENARIOS[name](probe)
    if name in DATA_SCENARIOS:  # tests/server/http/data_scenarios.py
        return DATA_SCENARIOS[name](probe)
    if name in FL_SCENARIOS:  # tests/server/http/fl_scenarios.py
        return FL_SCENARIOS[name](probe)
    if name in TREASURY_SCENARIOS:  # tests/server/http/treasury_scenarios.py
        return TREASURY_SCENARIOS[name](probe)
    if name in GITHUB_SCENARIOS:  # tests/server/http/github_scenarios.py
        return GITHUB_SCENARIOS[name](probe)
    if name == "nodeEarnings":
        probe.send()
        url = probe.url()
        probe.send(headers=w.signed(ids["other"], "GET", url))
        return
    if op.tag == "query":  # without a knowledge base the conglomerate answers 503
        queries = w.services.queries
        w.serve(queries=None)
        probe.send(headers=key)
        w.serve(queries=queries)
    if name == "nodeChallenge":
        probe.send(body={"public_key": ids["me"].public_key, "purpose": "register"})
    elif op.access is Access.NODE:
        probe.send()
    else:
        probe.send(headers=key)
    if "404" in {str(s) for s in op.replies} or 404 in op.replies:
        unknown = {"id": "nobody", "node_id": "n" + "0" * 40, "query_id": "qry_nobody"}
        if name in {"getModelVersion", "getModelVersionProof"}:
            unknown["id"] = "owm-geo@owm-v9.9.9"
        probe.send(url=probe.url(**unknown), headers=other_key)
    if name == "commentProposal":
        w.clock.advance(8 * 86_400)
        probe.send(headers=w.api_key())


def test_every_documented_status_is_produced_and_nothing_else(small_world: World) -> None:
    w = small_world
    w.services.releases.publish_release(release("owm-v1.0.0", w.clock.now()))
    me, other = w.register(), w.register()
    proposal = w.client.post("/v1/governance/proposals", json=GOOD_BODIES["submitProposal"],
                             headers=w.api_key()).json()  # fmt: skip
    analysis = w.client.post("/v1/github/analyze", json=GOOD_BODIES["analyzeRepository"],
                             headers=w.api_key()).json()  # fmt: skip
    ids: dict[str, Any] = {"node_id": me.node_id, "me": me, "other": other,
                           "query_id": "qry_1", "id": "", "log_index": 10**6}  # fmt: skip
    queries = query_service_without_data(w.services.coordinator)
    w.serve(queries=queries)
    queries.ask("hi")  # stored, so GET /v1/query/{id} has one to return
    ids["query_id"] = next(iter(w.repos._state.query_answers))
    per_op_id = {
        "getModelVersion": "owm-geo@owm-v1.0.0",
        "getModelVersionProof": "owm-geo@owm-v1.0.0",
        "getAnalysis": analysis["analysis_id"],
        "commentProposal": proposal["proposal_id"],
    }
    documented = {
        op_id: {int(s) for s in methods[next(iter(methods))]["responses"]}
        for op_id, methods in (
            (next(iter(m.values()))["operationId"], m) for m in openapi_v1()["paths"].values()
        )
    }
    ops = sorted(v1.operations(), key=lambda o: o.operation_id == "commentProposal")
    observed: dict[str, set[int]] = {}
    server = ApiServer(create_app(w.services), "127.0.0.1:0", grace_s=1,
                       limits=HttpLimits(body_timeout_s=0.2))  # fmt: skip
    server.start()
    try:
        for op in ops:
            probe = Probe(w, op, {**ids, "id": per_op_id.get(op.operation_id, "x1")})
            specific(probe)
            generic(probe)
            if op.body is not None:
                late_body(probe, server.port)
            if op.access is Access.PUBLIC:
                crowded(probe)
            if op.access is Access.NODE:
                guard_full(probe)
            observed[op.operation_id] = probe.seen
    finally:
        server.stop(5)
    expected = {op.operation_id: set(op.statuses()) for op in ops}
    assert observed == expected
    assert set(documented) <= set(expected)
