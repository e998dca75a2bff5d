"""The coordinator's data directory is 0700 and its files 0600, whatever the umask.

``owm-coordinator init`` and a first ``serve`` run under umask 0 (the worst an operator's shell
can hand down) must still leave nothing readable by other users: the registry database, the
embedded Lightning ledger with its preimages, the L402 secret, the signing key. A data
directory an older release left open is tightened when the coordinator starts.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.settings import load_coordinator_settings
from tests.adapters.files.modes import mode, open_to_others
from tests.server.test_durability_and_serve import ROOT, _read_until_ready


def test_init_and_a_first_start_under_umask_0_leave_a_private_data_directory(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "coordinator.toml"
    config.write_text(
        f'[coordinator]\ndata_dir = "{data}"\nsigning_key_path = "{data / "coordinator.key"}"\n'
        'grpc_listen = "127.0.0.1:0"\nmetrics_listen = ""\napi_listen = "127.0.0.1:0"\n'
        '[knowledge]\nembedder = "hashing"\nqdrant_path = ":memory:"\n',
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "owm_cli.coordinator"]
    init = subprocess.run(
        [*command, "init", "--config", str(config), "--key", str(data / "coordinator.key")],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT, umask=0,
    )
    assert init.returncode == 0, init.stderr
    process = subprocess.Popen(
        [*command, "serve", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=ROOT, umask=0,
    )
    try:
        _read_until_ready(process, 30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert mode(data) == 0o700
    for name in ("coordinator.key", "coordinator.sqlite3", "lightning.sqlite3", "l402.secret",
                 "tls.key", "tls.crt"):
        assert mode(data / name) == 0o600, name
    assert open_to_others(data) == []


def test_a_data_directory_left_open_is_tightened_when_the_coordinator_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    (data / "provenance").mkdir(parents=True)
    (data / "provenance" / "calendar.sqlite3").write_bytes(b"")
    (data / "provenance" / "calendar.sqlite3").chmod(0o644)
    data.chmod(0o755)
    (data / "provenance").chmod(0o755)
    config = tmp_path / "coordinator.toml"
    config.write_text(
        f'[coordinator]\ndata_dir = "{data}"\nsigning_key_path = "{data / "coordinator.key"}"\n',
        encoding="utf-8",
    )

    with caplog.at_level(logging.WARNING, logger="owm_adapters.files"):
        coordinator = build_coordinator(load_coordinator_settings(config))
    coordinator.store.close()

    assert open_to_others(data) == []
    assert f"{data} was mode 0755; tightened to 0700" in caplog.text
    assert "made private" in caplog.text
