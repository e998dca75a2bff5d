"""FL updates: signed by the daemon, uploaded straight to the coordinator over clearnet — never
through the control plane's SOCKS5 proxy — and refused for onion URLs or upload proxies with a
reason the coordinator receives (SRS-COORD-03, SRS-NET-02/04)."""

from __future__ import annotations

import http.server
import ipaddress
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from owm_adapters.clock import SystemClock
from owm_adapters.control_plane.grpc_client import GrpcControlPlane
from owm_adapters.control_plane.in_process import InProcessControlPlane
from owm_adapters.models.tinynet import PARAM_SHAPES, genesis_weights
from owm_adapters.node import fl_upload
from owm_adapters.node.daemon import DaemonSettings, NodeDaemon
from owm_adapters.node.task_log import TaskLog
from owm_adapters.node.task_runner import Limits, TaskRunner
from owm_adapters.node.weights import ClearnetOnly
from owm_core.access.destinations import DestinationPolicy
from owm_core.errors import PolicyViolation
from owm_core.fl.updates import parse_update
from owm_core.ports.control_plane import ControlPlane
from tests.node.conftest import MANIFEST, Network, Node
from tests.node.test_daemon import wait_for
from tests.node.test_socks5_route import TinySocks5
from tests.services.test_structured_logs import json_lines  # noqa: F401
from tests.tls_support import client_tls

ONION = "owmcoordinatorxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.onion"


