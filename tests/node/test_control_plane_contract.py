"""One contract for both control-plane adapters: the gRPC client and the in-process twin."""

from __future__ import annotations

import os
import threading

import pytest

from owm_adapters.control_plane.grpc_client import GrpcControlPlane
from owm_core.identity import envelopes
from owm_core.identity.envelopes import EnvelopeKind, Heartbeat, TaskRejection
from owm_core.identity.keys import Identity
from owm_core.market.tasks import VerificationPolicy
from owm_core.nodes.control_plane import AssignedTask, ControlPlaneRefused, ControlPlaneUnavailable
from tests.node.conftest import MANIFEST, T1_STAKE_SAT
from tests.reveals import COORDINATOR_KEY_HEX, commitment_envelope, proof_envelope, salt_of
from tests.tls_support import COORDINATOR_TLS, client_tls, known


def manifest_envelope(identity: Identity) -> bytes:
    env = envelopes.seal(identity, EnvelopeKind.CAPABILITY_MANIFEST, MANIFEST, os.urandom(16),
                         SystemNow.now(), audience=COORDINATOR_KEY_HEX)
    return envelopes.to_bytes(env)


class SystemNow:
    @staticmethod
    def now() -> int:
        import time

        return int(time.time())


def register(control, node):
    return control.register(node.identity, manifest_envelope(node.identity), MANIFEST.digest(),
                            node.ln_node_uri, None, node.ln_signer)


def heartbeat(identity: Identity, seq: int = 1) -> bytes:
    body = Heartbeat(node_id=identity.node_id, seq=seq, manifest_digest=MANIFEST.digest())
    return envelopes.to_bytes(envelopes.seal(identity, EnvelopeKind.HEARTBEAT, body,
                                             os.urandom(16), SystemNow.now(),
                                             audience=COORDINATOR_KEY_HEX))


def first_assignment(feed) -> list[AssignedTask]:
    got: list[AssignedTask] = []
    done = threading.Event()

    def read() -> None:
        for task in feed:
            got.append(task)
            done.set()
            return

    threading.Thread(target=read, daemon=True).start()
    done.wait(10)
    feed.cancel()
    return got


def test_a_staked_node_registers_active_and_its_heartbeats_keep_it_online(control, network):
    node = network.node("n1")
    reply = register(control, node)
    assert (reply.node_id, reply.tier, reply.stake_status) == (node.identity.node_id, "t1",
                                                                "active")
    assert (reply.required_sats, reply.capacity_sat) == (T1_STAKE_SAT, T1_STAKE_SAT)
    assert control.heartbeat(heartbeat(node.identity), manifest_envelope(node.identity)) == "online"
    view = control.stake_status(node.identity.public_key_hex)
    assert view.status == "active" and view.channel_point


def test_a_heartbeat_the_replay_guard_has_no_room_for_is_refused_with_a_retry_time(
    control, network
):
    node = network.node("n6")
    register(control, node)
    sent = heartbeat(node.identity)
    control.heartbeat(sent)
    with pytest.raises(ControlPlaneRefused) as replayed:
        control.heartbeat(sent)
    assert (replayed.value.status, replayed.value.retry_after_s) == ("replay-rejected", None)
    share = network.service.config.replay_max_per_key
    filled = network.service.heartbeats([heartbeat(node.identity, s) for s in range(2, share + 1)])
    assert filled.accepted == share - 1

    with pytest.raises(ControlPlaneRefused) as busy:
        control.heartbeat(heartbeat(node.identity, share + 1))
    assert busy.value.status == "replay-guard-full"
    assert busy.value.retry_after_s is not None and 1 <= busy.value.retry_after_s <= 601
    assert f"retry after {busy.value.retry_after_s} s" in busy.value.reason


def test_a_node_without_a_stake_channel_is_refused_with_the_required_amount(control, network):
    node = network.node("n2", stake_sat=0)
    with pytest.raises(ControlPlaneRefused) as refused:
        register(control, node)
    assert refused.value.status == "insufficient-stake"
    assert "100000" in refused.value.reason


def test_a_node_whose_channel_is_unconfirmed_is_pending_and_gets_no_task_feed(control, network):
    node = network.node("n2", stake_sat=0)
    network.ledger.open_channel(
        network.treasury, node.ln_pubkey, 2 * T1_STAKE_SAT, push_sat=T1_STAKE_SAT, confirmations=0
    )
    reply = register(control, node)
    assert reply.stake_status == "pending"
    with pytest.raises(ControlPlaneRefused) as refused:
        list(control.open_task_feed(node.identity, ["inference"], 1_000))
    assert refused.value.status == "invalid-transition"


def test_a_task_is_fed_proved_and_settled(control, network):
    node = network.node("n3")
    register(control, node)
    feed = control.open_task_feed(node.identity, ["inference"], 1_000)
    network.submit("job-1", b'{"prompt": "hi"}')
    got = first_assignment(feed)
    assert [t.task_id for t in got] == ["job-1:0"]
    task = got[0]
    assert (task.task_type, task.input_schema_id, network.opened(node, task)) == (
        "inference", "owm.inference.text", b'{"prompt": "hi"}')
    assert 1_000 <= task.price_msat <= 10_000
    output, now = b'{"answer":"hello"}', SystemNow.now()
    reply = control.commit_result(commitment_envelope(node.identity, task.task_id, output, now))
    assert (reply.state, reply.reveals_open) == ("committed", True)
    [replica] = control.replicas("job-1")
    assert (replica.state, replica.node_id) == ("committed", node.identity.node_id)
    raw = proof_envelope(node.identity, task.task_id, output, now)
    salt = salt_of(node.identity.node_id, task.task_id)
    with pytest.raises(ControlPlaneRefused) as refused:
        control.submit_proof(raw, b"", salt)
    assert refused.value.status == "invalid-value" and "output" in refused.value.reason
    sealed = network.sealed_output(node, task.task_id, output)
    assert control.submit_proof(raw, sealed, salt) == "settled"
    [replica] = control.replicas("job-1")
    assert (replica.state, replica.node_id) == ("settled", node.identity.node_id)


