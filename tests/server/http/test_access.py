"""Who may call the API and how often: API keys with the free tier's sliding window
(SRS-API-02), 24 hours of commercial access bought over Lightning with L402 (SRS-API-03), and
node operators' signed requests, exempt from limits on node-management endpoints (SRS 4.8.1)."""

from __future__ import annotations

from owm_core.access import l402
from owm_core.access.api_keys import Plan
from owm_core.access.ratelimit import API_KEY_FREE_TIER
from owm_core.identity.keys import Identity
from tests.server.http.world import World

READ = "/v1/stake/requirements"


def test_an_api_key_is_accepted_as_bearer_token_or_x_api_key(world: World) -> None:
    bearer = world.api_key()
    secret = bearer["Authorization"].removeprefix("Bearer ")
    assert world.client.get(READ, headers=bearer).status_code == 200
    assert world.client.get(READ, headers={"X-API-Key": secret}).status_code == 200


def test_an_unknown_or_revoked_key_is_a_401_problem(world: World) -> None:
    key, secret = world.services.access.create_api_key("acme")
    world.repos.api_keys.revoke(key.key_id)
    for headers in ({"Authorization": f"Bearer {secret}"}, {"X-API-Key": "owm_guess"}):
        reply = world.client.get(READ, headers=headers)
        assert reply.status_code == 401
        assert reply.json()["type"] == "https://owm.network/problems/signature-invalid"
    assert world.client.get(READ, headers={"Authorization": "Basic eDp5"}).status_code == 401


def test_the_101st_request_of_a_day_on_the_free_tier_is_refused_with_retry_after(
    world: World,
) -> None:
    keys = world.api_key()
    for i in range(API_KEY_FREE_TIER.limit):
        reply = world.client.get(READ, headers=keys)
        assert reply.status_code == 200, i
        world.clock.advance(60)
    assert reply.headers["RateLimit-Remaining"] == "0"
    refused = world.client.get(READ, headers=keys)
    assert refused.status_code == 429
    problem = refused.json()
    assert problem["type"] == "https://owm.network/problems/rate-limited"
    first_request_frees_at = 86_400 - 100 * 60
    assert problem["retry_after_s"] == first_request_frees_at
    assert refused.headers["Retry-After"] == str(first_request_frees_at)
    assert refused.headers["X-OWM-Model-Version"] == "none"
    other = world.api_key(owner="someone-else")
    assert world.client.get(READ, headers=other).status_code == 200
    world.clock.advance(first_request_frees_at)
    assert world.client.get(READ, headers=keys).status_code == 200


def test_commercial_keys_are_not_limited(world: World) -> None:
    keys = world.api_key(plan=Plan.COMMERCIAL)
    for _ in range(API_KEY_FREE_TIER.limit + 5):
        assert world.client.get(READ, headers=keys).status_code == 200


def test_paying_the_l402_invoice_unlocks_24_hours_of_access(world: World) -> None:
    challenge = world.client.get(READ)
    assert challenge.status_code == 402
    assert challenge.json()["type"] == "https://owm.network/problems/payment-required"
    offer = l402.parse_challenge(challenge.headers["WWW-Authenticate"])
    assert offer.invoice == challenge.json()["invoice"]

    payer = world.ledger.add_node("payer")
    world.ledger.open_channel(payer, world.treasury, 1_000_000)
    paid = world.ledger.lightning("payer").pay(offer.invoice, max_fee_msat=10_000, timeout_s=5)
    assert paid.preimage is not None
    credential = l402.Credential(offer.macaroon, bytes.fromhex(paid.preimage))
    headers = {"Authorization": l402.format_authorization(credential)}

    for _ in range(API_KEY_FREE_TIER.limit + 5):
        assert world.client.get(READ, headers=headers).status_code == 200
    world.clock.advance(86_400 - 1)
    assert world.client.get(READ, headers=headers).status_code == 200
    world.clock.advance(1)
    expired = world.client.get(READ, headers=headers)
    assert expired.status_code == 401
    assert expired.json()["code"] == "l402-invalid"


def test_an_l402_token_whose_invoice_is_unpaid_or_preimage_wrong_is_refused(world: World) -> None:
    offer = l402.parse_challenge(world.client.get(READ).headers["WWW-Authenticate"])
    guessed = l402.Credential(offer.macaroon, b"\x01" * 32)
    reply = world.client.get(READ, headers={"Authorization": l402.format_authorization(guessed)})
    assert reply.status_code == 401
    assert "preimage" in reply.json()["detail"]
    forged = l402.mint_token(b"\x00" * 32, b"\x02" * 32, b"\x03" * 32, service="owm-api",
                             valid_until=2**40)  # fmt: skip
    credential = l402.Credential(forged, b"\x04" * 32)
    reply = world.client.get(READ, headers={"Authorization": l402.format_authorization(credential)})
    assert reply.status_code == 401


def test_node_operators_are_exempt_from_limits_on_node_management_only(world: World) -> None:
    node = world.register()
    status = f"/v1/nodes/{node.node_id}/status"
    for _ in range(API_KEY_FREE_TIER.limit + 5):
        reply = world.client.get(status, headers=world.signed(node, "GET", status))
        assert reply.status_code == 200
        assert "RateLimit-Remaining" not in reply.headers
    for _ in range(API_KEY_FREE_TIER.limit):
        assert world.client.get(READ, headers=world.signed(node, "GET", READ)).status_code == 200
    assert world.client.get(READ, headers=world.signed(node, "GET", READ)).status_code == 429


def test_a_signed_request_cannot_be_replayed_moved_or_made_by_a_stranger(world: World) -> None:
    node = world.register()
    path = f"/v1/nodes/{node.node_id}/earnings"
    headers = world.signed(node, "GET", path)
    assert world.client.get(path, headers=headers).status_code == 200
    replay = world.client.get(path, headers=headers)
    assert replay.status_code == 401 and replay.json()["code"] == "replay-rejected"
    moved = world.client.get(path + "?limit=5", headers=world.signed(node, "GET", path))
    assert moved.status_code == 401 and moved.json()["code"] == "signature-invalid"
    stale = world.signed(node, "GET", path)
    world.clock.advance(301)
    assert world.client.get(path, headers=stale).status_code == 401
    stranger = world.node()
    reply = world.client.get(path, headers=world.signed(stranger, "GET", path))
    assert reply.status_code == 401


def test_a_request_signed_for_another_coordinator_is_refused_naming_this_ones_key(
    world: World,
) -> None:
    node = world.register()
    path = f"/v1/nodes/{node.node_id}/earnings"
    testnet = Identity.from_seed(b"\x09" * 32).public_key_hex
    reply = world.client.get(path, headers=world.signed(node, "GET", path, for_key=testnet))
    assert reply.status_code == 401 and reply.json()["code"] == "signature-invalid"
    assert world.services.coordinator.sealing.public_key_hex in reply.json()["detail"]


def test_node_only_endpoints_refuse_api_keys(world: World) -> None:
    reply = world.client.get("/v1/payments/history", headers=world.api_key())
    assert reply.status_code == 401
    assert reply.json()["code"] == "unauthenticated"
