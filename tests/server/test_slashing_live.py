"""Slashing in a running coordinator: gRPC control plane, HTTP API, SQLite store, embedded ledger.

Nodes talk to the coordinator over gRPC like node daemons do; the fake-proof detector, the
slashing service, the public log, the acknowledgement endpoint and the CLI are the real ones
(SRS-STAKE-04..07).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
from click.testing import CliRunner

from owm_adapters.bootstrap.api import build_api
from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.settings import CoordinatorSection, CoordinatorSettings, StakeSection
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.api import ApiConfig, ApiServices
from owm_adapters.services.coordinator.service import CoordinatorService, ServiceConfig
from owm_adapters.services.coordinator.shared import FundingConfig
from owm_adapters.services.slashing import SlashingService
from owm_adapters.storage.sql import open_repositories
from owm_cli.slashing import slashing, slashing_log
from owm_core.identity import envelopes
from owm_core.identity.envelopes import (
    AckVerdict,
    EnvelopeKind,
    MaintainerAcknowledgement,
    SlashingReversal,
)
from owm_core.identity.keys import Identity
from owm_core.nodes.registry import NodeStatus
from owm_core.nodes.tiers import Tier
from owm_core.stake.slashing import SlashingReason
from owm_server.grpc.server import CoordinatorServer
from owm_server.http.app import create_app
from owm_server.http.serve import ApiServer
from owm_server.metrics import stake_figures
from tests.server.harness import (
    OPERATOR,
    T1_STAKE_SAT,
    NodeRoutingStub,
    SimNode,
    StepClock,
    TaskFeed,
    task_request,
)
from tests.tls_support import COORDINATOR_TLS

pytestmark = pytest.mark.timeout(120)

T2_STAKE_SAT = 1_000_000
HONEST, FALSE = b'{"answer": 4}', b'{"answer": 5}'


@attrs.define
class Live:
    tmp: Path
    clock: StepClock
    ledger: SimLedger
    treasury: str
    service: CoordinatorService
    slashing: SlashingService
    services: ApiServices
    stub: pb_grpc.CoordinatorStub
    api_base: str
    maintainer_seeds: list[bytes]
    feeds: dict[str, TaskFeed] = attrs.Factory(dict)

    def join(self, tier: Tier = Tier.T1) -> SimNode:
        node = SimNode.create(tier=tier)
        node.coordinator = self.service.sealing.public_key_hex  # its envelopes are for it
        stake = T1_STAKE_SAT if tier is Tier.T1 else T2_STAKE_SAT
        self.ledger.open_channel(self.treasury, node.ln_pubkey, 2 * stake, push_sat=stake)
        node.register(self.stub, self.clock.now())
        self.feeds[node.node_id] = node.open_stream(self.stub)
        return node

    def run_task(self, task_id: str, outputs: list[tuple[SimNode, bytes]]) -> None:
        """Submit one task; every node commits to its output for its replica, then reveals."""
        key = self.service.sealing.public_key_hex
        self.stub.SubmitTask(task_request(task_id, now=self.clock.now(), coordinator_key=key))
        reveals = []
        for node, output in outputs:
            feed = self.feeds[node.node_id]
            mine: list[str] = []
            for _ in range(50):
                received = feed.wait_for(len(feed.received) + 1, timeout_s=0.1)
                mine = [a.task_id for a in received if a.task_id.startswith(f"{task_id}:")]
                if mine:
                    break
            assert mine, f"{node.node_id} got no replica of {task_id}"
            node.commit(self.stub, mine[0], output, self.clock.now())
            reveals.append((node, mine[0], output))
        coordinator = self.service.sealing.public_key_hex
        for node, replica, output in reveals:
            node.reveal(self.stub, replica, output, self.clock.now(), coordinator)

    @property
    def maintainers(self) -> list[Identity]:
        return [Identity.from_seed(seed) for seed in self.maintainer_seeds]

    def api_key(self) -> str:
        _key, secret = self.services.access.create_api_key("auditor")
        return secret

    def get(self, path: str) -> Any:
        request = urllib.request.Request(
            self.api_base + path, headers={"Authorization": f"Bearer {self.api_key()}"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def post_ack(self, raw: bytes, path: str = "/v1/slashing/acknowledgements") -> tuple[int, Any]:
        request = urllib.request.Request(
            self.api_base + path, data=raw, method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read())


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    clock = StepClock()
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    treasury = ledger.add_node("treasury")
    seeds = [os.urandom(32) for _ in range(5)]
    maintainers = [Identity.from_seed(seed) for seed in seeds]  # 0, 1, 3, 4 are configured
    settings = CoordinatorSettings(
        coordinator=CoordinatorSection(
            data_dir=str(tmp_path / "data"), signing_key_path=str(tmp_path / "coordinator.key")
        ),
        # Two honest replicas beside the liar: two distinct stake channels report it.
        stake=StakeSection(
            maintainer_keys=tuple(m.public_key_hex for m in [*maintainers[:2], *maintainers[3:]]),
            tier1_reporters=2,
        ),
    )
    repositories = open_repositories(f"sqlite:///{tmp_path / 'coordinator.sqlite3'}")
    app = build_coordinator(
        settings, store=repositories, treasury=ledger.lightning("treasury"),
        force_closer=ledger.lightning("treasury", force_close_allowed=True),
        clock=clock, config=ServiceConfig(tick_s=0.05, funding=FundingConfig(
            network_submitters=frozenset({OPERATOR.public_key_hex}))),
    )  # fmt: skip
    service, slashing_service = app.service, app.slashing
    assert slashing_service is not None
    server = CoordinatorServer(service, "127.0.0.1:0", tls=COORDINATOR_TLS, max_workers=16)
    app.workers.start()
    server.start()
    services = build_api(app, l402_secret=b"\x11" * 32,
                         config=ApiConfig(cache_ttl_ms=0)).services  # fmt: skip
    api = ApiServer(create_app(services), "127.0.0.1:0")
    api.start()
    router = NodeRoutingStub(f"127.0.0.1:{server.port}")
    world = Live(
        tmp_path, clock, ledger, treasury, service, slashing_service, services,
        cast(pb_grpc.CoordinatorStub, router),
        f"http://127.0.0.1:{api.port}", seeds,
    )  # fmt: skip
    try:
        yield world
    finally:
        for feed in world.feeds.values():
            feed.close()
        router.close()
        api.stop(1)
        server.stop(1)
        app.workers.stop(1)
        repositories.close()


def ack_envelope(live: Live, maintainer: Identity, node_id: str, evidence_hash: str) -> bytes:
    body = MaintainerAcknowledgement(node_id, evidence_hash, "fake_proof", AckVerdict.SLASH)
    env = envelopes.seal(maintainer, EnvelopeKind.MAINTAINER_ACK, body, os.urandom(16), 1,
                         audience=live.service.sealing.public_key_hex)
    return envelopes.to_bytes(env)


def test_a_tier1_node_outvoted_by_two_stake_backed_replicas_is_slashed_and_published(
    live: Live,
) -> None:
    """The reporters are the replicas that won, one per stake channel, never the task: the
    fixture's [stake] tier1_reporters = 2 is reached by one lost task with two honest siblings,
    however many tasks one sibling alone would win (SRS-STAKE-04)."""
    honest = [live.join(), live.join()]
    liar = live.join()

    live.run_task("t1", [(honest[0], HONEST), (honest[1], HONEST), (liar, FALSE)])

    [entry] = live.get("/v1/network/slashing-log")["entries"]
    assert (entry["node_id"], entry["reason"]) == (liar.node_id, SlashingReason.FAKE_PROOF.value)
    assert live.service.status_of(liar.node_id) is NodeStatus.SUSPENDED
    assert all(live.service.status_of(n.node_id) is not NodeStatus.SUSPENDED for n in honest)
    assert live.ledger.closed_channel(entry["channel_id"]) is not None  # force-closed
    assert stake_figures(live.service)["slashing_events_7d"] == 1
    assert live.get("/v1/slashing/pending")["cases"] == []

    verified = CliRunner().invoke(slashing_log, [
        "verify", "--url", live.api_base, "--api-key", live.api_key(),
        "--coordinator-key", live.slashing.coordinator_public_key,
    ])  # fmt: skip
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith("OK 1 entries")


def test_a_tier2_node_waits_for_two_maintainer_acknowledgements_over_the_api(
    live: Live,
) -> None:
    honest = [live.join(), live.join()]
    liar = live.join(Tier.T2)
    live.run_task("t1", [(honest[0], HONEST), (honest[1], HONEST), (liar, FALSE)])
    [case] = live.get("/v1/slashing/pending")["cases"]
    assert (case["waiting_for"], case["needed"], case["tier"]) == ("acknowledgements", 2, "t2")
    evidence = case["signals"][0]["evidence_hash"]
    key_files = maintainer_key_files(live)

    def cli_ack(i: int, *extra: str) -> Any:
        return CliRunner().invoke(slashing, [
            "ack", "--key", str(key_files[i]), "--node-id", liar.node_id,
            "--evidence-hash", evidence, "--reason", "fake_proof", "--api", live.api_base,
            *extra,
        ])  # fmt: skip

    first = cli_ack(0)
    assert first.exit_code == 0, first.output
    assert "recorded: 1 of 2 maintainers" in first.output and "not slashed yet" in first.output
    refused = cli_ack(2)  # a key that is not a configured maintainer
    assert refused.exit_code != 0 and "403" in refused.output
    assert live.get("/v1/network/slashing-log")["entries"] == []

    second = cli_ack(1, "--json")
    assert second.exit_code == 0, second.output
    answer = json.loads(second.stdout)
    assert answer["acknowledgements"] == 2 and answer["log_entry"]["index"] == 0
    [entry] = live.get("/v1/network/slashing-log")["entries"]
    assert (entry["node_id"], entry["evidence_hash"]) == (liar.node_id, evidence)
    assert live.service.status_of(liar.node_id) is NodeStatus.SUSPENDED


def maintainer_key_files(live: Live) -> list[Path]:
    """Each maintainer's key file (0600), as ``owm slashing ack/reverse --key`` reads it."""
    key_files = [live.tmp / f"maintainer{i}.key" for i in range(len(live.maintainer_seeds))]
    for path, seed in zip(key_files, live.maintainer_seeds, strict=True):
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(seed.hex() + "\n")
    return key_files


