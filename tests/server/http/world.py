"""A coordinator's public API over in-memory repositories and the embedded Lightning ledger,
and clients that talk to it like API consumers and node operators do."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import attrs
from starlette.testclient import TestClient

from owm_adapters.bootstrap.api import build_api
from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.settings import CoordinatorSettings
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.api import ApiConfig, ApiServices
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.services.workers import Workers
from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.access import l402
from owm_core.access.api_keys import Plan
from owm_core.access.callers import signed_request_message
from owm_core.coordination.challenges import Challenge, ChallengePurpose
from owm_core.governance.github_app import parse_webhook
from owm_server.http.app import create_app
from tests.server.harness import T1_STAKE_SAT, SimNode, StepClock

T0 = 1_800_000_000
MAINTAINER = "maintainer"
"""The API key owner a world's API lets open treasury-funded bounties."""


@attrs.define
class World:
    """Everything one API test needs; ``client`` is a starlette TestClient on the app."""

    services: ApiServices
    repos: MemoryRepositories
    ledger: SimLedger
    treasury: str
    clock: StepClock
    client: TestClient
    #: The coordinator's background workers (not started by the world).
    workers: Workers | None = None

    def serve(self, **changes: Any) -> None:
        """Serve the API again with ``changes`` to its (frozen) services, e.g. ``fl=None``: the
        same store, clock and capabilities, another app and client."""
        self.client.close()
        self.services = attrs.evolve(self.services, **changes)
        self.client = _client(self.services)

    def api_key(self, owner: str = "acme", plan: Plan = Plan.FREE) -> dict[str, str]:
        """Headers carrying a fresh API key of ``plan``."""
        _key, secret = self.services.access.create_api_key(owner, plan)
        return {"Authorization": f"Bearer {secret}"}

    def l402_token(self, payer: str = "payer") -> dict[str, str]:
        """Headers carrying an L402 token whose invoice ``payer`` (a new ledger node) paid:
        24 hours of commercial access for the price of one invoice (10 sat by default)."""
        challenge = self.client.get("/v1/stake/requirements")
        offer = l402.parse_challenge(challenge.headers["WWW-Authenticate"])
        node = self.ledger.add_node(payer)
        self.ledger.open_channel(node, self.treasury, 1_000_000)
        paid = self.ledger.lightning(payer).pay(offer.invoice, max_fee_msat=10_000, timeout_s=5)
        assert paid.preimage is not None
        credential = l402.Credential(offer.macaroon, bytes.fromhex(paid.preimage))
        return {"Authorization": l402.format_authorization(credential)}

    def install_app(self, repository: str, installation_id: int = 1) -> None:
        """Store a webhook delivery from ``repository`` under ``installation_id``: the GitHub
        App is installed there (bounties are opened only on such repositories)."""
        raw = json.dumps({"repository": {"full_name": repository},
                          "installation": {"id": installation_id}}).encode()  # fmt: skip
        delivery = "d-" + os.urandom(8).hex()
        self.repos.webhook_events.add(parse_webhook(delivery, "ping", raw, self.clock.now()))

    def node(self, stake_sat: int = T1_STAKE_SAT) -> SimNode:
        """A node whose stake channel with the treasury is open (not yet registered)."""
        node = SimNode.create()
        if stake_sat:
            self.ledger.open_channel(
                self.treasury, node.ln_pubkey, 2 * stake_sat, push_sat=stake_sat
            )
        return node

    def challenge(self, node: SimNode, purpose: ChallengePurpose) -> Challenge:
        reply = self.client.post(
            "/v1/nodes/challenge", json={"public_key": node.public_key, "purpose": purpose.value}
        )
        assert reply.status_code == 200, reply.text
        c = reply.json()
        return Challenge(c["public_key"], c["purpose"], c["nonce"], c["issued_at"], c["expires_at"])

    def registration(self, node: SimNode) -> dict[str, Any]:
        """The body of POST /v1/nodes/register, with a fresh challenge answered; from now on
        ``node`` signs its envelopes for this world's coordinator (SRS-SEC-03)."""
        node.coordinator = self.services.coordinator.sealing.public_key_hex
        challenge = self.challenge(node, ChallengePurpose.REGISTER)
        details = {
            "ln_node_uri": node.ln_node_uri,
            "manifest_digest": node.manifest.digest(),
            "onion_address": None,
        }
        envelope = node.manifest_envelope(self.clock.now())
        return {
            "public_key": node.public_key,
            "challenge_nonce": challenge.nonce,
            "signature": node.answer(challenge, details),
            "manifest_envelope": base64.b64encode(envelope).decode(),
            "ln_node_uri": node.ln_node_uri,
            "ln_signature": node.ln_key.sign_registration(node.public_key, challenge.nonce),
        }

    def register(self, node: SimNode | None = None) -> SimNode:
        node = node or self.node()
        reply = self.client.post("/v1/nodes/register", json=self.registration(node))
        assert reply.status_code == 201, reply.text
        return node

    def signed(
        self, node: SimNode, method: str, path: str, body: bytes = b"", *, for_key: str = ""
    ) -> dict[str, str]:
        """The signature headers of one request by ``node``'s key, for this coordinator (or the
        one whose public key is ``for_key``)."""
        nonce = os.urandom(16).hex()
        at = self.clock.now()
        key = for_key or self.services.coordinator.sealing.public_key_hex
        message = signed_request_message(key, method, path, at, nonce, body)
        return {
            "X-OWM-Node-Key": node.public_key,
            "X-OWM-Timestamp": str(at),
            "X-OWM-Nonce": nonce,
            "X-OWM-Signature": node.identity.sign(message).hex(),
        }


def build_world(
    tmp_path: Path, config: ApiConfig | None = None, settings: CoordinatorSettings | None = None
) -> Generator[World, None, None]:
    clock = StepClock(T0)
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    treasury = ledger.add_node("treasury")
    repos = memory_repositories()
    coordinator = build_coordinator(
        settings or CoordinatorSettings(),
        store=repos,
        treasury=ledger.lightning("treasury"),
        clock=clock,
        config=ServiceConfig(),
        slashing=False,
    )
    config = config or ApiConfig(cache_ttl_ms=0)
    config = attrs.evolve(config, bounty_maintainers=(*config.bounty_maintainers, MAINTAINER))
    services = build_api(coordinator, l402_secret=b"\x11" * 32, config=config).services
    client = _client(services)
    try:
        yield World(services, repos, ledger, treasury, clock, client, coordinator.workers)
    finally:
        client.close()


def _client(services: ApiServices) -> TestClient:
    # Not entered as a context manager: nothing keeps running between requests, so a world
    # built at import time (the fuzz module) holds no thread if its tests are deselected.
    return TestClient(create_app(services), raise_server_exceptions=False,
                      client=("127.0.0.1", 50000))