class UpdateSink:
    """A local HTTP server standing in for ``POST /v1/fl/updates`` (answers 202)."""

    def __init__(self, status: int = 202) -> None:
        self.bodies: list[dict] = []
        self.status = status
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                sink.bodies.append(json.loads(self.rfile.read(length)))
                reply = json.dumps({"status": "accepted"}).encode()
                self.send_response(sink.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/fl/updates"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink() -> Iterator[UpdateSink]:
    server = UpdateSink()
    yield server
    server.close()


@pytest.fixture
def run_node(tmp_path: Path, network: Network) -> Iterator[Callable[..., NodeDaemon]]:
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def _run(node: Node, control: ControlPlane, **overrides: object) -> NodeDaemon:
        overrides.setdefault("destinations", DestinationPolicy.devnet())  # the sink: loopback
        settings = DaemonSettings(ln_node_uri=node.ln_node_uri, heartbeat_interval_s=0.5,
                                  coordinator_public_key=network.coordinator_key,
                                  payment_check_interval_s=0.2, stake_check_interval_s=5,
                                  **overrides)  # type: ignore[arg-type]
        data_dir = tmp_path / node.identity.node_id
        daemon = NodeDaemon(
            node.identity, control, MANIFEST,
            TaskRunner(limits=Limits(timeout_s=120), model_dir=str(data_dir / "models")),
            TaskLog.in_dir(data_dir), SystemClock(), settings, data_dir=data_dir,
            say=lambda _line: None, ln_signer=node.ln_signer,
        )
        stop = threading.Event()
        thread = threading.Thread(target=daemon.run, args=(stop,), daemon=True)
        thread.start()
        stops.append((stop, thread))
        wait_for(lambda: daemon.state == "serving")
        return daemon

    yield _run
    for stop, thread in stops:
        stop.set()
        thread.join(30)


def advertise(network: Network, url: str) -> None:
    """Let the test coordinator take task URLs on ``url``'s origin (as if it advertised it)."""
    network.service.market.advertised_api_url = lambda: url


def training_input(upload_url: str | None, **extra: object) -> bytes:
    data: dict[str, object] = {"sub_model": "owm-geo", "round": 1, "partition_id": 2, "epochs": 1,
                               "lr": 0.05, "batch_size": 32, "seed": 7, **extra}
    if upload_url is not None:
        data["upload_url"] = upload_url
    return json.dumps(data).encode()


def flat_genesis(sub_model: str) -> np.ndarray:
    arrays = genesis_weights(sub_model)
    return np.concatenate([arrays[name].astype(np.float64).reshape(-1) for name, _ in PARAM_SHAPES])


def test_a_node_behind_a_socks5_proxy_uploads_its_signed_update_directly_over_clearnet(
    network: Network, run_node, sink: UpdateSink, monkeypatch: pytest.MonkeyPatch,
    json_lines,  # noqa: F811
):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # ignored: uploads take no proxy
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    proxy = TinySocks5({"coordinator.test": ("127.0.0.1", network.server.port)})
    node = network.node("fl-tor")
    plane = GrpcControlPlane(f"coordinator.test:{network.server.port}",
                             socks5_proxy=f"127.0.0.1:{proxy.port}", tls=client_tls(node.identity),
                             coordinator_public_key=network.coordinator_key)
    try:
        daemon = run_node(node, plane)
        advertise(network, sink.url)
        network.submit("fl-1", training_input(sink.url), "fl_training", "owm.fl.train")

        _, outcome = network.service.await_task("fl-1", timeout_s=90)

        assert outcome == "verified"
        [body] = sink.bodies
        update = parse_update(body)  # the signature verifies over (round, node id, digest)
        assert (update.node_id, update.task_id, update.round, update.sub_model) == (
            daemon.identity.node_id, "fl-1:0", 1, "owm-geo")
        assert update.parameters == flat_genesis("owm-geo").size
        delivered = json.loads(network.service.task_output("fl-1") or b"{}")
        assert "weights" not in delivered
        assert delivered["parameters"] == update.parameters
        assert delivered["num_examples"] == update.num_examples
        assert delivered["weights_digest"] == daemon.log.output_of("fl-1:0")["weights_digest"]
        assert proxy.connects and {host for host, _ in proxy.connects} == {"coordinator.test"}
        [uploaded] = [e for e in json_lines() if "FL update uploaded" in e["message"]]
        assert (uploaded["task_id"], uploaded["round"], uploaded["sub_model"],
                uploaded["url"], uploaded["status"]) == ("fl-1:0", 1, "owm-geo", sink.url, 202)
    finally:
        plane.close()
        proxy.close()


def test_an_onion_upload_url_is_refused_and_the_coordinator_is_told_why(
    network: Network, run_node
):
    daemon = run_node(network.node("fl-onion"), InProcessControlPlane(network.service))
    advertise(network, f"http://{ONION}/")  # a coordinator that lets the onion URL through
    network.submit("fl-2", training_input(f"http://{ONION}/v1/fl/updates"), "fl_training",
                   "owm.fl.train")

    wait_for(lambda: network.service.rejections("fl-2"))

    [recorded] = network.service.rejections("fl-2")["fl-2:0"]
    assert recorded.node_id == daemon.identity.node_id
    assert recorded.field == "input.upload_url"
    assert "clearnet only (SRS-NET-04)" in recorded.reason and ONION in recorded.reason
    assert daemon.log.get("fl-2:0").state == "rejected"


def test_a_configured_upload_proxy_makes_the_node_refuse_uploading_tasks(
    network: Network, run_node, sink: UpdateSink
):
    daemon = run_node(network.node("fl-proxy"), InProcessControlPlane(network.service),
                      upload_proxy="127.0.0.1:9050")
    advertise(network, sink.url)
    network.submit("fl-3", training_input(sink.url), "fl_training", "owm.fl.train")

    wait_for(lambda: network.service.rejections("fl-3"))

    [recorded] = network.service.rejections("fl-3")["fl-3:0"]
    assert "through the SOCKS5 proxy 127.0.0.1:9050" in recorded.reason
    assert sink.bodies == [] and daemon.log.get("fl-3:0").state == "rejected"


def test_in_attack_mode_the_node_uploads_a_sign_flipped_update(
    network: Network, run_node, sink: UpdateSink
):
    daemon = run_node(network.node("fl-byz"), InProcessControlPlane(network.service))
    advertise(network, sink.url)
    network.submit("fl-4", training_input(sink.url), "fl_training", "owm.fl.train")
    wait_for(lambda: len(sink.bodies) == 1, 90)
    (daemon.data_dir / fl_upload.ATTACK_FILE).write_text("poison\n")
    network.submit("fl-5", training_input(sink.url), "fl_training", "owm.fl.train")
    wait_for(lambda: len(sink.bodies) == 2, 90)

    honest, sent = (np.array(b["weights"], dtype=np.float64) for b in sink.bodies)
    start = flat_genesis("owm-geo")
    assert np.allclose(sent, start - 10.0 * (honest - start), atol=1e-4)
    parse_update(sink.bodies[1])  # still signed by the node: attributable, hence slashable
    wait_for(lambda: daemon.ctx.counts.get("fl_uploads_delivered") == 2)  # what /metrics exports


def test_the_attack_file_is_read_per_task_and_defaults_to_honest(tmp_path: Path):
    assert fl_upload.attack_mode(tmp_path) == "none"
    for text, mode in (("poison\n", "poison"), ("none", "none"), ("", "none"), ("what", "none")):
        (tmp_path / "attack").write_text(text)
        assert fl_upload.attack_mode(tmp_path) == mode


def test_an_upload_is_retried_on_server_errors_but_not_on_refusals():
    flaky = UpdateSink(status=503)
    refusing = UpdateSink(status=409)
    try:
        waits: list[float] = []
        outcome = fl_upload.post_update(flaky.url, {"x": 1}, attempts=3, sleep=waits.append,
                                        policy=DestinationPolicy.devnet())
        assert (outcome.delivered, outcome.status, outcome.attempts) == (False, 503, 3)
        assert len(flaky.bodies) == 3 and waits == [0.5, 1.0]
        outcome = fl_upload.post_update(refusing.url, {"x": 1}, sleep=waits.append,
                                        policy=DestinationPolicy.devnet())
        assert (outcome.delivered, outcome.status, outcome.attempts) == (False, 409, 1)
    finally:
        flaky.close()
        refusing.close()


def test_uploads_refuse_onion_hosts_proxies_and_other_schemes_before_sending():
    with pytest.raises(ClearnetOnly, match="Tor onion address"):
        fl_upload.post_update(f"https://{ONION}/u", {})
    with pytest.raises(ClearnetOnly, match=r"SOCKS5 proxy 127\.0\.0\.1:9050"):
        fl_upload.post_update("https://coordinator.example/u", {}, proxy="127.0.0.1:9050")
    with pytest.raises(ClearnetOnly, match="http"):
        fl_upload.check_upload_url("ftp://coordinator.example/u", None)


def test_a_redirect_is_not_followed(tmp_path: Path):
    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", f"http://{ONION}/u")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        outcome = fl_upload.post_update(f"http://127.0.0.1:{server.server_address[1]}/u", {},
                                        policy=DestinationPolicy.devnet())
        assert (outcome.delivered, outcome.status) == (False, 307)
    finally:
        server.shutdown()
        server.server_close()


