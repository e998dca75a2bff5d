"""CLN-specific behaviour: the JSON-RPC wire format and an unreachable socket (SRS-LN-01)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from owm_adapters.cln import ClnLightning
from owm_adapters.sim_ln import SimLedger
from owm_core.errors import ForceCloseNotPermitted, LightningUnavailable
from tests.fakes.cln_server import FakeCln

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeCln]:
    ledger = SimLedger(tmp_path / "ln.sqlite")
    ledger.add_node("treasury")
    directory = tempfile.mkdtemp(prefix="owm-cln-", dir="/tmp")
    server = FakeCln(ledger, "treasury", os.path.join(directory, "lightning-rpc")).start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


def test_the_adapter_sends_compact_json_rpc_and_the_reply_echoes_its_id(fake: FakeCln) -> None:
    pubkey = ClnLightning(fake.socket_path).node_pubkey()
    (request,) = fake.requests
    assert request["jsonrpc"] == "2.0" and request["method"] == "getinfo"
    assert pubkey == fake.node.node_pubkey()
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(fake.socket_path)
        raw.sendall(b'{"jsonrpc":"2.0","id":"probe:1","method":"nosuch","params":{}}')
        reply = b""
        while not reply.endswith(b"\n\n"):
            reply += raw.recv(4096)
    answer = json.loads(reply)
    assert answer["id"] == "probe:1" and answer["error"]["code"] == -32601


def test_a_missing_socket_is_lightning_unavailable(tmp_path: Path) -> None:
    adapter = ClnLightning(tmp_path / "nothing-here")
    with pytest.raises(LightningUnavailable, match="CLN getinfo failed"):
        adapter.node_pubkey()


def test_without_a_force_close_socket_force_close_is_refused(fake: FakeCln) -> None:
    with pytest.raises(ForceCloseNotPermitted, match="SRS-SEC-13"):
        ClnLightning(fake.socket_path).force_close("ab" * 32 + ":0")
