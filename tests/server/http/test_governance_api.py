"""The governance and treasury endpoints: signed statements to a broadcast transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from owm_adapters.treasury.wallet import sign_with_key
from owm_core.coordination.governance_log import GovernanceLogEntry, verify_log
from owm_core.identity.envelopes import to_bytes
from owm_core.identity.keys import Identity
from owm_server.http.app import create_app
from tests.governance_keys import (
    HOLDER_IDS,
    HOLDER_SECRETS,
    MAINTAINERS,
    STRANGER,
    statement,
)
from tests.server.harness import StepClock
from tests.server.http.governed import PAYEE, governed_services

T0 = 1_800_000_000
DAY = 86_400


class Api:
    def __init__(self, client: TestClient, clock: StepClock, headers: dict[str, str]) -> None:
        self.client, self.clock, self.headers = client, clock, headers

    def act(self, who: Identity, action: str, pid: str = "", **args: Any) -> Any:
        envelope = statement(who, action, pid, self.clock.now(), **args)
        return self.client.post(
            "/v1/governance/statements", content=to_bytes(envelope),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    clock = StepClock(T0)
    services = governed_services(tmp_path, clock)
    client = TestClient(create_app(services), raise_server_exceptions=False)
    _key, secret = services.access.create_api_key("alice")
    yield Api(client, clock, {"Authorization": f"Bearer {secret}"})
    client.close()


def test_a_treasury_proposal_is_paid_through_the_api_and_the_log_verifies(api: Api) -> None:
    created = api.act(
        MAINTAINERS[0], "propose", title="Audit", description="An audit.", type="treasury",
        implementation_plan="Pay on delivery.", requested_sat=20_000_000, payout_address=PAYEE,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    pid = created.json()["proposal"]["proposal_id"]
    for holder in HOLDER_IDS:
        assert api.act(holder, "ack", pid).status_code == 201
    api.clock.advance(14 * DAY)
    assert api.act(MAINTAINERS[1], "close", pid, outcome="accepted").status_code == 201
    assert api.act(HOLDER_IDS[0], "psbt_create", pid).status_code == 201
    exported = api.client.get(f"/v1/treasury/psbts/{pid}", headers=api.headers).json()["psbt"]
    for secret in HOLDER_SECRETS[:3]:
        signed = sign_with_key(exported, secret)
        reply = api.client.post(f"/v1/treasury/psbts/{pid}/signatures", json={"psbt": signed})
        assert reply.status_code == 201, reply.text
    assert len(reply.json()["spend"]["signers"]) == 3
    done = api.act(MAINTAINERS[0], "execute", pid)
    assert done.status_code == 201, done.text
    txid = done.json()["proposal"]["txid"]
    shown = api.client.get(f"/v1/governance/proposals/{pid}", headers=api.headers).json()
    assert shown["status"] == "executed" and shown["spend"]["txid"] == txid
    assert shown["explorer_url"] == f"https://mempool.space/tx/{txid}"
    wallet = api.client.get("/v1/treasury", headers=api.headers).json()
    assert wallet["descriptor"].startswith("wsh(sortedmulti(3,")
    assert [c["txid"] for c in wallet["coins"]] == [txid]
    log = api.client.get("/v1/governance/log?limit=500").json()
    entries = [GovernanceLogEntry.from_dict(e) for e in log["entries"]]
    assert verify_log(entries, log["coordinator_key"]).ok
    assert entries[-1].detail["txid"] == txid


def test_bad_input_is_a_problem_document_naming_the_field(api: Api) -> None:
    reply = api.act(MAINTAINERS[0], "propose", title="t", description="d", type="policy",
                    implementation_plan="p", requested_sat=-1)  # fmt: skip
    assert reply.status_code == 422
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["field"] in ("body.args.requested_sat", "body.body.args.requested_sat")
    wrong = api.client.post("/v1/treasury/psbts/prop_x/signatures", json={"psbt": 5})
    assert wrong.status_code == 422 and wrong.json()["field"].endswith("psbt")


def test_a_stranger_and_a_holder_acting_as_maintainer_are_forbidden(api: Api) -> None:
    refused = api.act(STRANGER, "propose", title="t", description="d", type="policy",
                      implementation_plan="p")  # fmt: skip
    assert refused.status_code == 403 and refused.json()["code"] == "role-required"
    pid = api.act(MAINTAINERS[0], "propose", title="t", description="d", type="policy",
                  implementation_plan="p").json()["proposal"]["proposal_id"]  # fmt: skip
    extend = api.act(HOLDER_IDS[0], "extend", pid, deadline_at=T0 + 10 * DAY)
    assert extend.status_code == 403
    log = api.client.get("/v1/governance/log").json()["entries"]
    assert [e["action"] for e in log] == ["propose"]


def test_each_key_is_rate_limited(api: Api) -> None:
    pid = api.act(MAINTAINERS[0], "propose", title="t", description="d", type="policy",
                  implementation_plan="p").json()["proposal"]["proposal_id"]  # fmt: skip
    codes = [api.act(MAINTAINERS[0], "comment", pid, text=f"c{i}").status_code for i in range(20)]
    assert codes[:19] == [201] * 19 and codes[19] == 429
    assert api.act(MAINTAINERS[1], "comment", pid, text="other key").status_code == 201


def test_an_api_key_proposal_is_logged_with_its_owner(api: Api) -> None:
    body = {"title": "t", "description": "d", "type": "policy", "implementation_plan": "p"}
    created = api.client.post("/v1/governance/proposals", json=body, headers=api.headers)
    assert created.status_code == 201
    entry = api.client.get("/v1/governance/log").json()["entries"][0]
    assert entry["actor"] == "api:alice" and entry["statement"] is None
