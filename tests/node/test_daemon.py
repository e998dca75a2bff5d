"""The node daemon end to end against an in-process coordinator (SRS-NODE-01..12)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from owm_adapters.clock import SystemClock
from owm_adapters.control_plane.in_process import InProcessControlPlane, InProcessFeed
from owm_adapters.node.daemon import DaemonSettings, NodeDaemon, stake_guidance
from owm_adapters.node.health import HealthServer
from owm_adapters.node.task_log import TaskLog
from owm_adapters.node.task_runner import Limits, TaskRunner
from owm_adapters.probes import Readiness
from owm_core.identity.assignments import sign_assignment
from owm_core.identity.keys import Identity
from owm_core.identity.sealing import NONCE_BYTES, input_context, seal
from owm_core.nodes.control_plane import AssignedTask, ControlPlaneRefused, StakeView
from owm_core.ports.control_plane import ControlPlane
from tests.node.conftest import MANIFEST, T1_STAKE_SAT, Network, Node
from tests.node.test_health import get as get_health
from tests.services.market_world import register


class ResealedInputs:
    """The in-process control plane, except that each assignment's input arrives sealed by
    ``impostor`` and the assignment is signed again by ``coordinator``: a feed only the
    sealing check (SRS-SEC-02) can refuse, not the assignment signature (SRS-SEC-01/03)."""

    def __init__(self, inner: InProcessControlPlane, coordinator: Identity, impostor: Identity,
                 recipient: str) -> None:
        self.inner, self.coordinator, self.impostor = inner, coordinator, impostor
        self.recipient = recipient

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def open_task_feed(self, *args: object, **kwargs: object) -> ResealedFeed:
        return ResealedFeed(self, self.inner.open_task_feed(*args, **kwargs))  # type: ignore[arg-type]


class ResealedFeed:
    def __init__(self, plane: ResealedInputs, feed: InProcessFeed) -> None:
        self.plane, self.feed = plane, feed

    def __iter__(self) -> Iterator[AssignedTask]:
        plane = self.plane
        for task in self.feed:
            sealed = seal(b'{"prompt": "hi"}', sender=plane.impostor,
                          recipient_public_key=plane.recipient,
                          context=input_context(task.task_id), nonce=os.urandom(NONCE_BYTES))
            forged = attrs.evolve(task, input=sealed)
            yield attrs.evolve(forged, signature=sign_assignment(plane.coordinator, forged,
                                                                 plane.recipient))

    def cancel(self) -> None:
        self.feed.cancel()


@attrs.define
class Running:
    daemon: NodeDaemon
    stop: threading.Event
    thread: threading.Thread
    said: list[str]
    exit_codes: list[int]

    def text(self) -> str:
        return "\n".join(self.said)

    def halt(self) -> int:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        return self.exit_codes[0]


def wait_for(check: Callable[[], object], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.fixture
def start(network: Network, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def _start(
        node: Node,
        runner: TaskRunner | None = None,
        control: ControlPlane | None = None,
        **overrides: object,
    ) -> Running:
        said: list[str] = []
        settings = DaemonSettings(
            ln_node_uri=node.ln_node_uri,
            heartbeat_interval_s=0.2,
            payment_check_interval_s=0.2,
            stake_check_interval_s=0.2,
            stake_retry_s=0.2,
            **{"treasury_uri": f"{network.treasury}@127.0.0.1:9735",  # type: ignore[arg-type]
               "coordinator_public_key": network.coordinator_key, **overrides},
        )
        data_dir = tmp_path / node.identity.node_id
        daemon = NodeDaemon(
            node.identity, control or InProcessControlPlane(network.service), MANIFEST,
            runner or TaskRunner(limits=Limits(timeout_s=60)), TaskLog.in_dir(data_dir),
            SystemClock(), settings, data_dir=data_dir, say=said.append,
            ln_signer=node.ln_signer,
        )
        stop = threading.Event()
        codes: list[int] = []
        thread = threading.Thread(target=lambda: codes.append(daemon.run(stop)), daemon=True)
        thread.start()
        running = Running(daemon, stop, thread, said, codes)
        started.append(running)
        return running

    yield _start
    for running in started:
        running.stop.set()
        running.thread.join(30)


def test_a_staked_node_registers_heartbeats_runs_a_task_and_is_credited(network, start):
    node = start(network.node("n1"))
    wait_for(lambda: node.daemon.state == "serving")
    wait_for(lambda: node.daemon.health()["coordinator"]["node_status"] == "online")
    network.submit("job-1", b'{"prompt": "hello"}')
    wait_for(lambda: node.daemon.log.earnings().credited_tasks == 1)
    row = node.daemon.log.get("job-1:0")
    assert row is not None and row.state == "proved" and row.payment_status == "credited"
    [replica] = InProcessControlPlane(network.service).replicas("job-1")
    assert replica.state == "settled"
    stored = network.service.repositories.tasks.get("job-1:0")
    assert stored is not None and stored.output_hash == row.output_hash  # committed, revealed
    assert network.service.repositories.task_outputs.get("job-1:0")  # the bytes came with it
    assert "registered  node " in node.text()
    assert "stake: " not in node.text()
    assert node.halt() == 0


def test_a_node_drops_assignments_not_signed_by_its_coordinator_key(network, start):
    impostor = Identity.from_seed(os.urandom(32))  # a coordinator the node was not told of
    member = network.node("n-forged")
    # Each assignment arrives signed (and its input sealed) by the impostor's key.
    control = ResealedInputs(InProcessControlPlane(network.service), impostor, impostor,
                             member.identity.public_key_hex)  # fmt: skip
    node = start(member, control=control)
    wait_for(lambda: node.daemon.state == "serving")
    network.submit("forged-1", b'{"prompt": "run me"}')
    wait_for(lambda: "not signed" in node.daemon.health()["coordinator"]["last_error"])
    assert node.daemon.log.get("forged-1:0") is None  # never logged, never run
    [replica] = InProcessControlPlane(network.service).replicas("forged-1")
    assert replica.state == "assigned"  # never committed, never revealed
    assert node.halt() == 0


def test_a_node_told_another_coordinator_key_is_refused_registration_and_gets_no_tasks(
    network, tmp_path
):
    """Its envelopes are signed for the coordinator it was told of (SRS-SEC-03), so this one
    refuses its manifest: it never registers here, and so is never handed a task."""
    impostor = Identity.from_seed(os.urandom(32))  # a coordinator the node was not told of
    node = network.node("n-forged")
    settings = DaemonSettings(ln_node_uri=node.ln_node_uri, stake_retry_s=0.2,
                              treasury_uri=f"{network.treasury}@127.0.0.1:9735",
                              coordinator_public_key=impostor.public_key_hex)  # fmt: skip
    daemon = NodeDaemon(
        node.identity, InProcessControlPlane(network.service), MANIFEST,
        TaskRunner(limits=Limits(timeout_s=60)), TaskLog.in_dir(tmp_path), SystemClock(),
        settings, data_dir=tmp_path, say=lambda _line: None, ln_signer=node.ln_signer,
    )
    with pytest.raises(ControlPlaneRefused, match="signature"):
        daemon.run(threading.Event())
    assert network.service.repositories.nodes.get(node.identity.node_id) is None


def test_the_verified_output_of_a_task_reaches_its_submitter_with_the_proof(network, start):
    from owm_core.market import task_types

    node = start(network.node("n11"))
    wait_for(lambda: node.daemon.state == "serving")
    network.submit("out-1", b'{"prompt": "what is delivered?"}')

    replicas, outcome = network.service.await_task("out-1", timeout_s=30)

    assert outcome == "verified"
    delivered = network.service.task_output("out-1")
    assert delivered is not None
    output = json.loads(delivered)
    assert output["sub_model"] == "owm-base" and len(output["labels"]) == 1
    assert task_types.output_hash(output) == replicas[0].output_hash
    assert delivered == task_types.canonical_output(node.daemon.log.output_of("out-1:0"))


def test_waiting_for_a_task_nobody_takes_returns_pending_at_the_timeout(network):
    idle = Identity.from_seed(b"\x07" * 32)  # registered and online, but never streaming
    register(network.service.repositories, [idle], int(time.time()))
    network.submit("lonely-1", b'{"prompt": "anyone?"}')
    started = time.monotonic()

    _, outcome = network.service.await_task("lonely-1", timeout_s=0.3)

    assert outcome == "pending" and 0.25 <= time.monotonic() - started < 5
    assert network.service.task_output("lonely-1") is None


def test_an_invalid_task_is_rejected_with_its_reason_and_never_runs(network, start):
    class Spy(TaskRunner):
        calls: int = 0

        def run(self, *args, **kwargs):  # type: ignore[override]
            Spy.calls += 1
            return super().run(*args, **kwargs)

    node = start(network.node("n2"), runner=Spy(limits=Limits(timeout_s=60)))
    wait_for(lambda: node.daemon.state == "serving")
    network.submit("bad-1", b'{"prompt": 42}')
    wait_for(lambda: node.daemon.log.get("bad-1:0") is not None
             and node.daemon.log.get("bad-1:0").state == "rejected")
    assert node.daemon.log.get("bad-1:0").reason == "input.prompt: must be a string"
    assert "rejected task bad-1:0: input.prompt: must be a string" in node.text()
    assert Spy.calls == 0


def test_a_node_without_stake_is_told_the_exact_channel_and_starts_once_it_is_open(
    network, start
):
    bare = network.node("n3", stake_sat=0)
    node = start(bare)
    wait_for(lambda: node.daemon.state == "awaiting_stake")
    text = node.text()
    assert f"at least {T1_STAKE_SAT} sat" in text
    assert f"lncli openchannel --node_key {network.treasury} --connect 127.0.0.1:9735 " \
           f"--local_amt {T1_STAKE_SAT}" in text
    assert node.daemon.health()["stake"]["required_sats"] == T1_STAKE_SAT
    network.ledger.open_channel(
        network.treasury, bare.ln_pubkey, 2 * T1_STAKE_SAT, push_sat=T1_STAKE_SAT
    )
    wait_for(lambda: node.daemon.state == "serving")
    network.submit("job-3", b'{"prompt": "paid at last"}')
    wait_for(lambda: node.daemon.log.earnings().credited_tasks == 1)


def test_stake_capacity_below_the_tier_minimum_raises_a_warning(network, start):
    node = start(network.node("n4"))
    wait_for(lambda: node.daemon.state == "serving")

    class Depleted(InProcessControlPlane):
        def stake_status(self, public_key: str) -> StakeView:
            return StakeView("active", "t1", T1_STAKE_SAT, T1_STAKE_SAT - 1_500, "tx:0", 0)

    node.daemon.control = Depleted(network.service)
    wait_for(lambda: node.daemon.health()["stake"]["warning"])
    assert "98500 sat is below the tier minimum 100000 sat" in node.text()


def test_sigterm_drains_finishes_the_running_task_reports_it_and_exits_zero(
    network, start, tmp_path
):
    slow = TaskRunner(limits=Limits(timeout_s=60), worker_module="tests.node.slow_worker")
    node = start(network.node("n5"), runner=slow)
    wait_for(lambda: node.daemon.state == "serving")
    network.submit("slow-1", json.dumps({"prompt": "slow"}).encode())
    wait_for(lambda: "slow-1:0" in node.daemon.running())
    assert node.halt() == 0
    row = node.daemon.log.get("slow-1:0")
    assert row is not None and row.state == "proved" and row.payment_status == "credited"
    assert "draining" in node.text()
    network.submit("late-1", b'{"prompt": "after"}')
    time.sleep(0.3)
    assert node.daemon.log.get("late-1:0") is None


def test_guidance_without_a_treasury_uri_says_where_to_set_it():
    lines = stake_guidance("t2", 500_000, 120_000, "", "")
    assert "380000 sat missing" in lines[0]
    assert any("[lightning] treasury_uri" in line for line in lines)


def test_a_crashing_task_fails_alone_and_the_daemon_keeps_serving(network, start):
    runner = TaskRunner(limits=Limits(timeout_s=30), worker_module="tests.node.misbehaving_worker",
                        base_env=dict(os.environ, OWM_TEST_CHILD_PID_FILE="/dev/null"))
    node = start(network.node("n6"), runner=runner)
    wait_for(lambda: node.daemon.state == "serving")
    network.submit("crash-1", b'{"prompt": "crash"}')
    wait_for(lambda: (row := node.daemon.log.get("crash-1:0")) is not None
             and row.state == "failed")
    assert "SIGSEGV" in node.daemon.log.get("crash-1:0").reason
    network.submit("fine-1", b'{"prompt": "fine"}')
    wait_for(lambda: node.daemon.log.earnings().credited_tasks == 1)
    assert node.daemon.state == "serving"


def test_a_proof_is_resent_until_the_coordinator_is_reachable_again(network, start):
    from owm_core.nodes.control_plane import ControlPlaneUnavailable

    class Flaky(InProcessControlPlane):
        failures = 3

        def submit_proof(self, proof_envelope: bytes, output: bytes, salt: bytes) -> str:
            if Flaky.failures:
                Flaky.failures -= 1
                raise ControlPlaneUnavailable("coordinator restarting")
            return super().submit_proof(proof_envelope, output, salt)

    node = start(network.node("n7"), retry_initial_s=0.05, retry_max_s=0.1)
    wait_for(lambda: node.daemon.state == "serving")
    node.daemon.control = Flaky(network.service)
    network.submit("flaky-1", b'{"prompt": "again"}')
    wait_for(lambda: node.daemon.log.earnings().credited_tasks == 1)
    assert Flaky.failures == 0


def test_a_heartbeat_refused_for_a_full_replay_guard_is_deferred_not_reported_as_a_fault(
    network, start, caplog
):
    class Busy(InProcessControlPlane):
        refused = 0

        def heartbeat(self, heartbeat_envelope: bytes, manifest_envelope: bytes = b"") -> str:
            Busy.refused += 1
            raise ControlPlaneRefused("replay-guard-full", "replay guard is full; retry after 30 s",
                                      30)

    node = start(network.node("n9"))
    wait_for(lambda: node.daemon.state == "serving")
    caplog.set_level(logging.INFO, logger="owm_adapters.node.heartbeat")
    node.daemon.control = Busy(network.service)
    wait_for(lambda: Busy.refused >= 2)

    said = [r for r in caplog.records if r.name == "owm_adapters.node.heartbeat"]
    assert said and all(r.levelno == logging.INFO and "deferred" in r.getMessage() for r in said)
    assert node.daemon.state == "serving"


def test_a_rejection_refused_for_a_full_replay_guard_is_sent_again(network, start):
    class BusyOnce(InProcessControlPlane):
        busy = 1

        def reject_task(self, rejection_envelope: bytes) -> str:
            if BusyOnce.busy:
                BusyOnce.busy -= 1
                raise ControlPlaneRefused("replay-guard-full", "replay guard is full", 1)
            return super().reject_task(rejection_envelope)

    node = start(network.node("n10"), retry_max_s=0.1)
    wait_for(lambda: node.daemon.state == "serving")
    node.daemon.control = BusyOnce(network.service)
    network.submit("bad-3", b'{"prompt": 42}')

    wait_for(lambda: network.service.rejections("bad-3"))  # long before the 30 s timeout
    assert BusyOnce.busy == 0


def test_an_invalid_task_is_rejected_to_the_coordinator_naming_the_field_and_released(
    network, start
):
    node = start(network.node("n8"))
    wait_for(lambda: node.daemon.state == "serving")
    network.submit("bad-2", b'{"prompt": 42}')

    wait_for(lambda: network.service.rejections("bad-2"))  # long before the 30 s timeout

    [recorded] = network.service.rejections("bad-2")["bad-2:0"]
    assert (recorded.node_id, recorded.field, recorded.reason) == (
        node.daemon.identity.node_id, "input.prompt", "must be a string")
    task = network.service.repositories.tasks.get("bad-2:0")
    assert task is not None and task.node_id is None
    assert task.tried_node_ids == (node.daemon.identity.node_id,)
    assert node.daemon.log.get("bad-2:0").state == "rejected"


def test_an_input_not_sealed_by_the_configured_coordinator_key_is_rejected_and_never_runs(
    network, start
):
    class Spy(TaskRunner):
        calls: int = 0

        def run(self, *args, **kwargs):  # type: ignore[override]
            Spy.calls += 1
            return super().run(*args, **kwargs)

    impostor = Identity.from_seed(b"\x0e" * 32)  # SRS-SEC-02
    member = network.node("n9")
    # Signed by the coordinator (so the node does not drop it) but sealed by another key.
    control = ResealedInputs(InProcessControlPlane(network.service), network.service.signer,
                             impostor, member.identity.public_key_hex)
    node = start(member, runner=Spy(limits=Limits(timeout_s=60)), control=control)
    wait_for(lambda: node.daemon.state == "serving")
    network.submit("sealed-1", b'{"prompt": "hi"}')

    wait_for(lambda: network.service.rejections("sealed-1"))

    [recorded] = network.service.rejections("sealed-1")["sealed-1:0"]
    assert (recorded.field, recorded.reason) == (
        "input", "does not open: it was changed, or sealed between other keys")
    assert node.daemon.log.get("sealed-1:0").state == "rejected"
    assert Spy.calls == 0


def test_stake_guidance_takes_the_treasury_from_the_coordinator_unless_configured(
    network, start
):
    plain = start(network.node("n9", stake_sat=0), treasury_uri="")
    configured = start(network.node("n10", stake_sat=0), treasury_uri="02" + "ab" * 32)
    # The state turns awaiting_stake just before the guidance is printed: wait for the text.
    wait_for(lambda: "lncli openchannel" in plain.text()
             and "lncli openchannel" in configured.text())
    assert f"lncli openchannel --node_key {network.treasury} --connect 127.0.0.1:9735 " \
           f"--local_amt {T1_STAKE_SAT}" in plain.text()
    assert f"lncli openchannel --node_key {'02' + 'ab' * 32} --local_amt {T1_STAKE_SAT}" \
        in configured.text()
    assert "set [lightning] treasury_uri" not in plain.text()


def test_readiness_on_the_health_port_is_503_before_registration_and_200_after(network, start):
    bare = network.node("n9", stake_sat=0)
    node = start(bare)
    health = HealthServer(
        0, node.daemon.health, readiness=Readiness(node.daemon.readiness_probes())
    )
    health.start()
    try:
        wait_for(lambda: node.daemon.state == "awaiting_stake")
        status, body = get_health(health.port, "/ready")
        assert status == 503 and body["failing"] == ["control_plane"]
        assert body["parts"] == {
            "identity": "ok", "control_plane": "unregistered", "lightning": "ok",
        }
        network.ledger.open_channel(
            network.treasury, bare.ln_pubkey, 2 * T1_STAKE_SAT, push_sat=T1_STAKE_SAT
        )
        wait_for(lambda: node.daemon.state == "serving")
        status, body = get_health(health.port, "/ready")
        assert (status, body["status"]) == (200, "ready")
        assert set(body["parts"].values()) == {"ok"}
        assert get_health(health.port)[0] == 200  # /health is unchanged beside it
    finally:
        health.close()
