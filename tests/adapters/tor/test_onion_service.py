"""The coordinator's onion service with a real ``tor`` (Debian's package; CI installs it),
offline: ``DisableNetwork 1`` creates the v3 service, its key and hostname before any network
bootstrap (SRS-COORD-07/08/09).

What cannot run without the Tor network: a node actually reaching the ``.onion`` address.
That path is covered in two halves — the node's SOCKS5 route against a local SOCKS5 server
(``tests/node/test_socks5_route.py``) and the onion port served by the coordinator's one gRPC
server (``tests/server/test_onion_transport.py``); here, that tor maps the onion service to
exactly that port.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import stem.control

from owm_adapters.tor.onion import OnionService, TorUnavailable
from owm_cli.node import cli as node_cli
from tests.server.test_durability_and_serve import ROOT, _read_until_ready

V3 = re.compile(r"[a-z2-7]{56}\.onion")


def _offline_onion(tmp_path: Path) -> OnionService:
    return OnionService(tmp_path / "hidden_service", launch=True, disable_network=True,
                        data_dir=tmp_path / "tor")


def test_tor_creates_the_v3_service_whose_hostname_is_read_logged_and_kept_across_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    onion = _offline_onion(tmp_path)
    with caplog.at_level(logging.INFO, logger="owm_adapters.tor.onion"):
        hostname = onion.start(45002)
    try:
        assert V3.fullmatch(hostname)
        assert (tmp_path / "hidden_service" / "hostname").read_text().strip() == hostname
        assert (tmp_path / "hidden_service" / "hs_ed25519_secret_key").exists()
        assert any(hostname in r.getMessage() for r in caplog.records)
        assert onion.address == f"{hostname}:9002"
        with stem.control.Controller.from_socket_file(str(tmp_path / "tor" / "control")) as c:
            c.authenticate()
            ports = c.get_conf("HiddenServicePort", multiple=True)
        assert ports == ["9002 127.0.0.1:45002"]
    finally:
        onion.stop()
    again = _offline_onion(tmp_path)
    try:
        assert again.start(45002) == hostname  # the key lives in the service directory
    finally:
        again.stop()


def test_an_unreachable_control_port_is_one_clear_error(tmp_path: Path) -> None:
    onion = OnionService(tmp_path / "hs", control_port="127.0.0.1:9")
    with pytest.raises(TorUnavailable, match=r"cannot use tor's control port at 127\.0\.0\.1:9"):
        onion.start(9002)


def test_serve_publishes_its_onion_address_on_the_api_and_owm_node_reads_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "coordinator.toml"
    config.write_text(
        f'[coordinator]\ndata_dir = "{tmp_path / "data"}"\n'
        f'signing_key_path = "{tmp_path / "coordinator.key"}"\n'
        'grpc_listen = "127.0.0.1:0"\nmetrics_listen = ""\napi_listen = "127.0.0.1:0"\n'
        'onion_listen = "127.0.0.1:0"\n'
        '[knowledge]\nenabled = false\n[fl]\nenabled = false\n'
        '[tor]\nenabled = true\nlaunch = true\ndisable_network = true\n',
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "owm_cli.coordinator", "serve", "--config", str(config)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = _read_until_ready(process, 60, drain=True)
        (service,) = [x for x in lines if x.startswith("onion service")]
        address = service.split()[2]
        hostname = address.rpartition(":")[0]
        assert V3.fullmatch(hostname) and address.endswith(":9002")
        hidden = tmp_path / "data" / "tor" / "hidden_service"
        assert (hidden / "hostname").read_text().strip() == hostname
        onion_port = next(x for x in lines if x.startswith("onion endpoint")).rsplit(":", 1)[1]
        with stem.control.Controller.from_socket_file(
            str(tmp_path / "data" / "tor" / "daemon" / "control")
        ) as c:
            c.authenticate()
            assert c.get_conf("HiddenServicePort") == f"9002 127.0.0.1:{onion_port}"
        api = next(x.split()[-1] for x in lines if x.startswith("HTTP API")).removesuffix("/v1")
        with urllib.request.urlopen(f"{api}/v1/network/coordinator", timeout=5) as reply:
            assert f'"onion_address":"{address}"' in reply.read().decode().replace(" ", "")
        from click.testing import CliRunner

        shown = CliRunner().invoke(node_cli, ["coordinator-info", api])
        assert shown.exit_code == 0, shown.output
        assert f'url = "{address}"' in shown.output
        assert 'socks5_proxy = "127.0.0.1:9050"' in shown.output
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0
        except subprocess.TimeoutExpired:
            raise AssertionError("no exit 30 s after SIGTERM:\n" + "\n".join(lines[-40:])) from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_with_tor_on_the_onion_port_defaults_to_local_only_9002_and_a_public_one_is_refused() -> (
    None
):
    from owm_adapters.bootstrap.settings import (
        ConfigError,
        CoordinatorSection,
        CoordinatorSettings,
        TorSection,
    )
    from owm_adapters.bootstrap.tor import onion_listen_of

    on = TorSection(enabled=True)
    assert onion_listen_of(CoordinatorSettings(tor=on)) == "127.0.0.1:9002"
    assert onion_listen_of(CoordinatorSettings()) == ""
    public = CoordinatorSettings(
        tor=on, coordinator=CoordinatorSection(onion_listen="0.0.0.0:9002")
    )
    with pytest.raises(ConfigError, match="must be a loopback address"):
        onion_listen_of(public)