def test_a_reveal_before_the_other_replicas_commit_is_refused_with_a_retry_code(
    control, network
):
    first, second = network.node("n4"), network.node("n5")
    for node in (first, second):
        register(control, node)
    feeds = [control.open_task_feed(n.identity, ["inference"], 1_000) for n in (first, second)]
    network.service.config.verification = VerificationPolicy(redundancy=2)
    network.submit("job-2", b'{"prompt": "hi"}')
    [task] = first_assignment(feeds[0])
    output, now = b'{"answer":"hello"}', SystemNow.now()
    reply = control.commit_result(commitment_envelope(first.identity, task.task_id, output, now))
    assert (reply.state, reply.reveals_open) == ("committed", False)
    assert reply.retry_after_ms > 0
    with pytest.raises(ControlPlaneRefused) as refused:
        control.submit_proof(proof_envelope(first.identity, task.task_id, output, now),
                             network.sealed_output(first, task.task_id, output),
                             salt_of(first.identity.node_id, task.task_id))
    assert refused.value.status == "reveals-not-open"


def test_a_task_input_larger_than_grpcs_default_message_size_reaches_the_node(control, network):
    node = network.node("n-big")
    register(control, node)
    feed = control.open_task_feed(node.identity, ["inference"], 1_000)
    payload = b'{"prompt": "' + b"x" * (6 << 20) + b'"}'  # gRPC's default limit is 4 MiB

    network.submit("job-big", payload)

    [task] = first_assignment(feed)
    assert network.opened(node, task) == payload


def test_a_heartbeat_signed_by_an_unknown_key_is_refused_with_the_coordinators_code(control):
    stranger = known(Identity.from_seed(os.urandom(32)))  # with its own bound certificate
    with pytest.raises(ControlPlaneRefused) as refused:
        control.heartbeat(heartbeat(stranger))
    assert refused.value.status == "not-found"


def test_a_node_that_deregisters_leaves_without_cooldown(control, network):
    node = network.node("n4")
    register(control, node)
    assert control.deregister(node.identity) == "deregistered"


def rejection(identity: Identity, replica_id: str) -> bytes:
    body = TaskRejection(task_id=replica_id, field="input.prompt", reason="must be a string")
    return envelopes.to_bytes(envelopes.seal(identity, EnvelopeKind.TASK_REJECTION, body,
                                             os.urandom(16), SystemNow.now(),
                                             audience=COORDINATOR_KEY_HEX))


def test_the_assigned_node_rejects_a_task_and_it_is_released_at_once(control, network):
    node, stranger = network.node("n5"), network.node("n6")
    register(control, node)
    register(control, stranger)
    feed = control.open_task_feed(node.identity, ["inference"], 1_000)
    network.submit("job-5", b'{"prompt": 5}')
    [task] = first_assignment(feed)

    with pytest.raises(ControlPlaneRefused) as refused:
        control.reject_task(rejection(stranger.identity, task.task_id))
    assert refused.value.status == "invalid-transition"
    assert control.reject_task(rejection(node.identity, task.task_id)) == "timed-out"
    [replica] = control.replicas("job-5")
    assert (replica.state, replica.node_id) == ("timed-out", "")
    [recorded] = network.service.rejections("job-5")[task.task_id]
    assert (recorded.node_id, recorded.field) == (node.identity.node_id, "input.prompt")


def test_stake_terms_are_known_before_registration(control, network):
    terms = control.stake_terms("t1")
    assert terms.treasury_node_uri == f"{network.treasury}@127.0.0.1:9735"
    assert (terms.required_sats, terms.min_confirmations) == (T1_STAKE_SAT, 1)
    with pytest.raises(ControlPlaneRefused) as refused:
        control.stake_terms("t7")
    assert refused.value.status == "invalid-value"


def test_an_unreachable_coordinator_is_unavailable_not_refused():
    plane = GrpcControlPlane("127.0.0.1:1", timeout_s=2, tls=client_tls(),
                             coordinator_public_key="ab" * 32)
    try:
        with pytest.raises(ControlPlaneUnavailable):
            plane.stake_status("ab" * 32)
    finally:
        plane.close()


def test_a_coordinator_presenting_another_certificate_than_the_pinned_one_is_refused(network):
    wrong_pin = "00" * 32
    plane = GrpcControlPlane(network.url, timeout_s=2, tls=client_tls(pin=wrong_pin),
                             coordinator_public_key=network.coordinator_key)
    try:
        with pytest.raises(ControlPlaneRefused) as refused:
            plane.stake_terms("t1")
    finally:
        plane.close()
    assert refused.value.status == "tls-pin-mismatch"
    message = refused.value.message
    assert wrong_pin in message and COORDINATOR_TLS.fingerprint in message
    assert "\n" not in message and "PRIVATE" not in message
