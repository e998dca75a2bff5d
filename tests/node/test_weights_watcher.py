"""New model versions reach the node: polled from the coordinator's API, installed only after
their OpenTimestamps proof verifies against the node's own chain (SRS-NODE-10, SRS-NET-04)."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from owm_adapters.bootstrap.node import weights_watcher
from owm_adapters.bootstrap.settings import ConfigError, CoordinatorLink, NodeChain, NodeSettings
from owm_adapters.clock import SystemClock
from owm_adapters.node.weights import CachedModelRuntime, ClearnetOnly
from owm_adapters.node.weights_watcher import WeightsWatcher
from owm_core.access.callers import parse_signed_request, verify_signed_request
from owm_core.access.destinations import DestinationPolicy
from owm_core.errors import PolicyViolation
from owm_core.identity.keys import Identity
from owm_core.provenance.versions import ModelVersion, new_model_version
from tests.node.test_weights import Devnet, tensors
from tests.services.test_structured_logs import json_lines  # noqa: F401

IDENTITY = Identity.from_seed(bytes(range(32)))
COORDINATOR = Identity.from_seed(bytes(range(1, 33))).public_key_hex


class FakeApi:
    """``GET /v1/model/versions`` (+ ``/{id}/weights``, ``/{id}/ots``) as the coordinator's API
    serves them; every request must carry a valid node signature."""

    def __init__(self) -> None:
        self.releases: list[dict] = []
        self.weights: dict[str, bytes] = {}
        self.proofs: dict[str, bytes] = {}
        self.paths: list[str] = []
        #: Release ids whose weights the API fails to serve (HTTP 500).
        self.failing: set[str] = set()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = [self.headers.get(h, "") for h in (
                    "X-OWM-Node-Key", "X-OWM-Timestamp", "X-OWM-Nonce", "X-OWM-Signature")]
                verify_signed_request(parse_signed_request(*headers), COORDINATOR, "GET", self.path,
                                      b"")
                api.paths.append(self.path)
                prefix = "/v1/model/versions"
                if self.path == prefix:
                    self.reply(json.dumps({"versions": api.releases}).encode())
                    return
                release_id, _, what = self.path.removeprefix(prefix + "/").partition("/")
                if not what:  # GET /v1/model/versions/{id}: one release
                    found = [r for r in api.releases if r["id"] == release_id]
                    body = json.dumps(found[0]).encode() if found else None
                elif what == "weights" and release_id in api.failing:
                    self.send_error(500)
                    return
                else:
                    body = (api.weights if what == "weights" else api.proofs).get(release_id)
                if body is None:
                    self.send_error(404)
                    return
                self.reply(body)

            def reply(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def publish(self, model: ModelVersion, weights, proof: bytes | None) -> None:
        self.releases.insert(0, {
            "id": model.id, "version": model.version, "sub_model": model.sub_model,
            "digest": model.digest, "parent": model.parent, "created_at": model.created_at,
            "ots_status": "confirmed" if proof else "none",
        })
        buffer = io.BytesIO()
        np.savez(buffer, __version__=np.array(model.version),
                 **{k: v.numpy() for k, v in weights.items()})
        self.weights[model.id] = buffer.getvalue()
        if proof is not None:
            self.proofs[model.id] = proof

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi()
    yield server
    server.close()


@pytest.fixture
def devnet(tmp_path: Path) -> Devnet:
    return Devnet(tmp_path / "chain")


def watcher_for(api: FakeApi, devnet: Devnet, tmp_path: Path, said: list[str],
                **kwargs: object) -> WeightsWatcher:
    kwargs.setdefault("policy", DestinationPolicy.devnet())  # the fake API listens on loopback
    return WeightsWatcher(api.url, IDENTITY, CachedModelRuntime(tmp_path / "models"),
                          devnet.ots, SystemClock(), coordinator_key=COORDINATOR,
                          say=said.append, **kwargs)  # type: ignore[arg-type]


def version(name: str, weights, created_at: int) -> ModelVersion:
    return new_model_version(name, "owm-geo", weights, created_at=created_at)


def test_a_new_version_with_an_anchored_proof_is_downloaded_and_installed(
    api, devnet, tmp_path, json_lines  # noqa: F811
):
    said: list[str] = []
    weights = tensors(2.0)
    model = version("owm-v1.0.0", weights, 1_800_000_000)
    api.publish(model, weights, devnet.anchored(model.digest_bytes))
    watcher = watcher_for(api, devnet, tmp_path, said)

    result = watcher.poll_once()

    assert result.installed == ("owm-geo@owm-v1.0.0",)
    assert watcher.runtime.loaded_version("owm-geo") == "owm-v1.0.0"
    assert "installed owm-geo@owm-v1.0.0 (OpenTimestamps proof confirmed in Bitcoin block 1)" \
        in said[0]
    [installed] = [e for e in json_lines() if e["message"] == said[0]]  # --log-format json
    assert (installed["model_version"], installed["sub_model"], installed["verified"],
            installed["block_height"]) == ("owm-geo@owm-v1.0.0", "owm-geo", True, 1)
    assert watcher.poll_once().installed == ()  # nothing new: nothing downloaded again
    assert api.paths.count("/v1/model/versions/owm-geo@owm-v1.0.0/weights") == 1


def test_a_version_whose_proof_fails_is_refused_and_the_previous_weights_keep_answering(
    api, devnet, tmp_path, json_lines  # noqa: F811
):
    said: list[str] = []
    good = tensors(2.0)
    first = version("owm-v1.0.0", good, 1_800_000_000)
    api.publish(first, good, devnet.anchored(first.digest_bytes))
    watcher = watcher_for(api, devnet, tmp_path, said)
    watcher.poll_once()
    honest = tensors(3.0)
    second = version("owm-v1.1.0", honest, 1_800_000_100)
    api.publish(second, tensors(3.5), devnet.anchored(second.digest_bytes))  # tampered weights

    result = watcher.poll_once()

    assert result.refused == ("owm-geo@owm-v1.1.0",) and result.installed == ()
    assert watcher.runtime.loaded_version("owm-geo") == "owm-v1.0.0"
    assert any("refused owm-geo@owm-v1.1.0" in line and "owm-v1.0.0 keeps answering" in line
               for line in said)
    [refused] = [e for e in json_lines() if "refused owm-geo@owm-v1.1.0" in e["message"]]
    assert (refused["level"], refused["model_version"], refused["verified"],
            refused["kept_version"]) == ("WARNING", "owm-geo@owm-v1.1.0", False, "owm-v1.0.0")
    assert refused["reason"] in refused["message"]
    watcher.poll_once()
    assert api.paths.count("/v1/model/versions/owm-geo@owm-v1.1.0/weights") == 1


def test_a_pending_proof_is_retried_and_installed_once_the_coordinator_upgrades_it(
    api, devnet, tmp_path
):
    weights = tensors(2.0)
    model = version("owm-v2.0.0", weights, 1_800_000_000)
    pending = devnet.ots.stamp(model.digest_bytes)
    api.publish(model, weights, pending)
    watcher = watcher_for(api, devnet, tmp_path, [])

    assert watcher.poll_once().pending == ("owm-geo@owm-v2.0.0",)
    assert watcher.runtime.loaded_version("owm-geo") is None
    devnet.calendar.flush()
    api.proofs[model.id] = devnet.ots.upgrade(pending)

    assert watcher.poll_once().installed == ("owm-geo@owm-v2.0.0",)
    assert watcher.runtime.loaded_version("owm-geo") == "owm-v2.0.0"


def test_with_pending_versions_skip_a_pending_version_is_given_up_and_never_installed(
    api, devnet, tmp_path
):
    weights = tensors(2.5)
    model = version("owm-v2.5.0", weights, 1_800_000_000)
    pending = devnet.ots.stamp(model.digest_bytes)
    api.publish(model, weights, pending)
    said: list[str] = []
    watcher = watcher_for(api, devnet, tmp_path, said, pending_versions="skip")
    result = watcher.poll_once()
    assert result.refused == ("owm-geo@owm-v2.5.0",) and result.pending == ()
    assert any("refused owm-geo@owm-v2.5.0" in line and "genesis keeps answering" in line
               for line in said)
    devnet.calendar.flush()
    api.proofs[model.id] = devnet.ots.upgrade(pending)
    assert watcher.poll_once() == type(result)()  # given up: not even looked at again
    assert watcher.runtime.loaded_version("owm-geo") is None


def test_an_unknown_pending_versions_setting_is_refused(tmp_path):
    settings = NodeSettings(
        coordinator=CoordinatorLink(api_url="http://127.0.0.1:1"),
        chain=NodeChain(local_chain=str(tmp_path / "chain.db"), pending_versions="install"),
    )
    (tmp_path / "chain.db").touch()
    with pytest.raises(ConfigError, match="pending_versions"):
        weights_watcher(settings, IDENTITY, tmp_path / "models", print)


def test_an_unstamped_version_or_one_without_weights_installs_nothing(api, devnet, tmp_path):
    weights = tensors(2.0)
    unstamped = version("owm-v3.0.0", weights, 1_800_000_000)
    api.publish(unstamped, weights, None)
    watcher = watcher_for(api, devnet, tmp_path, [])
    assert watcher.poll_once().pending == ("owm-geo@owm-v3.0.0",)
    assert api.paths.count(f"/v1/model/versions/{unstamped.id}/weights") == 0
    del api.weights[unstamped.id]
    api.proofs[unstamped.id] = devnet.anchored(unstamped.digest_bytes)
    result = watcher.poll_once()
    assert result.pending == () and result.installed == ()
    assert watcher.runtime.loaded_version("owm-geo") is None


def test_a_version_the_api_fails_to_serve_holds_back_no_other_sub_models(api, devnet, tmp_path):
    """One sub-model's weights failing to download (HTTP 500, too large) is retried next poll;
    the sub-models after it are installed meanwhile."""
    weights = tensors(2.0)
    broken = new_model_version("owm-v1.0.0", "owm-art", weights, created_at=1_800_000_000)
    fine = version("owm-v1.0.0", weights, 1_800_000_000)
    for model in (broken, fine):
        api.publish(model, weights, devnet.anchored(model.digest_bytes))
    api.failing.add(broken.id)
    watcher = watcher_for(api, devnet, tmp_path, [])
    result = watcher.poll_once()
    assert result.installed == (fine.id,) and result.pending == (broken.id,)
    api.failing.clear()
    assert watcher.poll_once().installed == (broken.id,)


def test_an_older_version_never_replaces_a_newer_installed_one(api, devnet, tmp_path):
    newer_w, older_w = tensors(2.0), tensors(1.5)
    newer = version("owm-v5.0.0", newer_w, 1_800_000_500)
    api.publish(newer, newer_w, devnet.anchored(newer.digest_bytes))
    watcher = watcher_for(api, devnet, tmp_path, [])
    watcher.poll_once()
    api.releases.clear()
    older = version("owm-v4.0.0", older_w, 1_800_000_000)
    api.publish(older, older_w, devnet.anchored(older.digest_bytes))
    assert watcher.poll_once().installed == ()
    assert watcher.runtime.loaded_version("owm-geo") == "owm-v5.0.0"


def test_the_watcher_refuses_an_onion_api_or_a_proxy_and_stops_saying_why(devnet, tmp_path):
    onion = "http://owmcoordinatorxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.onion"
    said: list[str] = []
    watcher = WeightsWatcher(onion, IDENTITY, CachedModelRuntime(tmp_path / "m"), devnet.ots,
                             SystemClock(), coordinator_key=COORDINATOR, say=said.append)
    with pytest.raises(ClearnetOnly, match="Tor onion address"):
        watcher.poll_once()
    watcher.run(threading.Event(), 0.01)  # returns instead of polling forever
    assert "weights watcher stopped: model weight downloads use clearnet only" in said[0]
    proxied = WeightsWatcher("http://127.0.0.1:1", IDENTITY, CachedModelRuntime(tmp_path / "m"),
                             devnet.ots, SystemClock(), coordinator_key=COORDINATOR,
                             proxy="127.0.0.1:9050")
    with pytest.raises(ClearnetOnly, match="SOCKS5 proxy"):
        proxied.poll_once()


def test_the_watcher_refuses_a_loopback_api_unless_the_devnet_allows_it(api, devnet, tmp_path):
    said: list[str] = []
    strict = watcher_for(api, devnet, tmp_path, said, policy=DestinationPolicy())
    with pytest.raises(PolicyViolation, match="loopback target"):
        strict.poll_once()
    metadata = WeightsWatcher("http://169.254.169.254", IDENTITY, CachedModelRuntime(tmp_path),
                              devnet.ots, SystemClock(), coordinator_key=COORDINATOR,
                              policy=DestinationPolicy.devnet())
    with pytest.raises(PolicyViolation, match="cloud-metadata target"):
        metadata.poll_once()
    watcher_for(api, devnet, tmp_path, said).poll_once()  # the devnet's allowance: loopback


def test_the_node_builds_its_watcher_from_api_url_and_its_own_chain(devnet, tmp_path):
    chain_file = tmp_path / "chain" / "chain.db"
    settings = NodeSettings(
        coordinator=CoordinatorLink(api_url="http://127.0.0.1:8000", public_key=COORDINATOR),
        chain=NodeChain(local_chain=str(chain_file)),
    )
    built = weights_watcher(settings, IDENTITY, tmp_path / "models", print)
    assert built is not None and built.api_url == "http://127.0.0.1:8000"
    assert built.coordinator_key == COORDINATOR  # what its requests are signed for
    assert built.policy == DestinationPolicy()  # public targets only unless configured
    devnet_settings = NodeSettings(
        coordinator=CoordinatorLink(api_url="http://127.0.0.1:8000", public_key=COORDINATOR,
                                    allow_private_targets=True),
        chain=NodeChain(local_chain=str(chain_file)),
    )
    devnet_built = weights_watcher(devnet_settings, IDENTITY, tmp_path / "models", print)
    assert devnet_built is not None and devnet_built.policy == DestinationPolicy.devnet()
    assert weights_watcher(NodeSettings(), IDENTITY, tmp_path / "models", print) is None
    with pytest.raises(ConfigError, match=r"\[chain\] has neither"):
        weights_watcher(NodeSettings(coordinator=CoordinatorLink(api_url="http://x:1")),
                        IDENTITY, tmp_path / "models", print)


def test_the_daemon_installs_new_versions_in_the_background(api, devnet, tmp_path, network):
    from owm_adapters.control_plane.in_process import InProcessControlPlane
    from owm_adapters.node.daemon import DaemonSettings, NodeDaemon
    from owm_adapters.node.task_log import TaskLog
    from owm_adapters.node.task_runner import TaskRunner
    from tests.node.conftest import MANIFEST
    from tests.node.test_daemon import wait_for

    weights = tensors(2.0)
    model = version("owm-v6.0.0", weights, 1_800_000_000)
    api.publish(model, weights, devnet.anchored(model.digest_bytes))
    node = network.node("watching")
    said: list[str] = []
    watcher = WeightsWatcher(api.url, node.identity, CachedModelRuntime(tmp_path / "models"),
                             devnet.ots, SystemClock(), say=said.append,
                             coordinator_key=COORDINATOR, policy=DestinationPolicy.devnet())
    daemon = NodeDaemon(
        node.identity, InProcessControlPlane(network.service), MANIFEST,
        TaskRunner(model_dir=str(tmp_path / "models")), TaskLog.in_dir(tmp_path / "state"),
        SystemClock(),
        DaemonSettings(ln_node_uri=node.ln_node_uri, weights_poll_s=0.1,
                       coordinator_public_key=network.coordinator_key),
        data_dir=tmp_path / "state", say=said.append, weights=watcher,
        ln_signer=node.ln_signer,
    )
    stop = threading.Event()
    thread = threading.Thread(target=daemon.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: watcher.runtime.loaded_version("owm-geo") == "owm-v6.0.0")
    finally:
        stop.set()
        thread.join(30)
    assert any("installed owm-geo@owm-v6.0.0" in line for line in said)
