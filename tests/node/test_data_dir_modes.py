"""The node's data directory is 0700 and its files 0600, whatever the umask.

``owm-node init`` and a first start under umask 0 must leave neither the identity key nor the
task log readable by other users; a data directory an older release left open is tightened
when the node starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from owm_adapters.bootstrap.node import build_node, detect_hardware
from owm_adapters.bootstrap.settings import load_node_settings
from owm_adapters.control_plane.in_process import InProcessControlPlane
from owm_adapters.gpu import FixedGpuProbe, FixedHostProbe
from owm_adapters.lightning.embedded import SimLedger
from owm_cli import node
from tests.adapters.files.modes import mode, open_to_others


@pytest.fixture
def no_umask(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("OWM_IDENTITY_KEY_PATH", raising=False)
    previous = os.umask(0)
    yield
    os.umask(previous)


def start_once(config: Path) -> None:
    report = detect_hardware(100, FixedGpuProbe([]), FixedHostProbe(ram=16_000, bandwidth=100))
    built = build_node(load_node_settings(config), InProcessControlPlane(None),  # type: ignore[arg-type]
                       report=report, say=lambda _line: None)
    with built.running():
        pass


def initialised(tmp_path: Path) -> Path:
    """``owm-node init --data-dir``: the node's data directory."""
    data = tmp_path / "node"
    init = CliRunner().invoke(
        node.cli, ["init", "--config", str(tmp_path / "init.toml"), "--data-dir", str(data)]
    )
    assert init.exit_code == 0, init.output
    return data


def configure(tmp_path: Path, data: Path) -> Path:
    ledger = tmp_path / "ln.sqlite3"  # the node's Lightning node, outside its data directory
    ln_pubkey = SimLedger(ledger).add_node("node")
    config = tmp_path / "owm.toml"
    config.write_text(
        f'[node]\ndata_dir = "{data}"\nidentity_key = "{data / "identity.key"}"\n'
        "health_port = 0\n"
        f'[coordinator]\npublic_key = "{"ab" * 32}"\ntls_fingerprint = "{"ab" * 32}"\n'
        f'[lightning]\nnode_uri = "{ln_pubkey}@127.0.0.1:9735"\n'
        f'backend = "embedded"\nledger_path = "{ledger}"\nledger_alias = "node"\n',
        encoding="utf-8",
    )
    return config


def test_init_and_a_first_start_under_umask_0_leave_a_private_data_directory(
    tmp_path: Path, no_umask: None
) -> None:
    data = initialised(tmp_path)

    start_once(configure(tmp_path, data))

    assert mode(data) == 0o700
    assert mode(data / "identity.key") == mode(data / "tasks.sqlite3") == 0o600
    assert open_to_others(data) == []


def test_a_data_directory_left_open_is_tightened_when_the_node_starts(
    tmp_path: Path, no_umask: None
) -> None:
    data = initialised(tmp_path)
    (data / "weights").mkdir()
    (data / "weights" / "v1.json").write_text("{}")
    data.chmod(0o777)

    start_once(configure(tmp_path, data))

    assert open_to_others(data) == []