def test_the_proof_output_carries_no_weights_and_agrees_across_last_bit_differences():
    trained = {"sub_model": "owm-geo", "round": 1, "base_version": "genesis",
               "num_examples": 64, "loss": 0.5, "weights": [0.1, -0.2, 0.3]}
    wobbly = [0.1 * (1 + 1e-12), -0.2, 0.3]
    first = fl_upload.proof_output(trained, trained["weights"])
    assert "weights" not in first and first["parameters"] == 3
    assert first == fl_upload.proof_output(trained, wobbly)
    assert first != fl_upload.proof_output(trained, [0.1, -0.2, 0.31])


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:6379/",
    "http://10.0.0.5:8080/v1/fl/updates",
    "http://[::ffff:127.0.0.1]:2375/",
    "http://0x7f000001/u",
])
def test_a_node_given_an_internal_upload_url_refuses_to_contact_it_and_says_why(
    network: Network, run_node, target: str
):
    # The coordinator's origin check is bypassed: it "advertises" the attacker's URL.
    daemon = run_node(network.node("fl-ssrf"), InProcessControlPlane(network.service),
                      destinations=DestinationPolicy())
    advertise(network, target)
    network.submit("fl-6", training_input(target), "fl_training", "owm.fl.train")

    wait_for(lambda: network.service.rejections("fl-6"))

    [recorded] = network.service.rejections("fl-6")["fl-6:0"]
    assert recorded.node_id == daemon.identity.node_id
    assert recorded.field == "input.upload_url"
    assert "target" in recorded.reason
    assert daemon.log.get("fl-6:0").state == "rejected"


def test_an_upload_to_loopback_is_refused_before_sending_unless_the_devnet_allows_it(
    sink: UpdateSink,
):
    with pytest.raises(PolicyViolation, match="loopback target"):
        fl_upload.post_update(sink.url, {"x": 1})
    assert sink.bodies == []
    outcome = fl_upload.post_update(sink.url, {"x": 1}, policy=DestinationPolicy.devnet())
    assert outcome.delivered and sink.bodies == [{"x": 1}]


def test_an_upload_connects_to_the_checked_address_and_never_resolves_the_host_again(
    sink: UpdateSink,
):
    url = sink.url.replace("127.0.0.1", "rebinding.invalid")  # the system cannot resolve it
    seen: list[str] = []

    def checked(host: str, _port: int) -> list[ipaddress.IPv4Address]:
        seen.append(host)
        return [ipaddress.IPv4Address("127.0.0.1")]

    outcome = fl_upload.post_update(url, {"x": 1}, policy=DestinationPolicy.devnet(),
                                    resolver=checked)  # fmt: skip
    assert outcome.delivered and sink.bodies == [{"x": 1}]
    assert seen == ["rebinding.invalid"]  # one lookup: the check's