def test_an_upheld_appeal_is_reversed_by_two_other_maintainers_over_the_api_and_cli(
    live: Live,
) -> None:
    """docs/slashing.md, "Appeals": maintainers 0 and 1 acknowledged the slashing; 3 and 4
    reverse it with ``owm slashing reverse --api``; the log verifies with the reversal and the
    node registers again at once."""
    honest = [live.join(), live.join()]
    liar = live.join(Tier.T2)
    live.run_task("t1", [(honest[0], HONEST), (honest[1], HONEST), (liar, FALSE)])
    [case] = live.get("/v1/slashing/pending")["cases"]
    keys = maintainer_key_files(live)
    for i in (0, 1):
        acked = CliRunner().invoke(slashing, [
            "ack", "--key", str(keys[i]), "--node-id", liar.node_id, "--evidence-hash",
            case["signals"][0]["evidence_hash"], "--reason", "fake_proof", "--api", live.api_base,
        ])  # fmt: skip
        assert acked.exit_code == 0, acked.output

    def cli_reverse(i: int, *extra: str) -> Any:
        return CliRunner().invoke(slashing, [
            "reverse", "--key", str(keys[i]), "--log-index", "0", "--node-id", liar.node_id,
            "--api", live.api_base, *extra,
        ])  # fmt: skip

    for refused_key in (0, 2):  # acknowledged the slashing; not a configured maintainer
        refused = cli_reverse(refused_key)
        assert refused.exit_code != 0 and "403" in refused.output
    forged = json.loads(envelopes.to_bytes(envelopes.seal(
        live.maintainers[2], EnvelopeKind.SLASHING_REVERSAL, SlashingReversal(0, liar.node_id),
        os.urandom(16), 1, audience=live.service.sealing.public_key_hex)))  # fmt: skip
    forged["signer"] = live.maintainers[3].public_key_hex  # a stranger signing as maintainer 3
    status, problem = live.post_ack(json.dumps(forged).encode(), "/v1/slashing/reversals")
    assert (status, problem["field"]) == (422, "body.signature")
    first = cli_reverse(3)
    assert first.exit_code == 0, first.output
    assert "recorded: 1 of 2 maintainers" in first.output and "not reversed yet" in first.output
    second = cli_reverse(4, "--json")
    assert second.exit_code == 0, second.output
    answer = json.loads(second.stdout)
    assert answer["reversed"] and answer["log_entry"]["reverses"] == 0
    assert answer["cooldown_lifted"] is True

    _slash, reversal = live.get("/v1/network/slashing-log")["entries"]
    assert (reversal["index"], reversal["reverses"], reversal["node_id"]) == (1, 0, liar.node_id)
    verified = CliRunner().invoke(slashing_log, [
        "verify", "--url", live.api_base, "--api-key", live.api_key(),
        "--coordinator-key", live.slashing.coordinator_public_key,
    ])  # fmt: skip
    assert verified.exit_code == 0 and verified.output.startswith("OK 2 entries"), verified.output
    published = live.get("/v1/slashing/reversals/0")
    assert (published["reversed_by"], published["statement_hash"]) == (
        1, reversal["statement_hash"],
    )
    assert [s["signer"] for s in published["statements"]] == reversal["maintainers"] == sorted(
        m.public_key_hex for m in live.maintainers[3:5]
    )

    def verify_with(*maintainers: Identity) -> Any:
        return CliRunner().invoke(slashing_log, [
            "verify", "--url", live.api_base, "--api-key", live.api_key(),
            "--coordinator-key", live.slashing.coordinator_public_key,
            *[a for m in maintainers for a in ("--maintainer", m.public_key_hex)],
        ])  # fmt: skip

    configured = verify_with(*live.maintainers[:2], *live.maintainers[3:])
    assert configured.exit_code == 0
    assert configured.output.strip() == verified.output.splitlines()[0]  # and no note
    outdated = verify_with(*live.maintainers[:4])  # maintainer 4 not known to this verifier
    assert outdated.exit_code == 3 and outdated.output.strip() == (
        f"BAD entry 1: statement signer {live.maintainers[4].public_key_hex} is not a "
        "maintainer key"
    )
    again = cli_reverse(3)
    assert again.exit_code != 0 and "already reversed" in again.output
    assert stake_figures(live.service)["slashing_events_7d"] == 1

    live.ledger.open_channel(live.treasury, liar.ln_pubkey, 2 * T2_STAKE_SAT,
                             push_sat=T2_STAKE_SAT)  # fmt: skip
    liar.register(live.stub, live.clock.now())  # the cooldown is lifted: no 30-day wait
    assert live.service.status_of(liar.node_id) is not NodeStatus.SUSPENDED


