"""Every /v1 endpoint's real behaviour (SRS 4.8.2), over the in-memory store and the embedded
Lightning ledger; node registration goes through the coordinator's own use cases."""

from __future__ import annotations

import base64
from pathlib import Path

from owm_adapters.services.api import ApiConfig
from owm_core.coordination.challenges import ChallengePurpose
from owm_core.governance.proposals import DAY_S
from owm_core.identity.envelopes import Envelope, EnvelopeKind, SlashingReversal, seal
from owm_core.identity.keys import Identity
from owm_core.provenance.versions import ProofStatus
from owm_core.stake.channel import StakeStatus
from owm_core.stake.reversals import (
    ReversalCase,
    authorise,
    reversal_entry,
    statements_problem,
)
from owm_core.stake.slashing import SlashingLogEntry, verify_log
from tests.server.http.records import (
    COORDINATOR,
    payment,
    payout,
    release,
    share,
    slashing_entry,
)
from tests.server.http.world import T0, World, build_world

# --------------------------------------------------------------------------- model & provenance


def test_model_versions_list_with_their_ots_status_newest_first(world: World) -> None:
    world.services.releases.publish_release(release("owm-v0.4.1", T0 - 100, ProofStatus.CONFIRMED))
    world.services.releases.publish_release(release("owm-v0.4.2", T0, ProofStatus.PENDING))
    reply = world.client.get("/v1/model/versions", headers=world.api_key())
    assert reply.status_code == 200
    versions = reply.json()["versions"]
    assert [(v["id"], v["ots_status"], v["ots_verified"]) for v in versions] == [
        ("owm-geo@owm-v0.4.2", "pending", False),
        ("owm-geo@owm-v0.4.1", "confirmed", True),
    ]
    assert reply.headers["X-OWM-Model-Version"] == "owm-v0.4.2"
    assert reply.headers["X-OWM-OTS-Verified"] == "false; chain=embedded-regtest"
    assert {v["ots_chain"] for v in versions} == {"embedded-regtest"}


def test_a_version_and_its_ots_proof_file_can_be_downloaded(world: World) -> None:
    published = release("owm-v1.0.0", T0)
    world.services.releases.publish_release(published)
    keys = world.api_key()
    meta = world.client.get("/v1/model/versions/owm-geo@owm-v1.0.0", headers=keys)
    assert meta.status_code == 200
    assert meta.json()["digest"] == published.version.digest
    proof = world.client.get(meta.json()["ots_proof_url"], headers=keys)
    assert proof.status_code == 200
    assert proof.content == published.ots_proof
    assert proof.headers["content-type"] == "application/vnd.opentimestamps.ots"
    assert "owm-geo_owm-v1.0.0.ots" in proof.headers["content-disposition"]
    assert proof.headers["X-OWM-OTS-Verified"] == "true; chain=embedded-regtest"
    assert meta.json()["ots_chain"] == "embedded-regtest"


def test_an_unknown_or_unstamped_version_is_a_404_problem(world: World) -> None:
    world.services.releases.publish_release(release("owm-v0.1.0", T0, ProofStatus.NONE))
    keys = world.api_key()
    unstamped = world.client.get("/v1/model/versions/owm-geo@owm-v0.1.0/ots", headers=keys)
    unknown = world.client.get("/v1/model/versions/owm-geo@owm-v9.9.9", headers=keys)
    for reply in (unstamped, unknown):
        assert reply.status_code == 404
        assert reply.json()["type"] == "https://owm.network/problems/not-found"


# --------------------------------------------------------------------------- nodes


def test_a_node_registers_over_http_with_the_same_use_case_as_grpc(world: World) -> None:
    node = world.node()
    reply = world.client.post("/v1/nodes/register", json=world.registration(node))
    assert reply.status_code == 201
    assert reply.json()["node_id"] == node.node_id
    assert reply.json()["stake_status"] == "active"
    stored = world.repos.stakes.get(node.public_key)
    assert stored is not None and stored.status is StakeStatus.ACTIVE
    status = world.client.get(f"/v1/nodes/{node.node_id}/status", headers=world.api_key())
    assert status.json()["status"] == "online"


def test_registration_without_enough_stake_says_how_much_is_required(world: World) -> None:
    node = world.node(stake_sat=1_000)
    reply = world.client.post("/v1/nodes/register", json=world.registration(node))
    assert reply.status_code == 409
    assert reply.json()["code"] == "insufficient-stake"
    assert reply.json()["required_sats"] == 100_000
    assert world.repos.nodes.get(node.node_id) is None


