"""One FL round end to end in one process: the coordinator's gRPC control plane and HTTP API
on free ports, three nodes that register, open task streams for ``fl_training``, run the
node's own training code on their assignments, upload signed updates over HTTP and prove
their tasks; the round closes, its version is stamped in the embedded calendar, confirmed
in the local chain, and its weights download and verify."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.settings import (
    CoordinatorSection,
    CoordinatorSettings,
    FlSection,
    ProvenanceSection,
)
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_adapters.control_plane.submitter import signed_submit_request
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.models.tinynet import PARAM_SHAPES, genesis_weights
from owm_adapters.node.task_exec import execute
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.services.coordinator.shared import FundingConfig
from owm_adapters.services.fl_rounds import FlRoundService, evaluate, flat_weights
from owm_adapters.storage.memory import memory_repositories
from owm_core.access.callers import signed_request_message
from owm_core.fl.rounds import RoundState
from owm_core.fl.updates import sign_update
from owm_core.identity.keys import Identity
from owm_core.market.task_types import canonical_output
from owm_core.market.tasks import TaskRequest
from owm_core.nodes.tiers import Tier
from owm_core.provenance.verification import verify_model_version
from owm_core.provenance.versions import ProofStatus
from owm_server.grpc.server import CoordinatorServer
from owm_server.http.serve import ApiServer, api_server_for
from tests.server.harness import (
    COORDINATOR_KEY,
    OPERATOR,
    T1_STAKE_SAT,
    NodeRoutingStub,
    SimNode,
    StepClock,
)
from tests.services.market_world import register
from tests.tls_support import COORDINATOR_TLS

T0 = 1_800_000_000


def wait_until(condition: Any, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


class Network:
    def __init__(self, tmp: Path) -> None:

        self.clock = StepClock(T0)
        self.ledger = SimLedger(tmp / "ln.sqlite3", clock=self.clock.now)
        self.treasury = self.ledger.add_node("treasury")
        settings = CoordinatorSettings(
            coordinator=CoordinatorSection(data_dir=str(tmp / "coordinator"),
                                           api_listen="127.0.0.1:0"),
            fl=FlSection(interval_s=1, min_participants=3, upload_grace_s=1, epochs=2),
            provenance=ProvenanceSection(calendar_interval_s=1),
        )
        self.app = build_coordinator(
            settings, store=memory_repositories(),
            treasury=self.ledger.lightning("treasury"), clock=self.clock,
            config=ServiceConfig(
                tick_s=0.05,
                funding=FundingConfig(network_submitters=frozenset({OPERATOR.public_key_hex})),
            ),
            slashing=False, coordinator_key=COORDINATOR_KEY,
        )
        self.service = self.app.service
        fl = self.app.fl
        assert fl is not None and fl.upload_url == ""  # port 0: set once the API is up
        self.fl: FlRoundService = fl
        self.server = CoordinatorServer(
            self.service, "127.0.0.1:0", tls=COORDINATOR_TLS, max_workers=16
        )
        self.app.workers.start()
        self.server.start()
        self.api: ApiServer = api_server_for(self.app, "127.0.0.1:0",
                                             data_dir=tmp / "coordinator")
        self.api.start()
        self.api_url = f"http://127.0.0.1:{self.api.port}"
        self.fl.upload_url = f"{self.api_url}/v1/fl/updates"
        self.router = NodeRoutingStub(f"127.0.0.1:{self.server.port}")
        self.stub = cast(pb_grpc.CoordinatorStub, self.router)

    def close(self) -> None:
        self.router.close()
        self.api.stop(1)
        self.server.stop(2)
        self.app.workers.stop(2)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network(tmp_path)
    try:
        yield net
    finally:
        net.close()


def run_assignment(net: Network, node: SimNode, assignment: pb.TaskAssignment) -> bytes:
    """What a node daemon does with an fl_training assignment (training code included), up to
    its commitment; the output to reveal is returned."""
    data = json.loads(node.opened(assignment))
    trained = execute(assignment.task_type, data, None)
    body = sign_update(
        node.identity, round_number=data["round"], sub_model=data["sub_model"],
        task_id=assignment.task_id, num_examples=trained["num_examples"], loss=trained["loss"],
        weights=trained["weights"],
    )
    request = urllib.request.Request(
        data["upload_url"], data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 202
    summary = {"round": data["round"], "update_digest": hashlib.sha256(
        json.dumps(body["weights"]).encode()).hexdigest()}
    output = canonical_output(summary)
    node.commit(net.stub, assignment.task_id, output, net.clock.now())
    return output


def signed_get(net: Network, node: SimNode, path: str) -> bytes:
    nonce = os.urandom(16).hex()
    message = signed_request_message(net.service.sealing.public_key_hex, "GET", path,
                                     net.clock.now(), nonce, b"")
    request = urllib.request.Request(net.api_url + path, headers={
        "X-OWM-Node-Key": node.public_key, "X-OWM-Timestamp": str(net.clock.now()),
        "X-OWM-Nonce": nonce, "X-OWM-Signature": node.identity.sign(message).hex(),
    })
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            data: bytes = reply.read()
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"GET {path}: {exc.code} {exc.read()!r}") from None
    return data


def test_a_round_trains_on_three_nodes_and_publishes_a_confirmed_version(
    network: Network,
) -> None:
    net = network
    nodes = [SimNode.create() for _ in range(3)]
    feeds = []
    for node in nodes:
        net.ledger.open_channel(
            net.treasury, node.ln_pubkey, 2 * T1_STAKE_SAT, push_sat=T1_STAKE_SAT
        )
        node.register(net.stub, net.clock.now())
        feeds.append(node.open_stream(net.stub, capabilities=("fl_training",)))
    reveals = []
    for node, feed in zip(nodes, feeds, strict=True):
        (assignment, *_) = feed.wait_for(1, timeout_s=20)
        assert assignment.task_type == "fl_training"
        reveals.append((node, assignment.task_id, run_assignment(net, node, assignment)))
    for node, task_id, output in reveals:
        node.reveal(net.stub, task_id, output, net.clock.now())
    fl_round = wait_until(lambda: (r := net.service.repositories.fl_rounds.get_round(1))
                          and r.state is not RoundState.OPEN and r)
    assert fl_round.state is RoundState.CLOSED, fl_round.failure
    assert sorted(fl_round.accepted) == sorted(n.node_id for n in nodes)
    assert fl_round.flagged == () and fl_round.participants == 3
    genesis_accuracy, _ = evaluate(flat_weights(genesis_weights("owm-base")))
    assert fl_round.accuracy_ppm is not None and fl_round.accuracy_ppm > genesis_accuracy
    version_id = str(fl_round.version_id)

    def confirmed() -> Any:
        net.fl.upgrade_proofs()
        release = net.service.repositories.releases.get(version_id)
        return release if release and release.proof_status is ProofStatus.CONFIRMED else None

    release = wait_until(confirmed)
    raw = signed_get(net, nodes[0], f"/v1/model/versions/{version_id}/weights")
    with np.load(io.BytesIO(raw)) as npz:
        tensors = {name: npz[name] for name, _ in PARAM_SHAPES}
    assert verify_model_version(release.version, release.ots_proof, net.fl.timestamping,
                                tensors).ok
    listing = json.loads(signed_get(net, nodes[0], "/v1/fl/rounds"))
    assert any(r["round"] == 1 and r["version"] == version_id for r in listing["rounds"])
    for feed in feeds:
        feed.close()


def fl_training_input(upload_url: str) -> bytes:
    return json.dumps({"sub_model": "owm-geo", "round": 1, "partition_id": 0, "epochs": 1,
                       "lr": 0.1, "batch_size": 16, "seed": 1, "upload_url": upload_url}).encode()


def fl_task(network: Network, task_id: str, data: bytes) -> pb.SubmitTaskRequest:
    """An ``fl_training`` task signed by the network's operator key (funded work only)."""
    request = TaskRequest(
        task_id=task_id, task_type="fl_training", input_schema_id="owm.fl.train",
        input_schema_version=1, min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0,
        gpu_required=False, max_price_msat=1_000,
    )
    return signed_submit_request(OPERATOR, request, data, network.clock.now(),
                                 coordinator_key=network.service.sealing.public_key_hex)


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://127.0.0.1:6379/",
    "http://10.0.0.5:8080/v1/fl/updates",
    "http://[::ffff:169.254.169.254]/",
    "https://attacker.example/v1/fl/updates",
])
def test_a_client_submitting_an_fl_task_that_uploads_off_the_coordinators_origin_is_refused(
    network: Network, target: str
):
    import grpc

    request = fl_task(network, "ssrf-1", fl_training_input(target))
    with pytest.raises(grpc.RpcError) as refused:
        network.stub.SubmitTask(request, timeout=10)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "input.upload_url" in (refused.value.details() or "")
    assert network.service.repositories.tasks.get("ssrf-1:0") is None
    assert network.service.repositories.task_inputs.get("ssrf-1") is None


def test_an_fl_task_that_uploads_to_the_coordinators_own_api_is_taken(network: Network):
    trainers = [Identity.from_seed(bytes([0x70 + i]) * 32) for i in range(3)]
    register(network.service.repositories, trainers, network.clock.now())  # enough to admit it
    request = fl_task(network, "own-1", fl_training_input(f"{network.api_url}/v1/fl/updates"))
    reply = network.stub.SubmitTask(request, timeout=10)
    assert list(reply.replica_ids)
    assert network.service.repositories.tasks.get(reply.replica_ids[0]) is not None