def test_the_acknowledgement_endpoint_answers_problems_that_name_the_field(live: Live) -> None:
    node = live.join(Tier.T2)
    evidence = "ab" * 32
    good = ack_envelope(live, live.maintainers[0], node.node_id, evidence)

    status, problem = live.post_ack(ack_envelope(live, live.maintainers[2], node.node_id, evidence))
    assert (status, problem["code"], problem["field"]) == (403, "forbidden", "body.signer")

    tampered = json.loads(good)
    tampered["body"]["evidence_hash"] = "cd" * 32
    status, problem = live.post_ack(json.dumps(tampered).encode())
    assert (status, problem["field"]) == (422, "body.signature")

    missing = json.loads(good)
    del missing["nonce"]
    status, problem = live.post_ack(json.dumps(missing).encode())
    assert (status, problem["field"]) == (422, "body.nonce")

    stranger = Identity.from_seed(os.urandom(32)).node_id
    status, problem = live.post_ack(ack_envelope(live, live.maintainers[0], stranger, evidence))
    assert (status, problem["field"]) == (404, "body.body.node_id")

    status, receipt = live.post_ack(good)
    assert (status, receipt["recorded"], receipt["acknowledgements"]) == (201, True, 1)
    status, receipt = live.post_ack(good)
    assert (status, receipt["recorded"], receipt["slashed"]) == (200, False, False)