def test_a_forged_challenge_answer_is_refused(world: World) -> None:
    node = world.node()
    body = world.registration(node)
    body["signature"] = "00" * 64
    reply = world.client.post("/v1/nodes/register", json=body)
    assert reply.status_code == 401
    assert reply.json()["code"] == "signature-invalid"


def test_a_node_deregisters_with_an_answered_challenge_and_goes_offline(world: World) -> None:
    node = world.register()
    challenge = world.challenge(node, ChallengePurpose.DEREGISTER)
    body = {
        "public_key": node.public_key,
        "challenge_nonce": challenge.nonce,
        "signature": node.answer(challenge, {}),
    }
    reply = world.client.request("DELETE", f"/v1/nodes/{node.node_id}", json=body)
    assert reply.status_code == 200
    assert reply.json()["status"] == "deregistered"
    assert reply.json()["cooldown_until"] is None
    status = world.client.get(f"/v1/nodes/{node.node_id}/status", headers=world.api_key())
    assert status.json()["status"] == "offline"
    again = world.client.request("DELETE", f"/v1/nodes/{node.node_id}", json=body)
    assert again.status_code == 401


def test_a_node_reads_its_own_earnings_but_not_another_nodes(world: World) -> None:
    """Operators audit their earnings (SRS-LN-10): /v1/nodes/{id}/earnings and /v1/payments/history
    list the signing node's own payments, newest first, and never another node's."""
    mine, other = world.register(), world.register()
    world.repos.payments.upsert(payment(1, mine.node_id, T0))
    world.repos.payments.upsert(payment(2, mine.node_id, T0 + 5))
    world.repos.payments.upsert(payment(3, other.node_id, T0))
    path = f"/v1/nodes/{mine.node_id}/earnings"
    reply = world.client.get(path, headers=world.signed(mine, "GET", path))
    assert reply.status_code == 200
    assert [p["task_id"] for p in reply.json()["payments"]] == ["task-2", "task-1"]
    foreign = world.client.get(path, headers=world.signed(other, "GET", path))
    assert foreign.status_code == 403
    history = world.client.get(
        "/v1/payments/history", headers=world.signed(mine, "GET", "/v1/payments/history")
    )
    assert history.status_code == 200
    assert len(history.json()["payments"]) == 2


def test_unknown_nodes_are_404_problems(world: World) -> None:
    keys = world.api_key()
    for path in ("/v1/nodes/{}/status", "/v1/stake/nodes/{}", "/v1/mining/nodes/{}"):
        reply = world.client.get(path.format("n" + "0" * 40), headers=keys)
        assert reply.status_code == 404, path
        assert reply.headers["content-type"] == "application/problem+json"


# --------------------------------------------------------------------------- network & stake


def test_network_stats_count_nodes_and_the_node_list_reveals_no_identity(world: World) -> None:
    nodes = [world.register(), world.register()]
    world.clock.advance(1_000)
    keys = world.api_key()
    stats = world.client.get("/v1/network/stats", headers=keys).json()
    assert stats["nodes_total"] == 2
    assert stats["by_status"]["offline"] == 2
    assert stats["staked_sat"] == 200_000
    listed = world.client.get("/v1/network/nodes", headers=keys)
    text = listed.text
    assert len(listed.json()["nodes"]) == 2
    for node in nodes:
        assert node.node_id not in text and node.public_key not in text
        assert node.ln_pubkey not in text
    online = world.client.get("/v1/network/nodes?status=online", headers=keys)
    assert online.json()["nodes"] == []


def test_stake_requirements_and_a_nodes_stake_with_its_channel(world: World) -> None:
    node = world.register()
    keys = world.api_key()
    tiers = world.client.get("/v1/stake/requirements", headers=keys).json()["tiers"]
    assert tiers == {"t1": 100_000, "t2": 500_000, "t3": 2_000_000}
    stake = world.client.get(f"/v1/stake/nodes/{node.node_id}", headers=keys).json()
    assert stake["status"] == "active"
    assert stake["capacity_sat"] == 100_000
    assert stake["channel_point"]


def test_the_public_slashing_log_is_served_verbatim_and_still_verifies(world: World) -> None:
    first = slashing_entry(None, "n" + "1" * 40, T0)
    second = slashing_entry(first, "n" + "2" * 40, T0 + 10)
    world.repos.slashing_log.append(first)
    world.repos.slashing_log.append(second)
    reply = world.client.get("/v1/network/slashing-log", headers=world.api_key())
    entries = reply.json()["entries"]
    assert entries == [first.to_dict(), second.to_dict()]
    parsed = [SlashingLogEntry.from_dict(e) for e in entries]
    assert verify_log(parsed, COORDINATOR.public_key_hex).ok
    tail = world.client.get("/v1/network/slashing-log?start=1", headers=world.api_key())
    assert tail.json()["entries"] == [second.to_dict()]


