"""Restarts lose nothing (SQLite store); `owm-coordinator serve` runs and stops gracefully."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.storage.sql import open_repositories
from owm_core.market.tasks import TaskState, VerificationPolicy
from tests.prometheus_checks import samples, scrape, value
from tests.server.harness import SimNode, StepClock, start_coordinator, task_request
from tests.tls_support import secure_channel

ROOT = Path(__file__).resolve().parents[2]


def test_a_restarted_coordinator_keeps_the_commitments_of_a_round_in_flight(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'coordinator.sqlite3'}"
    ledger = SimLedger(tmp_path / "lightning.sqlite3")
    clock = StepClock()
    config = ServiceConfig(verification=VerificationPolicy(redundancy=2), tick_s=0.05)
    first = start_coordinator(open_repositories(url), ledger, clock, config)
    nodes = [SimNode.create() for _ in range(2)]
    for node in nodes:
        node.stake(first)
        node.register(first.stub, clock.now())
    feeds = [n.open_stream(first.stub) for n in nodes]
    first.stub.SubmitTask(task_request("job-r"))
    got = [f.wait_for(1)[0] for f in feeds]
    committed = nodes[0].commit(first.stub, got[0].task_id, b"42", clock.now())
    assert not committed.reveals_open and committed.state == "committed"
    with pytest.raises(grpc.RpcError) as early:
        nodes[0].reveal(first.stub, got[0].task_id, b"42", clock.now())
    assert early.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert early.value.details().startswith("reveals-not-open: ")
    first.stub.SubmitTask(task_request("job-waiting", max_price_msat=10))  # nobody asks ≤ 10
    for feed in feeds:
        feed.close()
    first.stop()
    first.service.repositories.close()

    second = start_coordinator(open_repositories(url), ledger, clock, config)
    try:
        view = second.stub.GetTask(pb.GetTaskRequest(task_id="job-r"))
        states = {r.node_id: r.state for r in view.replicas}
        assert states == {nodes[0].node_id: "committed", nodes[1].node_id: "assigned"}
        (kept,) = second.service.repositories.commitments.for_round("job-r")
        assert kept.commitment.node_id == nodes[0].node_id
        waiting = second.stub.GetTask(pb.GetTaskRequest(task_id="job-waiting"))
        assert [r.state for r in waiting.replicas] == ["submitted", "submitted"]

        feed = nodes[1].open_stream(second.stub)  # reconnect: the assignment is pushed again
        (again,) = feed.wait_for(1)
        assert again.task_id == got[1].task_id
        assert nodes[1].commit(second.stub, again.task_id, b"42", clock.now()).reveals_open
        nodes[0].reveal(second.stub, got[0].task_id, b"42", clock.now())
        reply = nodes[1].reveal(second.stub, again.task_id, b"42", clock.now())
        assert reply.state == TaskState.SETTLED.value
        done = second.stub.GetTask(pb.GetTaskRequest(task_id="job-r"))
        assert done.outcome == "verified"
        feed.close()
    finally:
        second.stop()
        second.service.repositories.close()


def test_a_restarted_coordinator_pushes_every_task_with_its_original_input_bytes(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'coordinator.sqlite3'}"
    ledger = SimLedger(tmp_path / "lightning.sqlite3")
    clock = StepClock()
    config = ServiceConfig(verification=VerificationPolicy(redundancy=1), tick_s=0.05)
    first = start_coordinator(open_repositories(url), ledger, clock, config)
    node = SimNode.create()
    node.stake(first)
    node.register(first.stub, clock.now())
    feed = node.open_stream(first.stub)  # asks 1 000 msat
    assigned_input = b"\x00\x01binary\x00\xff" * 1_000
    waiting_input = b"\x00waiting for a cheaper node\x00"
    first.stub.SubmitTask(task_request("job-assigned", input_data=assigned_input))
    (got,) = feed.wait_for(1)
    assert node.opened(got) == assigned_input
    # below the node's ask:
    first.stub.SubmitTask(task_request("job-waiting", max_price_msat=500, input_data=waiting_input))
    feed.close()
    first.stop()
    first.service.repositories.close()

    second = start_coordinator(open_repositories(url), ledger, clock, config)
    try:
        feed = node.open_stream(second.stub, ask_msat=100)
        pushed = {a.task_id: node.opened(a) for a in feed.wait_for(2)}
        assert pushed == {got.task_id: assigned_input, "job-waiting:0": waiting_input}
        for task_id in pushed:
            reply = node.deliver(second.stub, task_id, b"42", clock.now())
            assert reply.state == TaskState.SETTLED.value
        inputs = second.service.repositories.task_inputs
        assert inputs.get("job-assigned") is None  # settled tasks do not keep their input
        assert inputs.get("job-waiting") is None
        feed.close()
    finally:
        second.stop()
        second.service.repositories.close()


def _read_until_ready(
    process: subprocess.Popen[str], timeout_s: float, *, drain: bool = False
) -> list[str]:
    """The coordinator's output up to its ``ready`` line; with ``drain`` the rest is read on in
    the background (appended to the same list), so a full pipe never blocks its logging."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    stdout = process.stdout
    assert stdout is not None
    while time.monotonic() < deadline:
        line = stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith("ready"):
            if drain:
                threading.Thread(
                    target=lambda: lines.extend(rest.strip() for rest in stdout), daemon=True
                ).start()
            return lines
    raise AssertionError(f"coordinator did not get ready: {lines}")