def test_a_missing_coordinator_key_is_created_for_a_fresh_network_only(tmp_path: Path) -> None:
    from owm_adapters.bootstrap.coordinator import coordinator_identity_from
    from owm_adapters.bootstrap.settings import ConfigError
    from owm_adapters.storage.memory import memory_repositories
    from tests.server.http.records import slashing_entry

    settings = CoordinatorSettings(
        coordinator=CoordinatorSection(signing_key_path=str(tmp_path / "k" / "coordinator.key"))
    )
    repositories = memory_repositories()
    created, fresh = coordinator_identity_from(settings, repositories)
    assert fresh and (tmp_path / "k" / "coordinator.key").stat().st_mode & 0o777 == 0o600
    loaded, fresh = coordinator_identity_from(settings, repositories)
    assert not fresh and loaded.public_key_hex == created.public_key_hex

    repositories.slashing_log.append(slashing_entry(None, "n" + "1" * 40, 1_800_000_000))
    with pytest.raises(ConfigError, match="not the key that signed"):
        coordinator_identity_from(settings, repositories)  # records.py signs with another key
    (tmp_path / "k" / "coordinator.key").unlink()
    with pytest.raises(ConfigError, match="restore that key file"):
        coordinator_identity_from(settings, repositories)


def test_slashing_on_lnd_refuses_to_start_without_the_separate_force_close_credential(
    tmp_path: Path,
) -> None:
    from owm_adapters.bootstrap.coordinator import slashing_service_from
    from owm_adapters.bootstrap.settings import ConfigError, CoordinatorLightning
    from owm_adapters.storage.memory import memory_repositories

    settings = CoordinatorSettings(
        coordinator=CoordinatorSection(data_dir=str(tmp_path)),
        lightning=CoordinatorLightning(backend="lnd", lnd_macaroon=str(tmp_path / "m")),
    )
    with pytest.raises(ConfigError, match="lnd_force_close_macaroon"):
        slashing_service_from(settings, memory_repositories(), StepClock(),
                              coordinator=Identity.from_seed(b"\x01" * 32))  # fmt: skip