def test_the_statements_behind_a_reversal_are_published_like_the_log(world: World) -> None:
    """Anyone who may read the slashing log may read the maintainers' statements behind a
    reversal, and they check out against the entry; an entry not reversed is a 404 problem."""
    slashed = slashing_entry(None, "n" + "1" * 40, T0)
    world.repos.slashing_log.append(slashed)
    reviewers = [Identity.from_seed(bytes([0x50 + i]) * 32) for i in range(2)]
    statements = [
        seal(m, EnvelopeKind.SLASHING_REVERSAL, SlashingReversal(0, slashed.node_id),
             bytes([i]) * 16, T0 + 5, audience=COORDINATOR.public_key_hex)
        for i, m in enumerate(reviewers)
    ]  # fmt: skip
    keys = world.api_key()
    missing = world.client.get("/v1/slashing/reversals/0", headers=keys)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["detail"] == "slashing-log entry 0 is not reversed"
    case = ReversalCase(
        log=[slashed], maintainer_keys=frozenset(m.public_key_hex for m in reviewers),
        acknowledged_by=frozenset(), coordinator_key=COORDINATOR.public_key_hex,
    )  # fmt: skip
    for statement in statements:
        world.repos.slashing_evidence.add_reversal_statement(0, statement, T0 + 6)
    entry = reversal_entry(COORDINATOR, slashed, authorise(case, 0, slashed.node_id, statements),
                           T0 + 7)  # fmt: skip
    world.repos.slashing_log.append(entry)
    world.repos.slashing_evidence.count_reversal_statements(
        [s.signature for s in statements], entry.index
    )  # as the coordinator does in the reversal's transaction
    assert world.client.get("/v1/slashing/reversals/0").status_code == 402  # as the log
    reply = world.client.get("/v1/slashing/reversals/0", headers=keys)
    assert reply.status_code == 200
    published = reply.json()
    assert (published["log_index"], published["reversed_by"]) == (0, 1)
    assert published["log_entry"] == entry.to_dict()
    envelopes = [Envelope(**e) for e in published["statements"]]
    assert statements_problem(entry, envelopes, COORDINATOR.public_key_hex,
                              case.maintainer_keys) is None  # fmt: skip
    assert world.client.get("/v1/slashing/reversals/x", headers=keys).status_code == 422


# --------------------------------------------------------------------------- payments & mining


def test_an_invoice_for_api_access_is_a_real_bolt11_with_its_macaroon(world: World) -> None:
    reply = world.client.get("/v1/payments/invoice")
    assert reply.status_code == 200
    body = reply.json()
    assert body["invoice"].startswith("lnbcrt")
    assert body["valid_for_s"] == 86_400
    invoice = world.services.lightning.lookup_invoice(body["payment_hash"])
    assert invoice.bolt11 == body["invoice"]
    assert base64.b64decode(body["macaroon"])


def test_mining_stats_node_and_payouts_come_from_shares_and_recorded_payouts(world: World) -> None:
    miner = world.register()
    now = world.clock.now()
    world.repos.shares.add(share(1, miner.node_id, 3_600), now - 10)
    world.repos.shares.add(share(2, "external-asic", 3_600, is_block=True), now - 20)
    world.repos.mining_payouts.add(payout(1, now - 5, miner.node_id, 12_000))
    world.repos.mining_payouts.add(payout(2, now - 5, None, 3_000))
    keys = world.api_key()
    stats = world.client.get("/v1/mining/stats", headers=keys).json()
    assert stats["miners_24h"] == 2
    assert stats["blocks_30d"] == 1
    assert stats["hashrate_1h_hps"] == 2 * 3_600 * 2**32 // 3_600
    assert stats["paid_sat_total"] == 15_000
    mine = world.client.get(f"/v1/mining/nodes/{miner.node_id}", headers=keys).json()
    assert mine["shares_24h"] == 1 and mine["paid_sat"] == 12_000
    payouts = world.client.get("/v1/mining/payouts", headers=keys).json()["payouts"]
    assert {p["recipient"] for p in payouts} == {"miner", "treasury"}