def test_serve_answers_rpcs_exposes_metrics_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "coordinator.toml"
    config.write_text(
        f'[coordinator]\ndata_dir = "{tmp_path / "data"}"\n'
        f'signing_key_path = "{tmp_path / "coordinator.key"}"\n'
        'grpc_listen = "127.0.0.1:0"\nmetrics_listen = "127.0.0.1:0"\napi_listen = "127.0.0.1:0"\n'
        '[knowledge]\nembedder = "hashing"\nqdrant_path = ":memory:"\n',
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "owm_cli.coordinator", "serve", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        lines = _read_until_ready(process, 30)
        assert (tmp_path / "coordinator.key").exists()  # a fresh network gets its signing key
        assert any(x.startswith("slashing log key") for x in lines)
        assert any(x.startswith("knowledge base") for x in lines)
        grpc_port = next(int(x.rsplit(":", 1)[1]) for x in lines if x.startswith("gRPC"))
        pin = next(x.split()[-1] for x in lines if x.startswith("TLS fingerprint"))
        for name in ("tls.key", "tls.crt"):  # created on first serve, pinned by nodes
            assert stat.S_IMODE((tmp_path / "data" / name).stat().st_mode) == 0o600
        metrics_url = next(x.split()[-1] for x in lines if x.startswith("metrics"))
        api_url = next(x.split()[-1] for x in lines if x.startswith("HTTP API"))
        with secure_channel(f"127.0.0.1:{grpc_port}", pin=pin) as channel:
            stub = pb_grpc.CoordinatorStub(channel)
            node = SimNode.create()
            challenge = stub.GetChallenge(
                pb.GetChallengeRequest(public_key=node.public_key, purpose="register")
            )
            assert len(challenge.nonce) == 64
        try:  # the public API shares the coordinator; an unauthenticated call is refused
            urllib.request.urlopen(f"{api_url}/query/q1", timeout=5)
        except urllib.error.HTTPError as refused:
            assert refused.code < 500
            assert refused.headers["Content-Type"].startswith("application/problem+json")
        else:
            raise AssertionError("an unauthenticated API call was answered")
        for probe in ("q2", "q3"):  # many ids, one series: labelled by the route template
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(f"{api_url}/query/{probe}", timeout=5)
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(f"{api_url}/no-such-route-{os.getpid()}", timeout=5)

        exported = samples(scrape(metrics_url))
        for name in ("owm_registry_nodes", "owm_tasks", "owm_heartbeats_accepted_total",
                     "owm_dispatch_latency_seconds_bucket", "process_cpu_seconds_total"):
            assert name in exported
        challenge_rpc = "/owm.coordinator.v1.Coordinator/GetChallenge"
        assert value(exported, "owm_grpc_server_handled_total",
                     method=challenge_rpc, code="OK") == 1
        assert value(exported, "owm_grpc_server_handling_seconds_count", method=challenge_rpc) == 1
        routes = {s.labels["route"] for s in exported["owm_http_requests_total"]}
        assert routes == {"/v1/query/{query_id}", "unmatched"}
        assert value(exported, "owm_http_request_duration_seconds_count",
                     method="GET", route="/v1/query/{query_id}") == 3

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert process.stdout is not None
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