def test_the_mining_dashboard_websocket_pushes_live_metrics(tmp_path: Path) -> None:
    worlds = build_world(tmp_path, ApiConfig(cache_ttl_ms=0, dashboard_interval_s=0.05))
    world = next(worlds)
    with world.client.websocket_connect("/v1/mining/dashboard") as socket:
        assert (b"x-owm-model-version", b"none") in (socket.extra_headers or [])
        first = socket.receive_json()
        assert first["type"] == "pool_metrics"
        assert first["pool"]["shares_24h"] == 0
        world.repos.shares.add(share(7, "miner-x", 60), world.clock.now())
        second = socket.receive_json()
        assert second["pool"]["shares_24h"] == 1
        assert second["hashrate_by_miner_1h"] == {"miner-x": 60 * 2**32 // 3_600}
    frame = world.client.get("/v1/mining/dashboard", headers=world.api_key())
    assert frame.json()["pool"]["shares_24h"] == 1
    worlds.close()


# --------------------------------------------------------------------------- governance


def test_a_proposal_is_submitted_listed_and_commented_in_its_period(world: World) -> None:
    keys = world.api_key(owner="alice")
    body = {
        "title": "Raise the t1 stake",
        "description": "Sybil resistance.",
        "type": "policy",
        "implementation_plan": "Change StakeRequirements.",
    }
    created = world.client.post("/v1/governance/proposals", json=body, headers=keys)
    assert created.status_code == 201
    proposal = created.json()
    assert proposal["author"] == "alice"
    assert proposal["comment_deadline_at"] - proposal["submitted_at"] == 7 * DAY_S
    path = f"/v1/governance/proposals/{proposal['proposal_id']}/comment"
    commented = world.client.post(path, json={"text": "+1"}, headers=keys)
    assert commented.status_code == 201
    assert commented.json()["comments"][0]["text"] == "+1"
    listed = world.client.get("/v1/governance/proposals?status=open", headers=keys).json()
    assert [p["proposal_id"] for p in listed["proposals"]] == [proposal["proposal_id"]]
    world.clock.advance(7 * DAY_S)
    late = world.client.post(path, json={"text": "too late"}, headers=keys)
    assert late.status_code == 409
    assert late.json()["code"] == "policy-violation"


def test_a_treasury_proposal_without_an_amount_names_the_field(world: World) -> None:
    body = {
        "title": "Fund a GPU",
        "description": "x",
        "type": "treasury",
        "implementation_plan": "y",
    }
    reply = world.client.post("/v1/governance/proposals", json=body, headers=world.api_key())
    assert reply.status_code == 422
    assert reply.json()["field"] == "requested_sat"


def test_commenting_on_an_unknown_proposal_is_a_404(world: World) -> None:
    reply = world.client.post(
        "/v1/governance/proposals/prop_nope/comment", json={"text": "?"}, headers=world.api_key()
    )
    assert reply.status_code == 404


# --------------------------------------------------------------------------- GitHub & query


def test_bounties_are_created_and_listed(world: World) -> None:
    keys = world.api_key(owner="maintainer")
    world.install_app("owm-network/owm")
    body = {"repository": "owm-network/owm", "issue_number": 42, "title": "Fix", "amount_sat": 5}
    created = world.client.post("/v1/github/bounties", json=body, headers=keys)
    assert created.status_code == 201
    assert created.json()["created_by"] == "maintainer"
    listed = world.client.get("/v1/github/bounties", headers=keys).json()["bounties"]
    assert [b["bounty_id"] for b in listed] == [created.json()["bounty_id"]]
    assert world.client.get("/v1/github/bounties?status=paid", headers=keys).json() == {
        "bounties": []
    }


def test_an_analysis_request_is_queued_and_reports_its_real_state(world: World) -> None:
    keys = world.api_key()
    queued = world.client.post(
        "/v1/github/analyze", json={"repository": "owm-network/owm"}, headers=keys
    )
    assert queued.status_code == 202
    location = queued.headers["location"]
    state = world.client.get(location, headers=keys).json()
    assert state["state"] == "queued"
    assert state["result"] is None
    assert world.client.get("/v1/github/analysis/ana_none", headers=keys).status_code == 404


def test_query_endpoints_answer_503_until_the_conglomerate_exists(world: World) -> None:
    keys = world.api_key()
    replies = [
        world.client.post("/v1/query", json={"query": "hi"}, headers=keys),
        world.client.post("/v1/query/stream", json={"query": "hi"}, headers=keys),
        world.client.get("/v1/query/qry_1", headers=keys),
    ]
    for reply in replies:
        assert reply.status_code == 503
        assert reply.json()["code"] == "conglomerate-unavailable"
        assert "answer" not in reply.json()
