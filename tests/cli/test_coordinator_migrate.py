"""``owm-coordinator migrate`` upgrades the schema; ``serve`` creates an empty database at the
latest schema but refuses one behind it, naming the command that upgrades it."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from owm_adapters.bootstrap.coordinator import repositories_from
from owm_adapters.bootstrap.settings import load_coordinator_settings
from owm_adapters.storage.sql import current_revision, downgrade, head_revision, sqlite_url
from owm_cli.coordinator import cli

OLDER = "0012"
#: The tables of a SQLite database (a later migration may replace an index by a better one).
TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "coordinator.toml"
    config.write_text(
        f'[coordinator]\ndata_dir = "{tmp_path / "data"}"\n'
        f'signing_key_path = "{tmp_path / "coordinator.key"}"\n',
        encoding="utf-8",
    )
    return config


def _older_database(tmp_path: Path, config: Path) -> str:
    url = sqlite_url(tmp_path / "data")
    migrated = CliRunner().invoke(cli, ["migrate", "--config", str(config)])
    assert migrated.exit_code == 0, migrated.output
    downgrade(url, OLDER)
    assert current_revision(url) == OLDER
    return url


def test_migrate_creates_an_absent_database_at_the_latest_schema_and_says_so(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    result = CliRunner().invoke(cli, ["migrate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"upgraded from empty to {head_revision()}" in result.output
    assert current_revision(sqlite_url(tmp_path / "data")) == head_revision()
    again = CliRunner().invoke(cli, ["migrate", "--config", str(config)])
    assert "already at the latest revision" in again.output


def test_serve_refuses_a_database_behind_the_latest_schema_in_one_line_naming_migrate(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    url = _older_database(tmp_path, config)
    result = CliRunner().invoke(cli, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"revision {OLDER}" in lines[0] and "`owm-coordinator migrate`" in lines[0]
    assert "Traceback" not in result.output
    assert current_revision(url) == OLDER  # refused, not silently altered


def test_migrate_upgrades_an_older_database_keeping_its_rows_and_serve_then_accepts_it(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    url = _older_database(tmp_path, config)
    with sqlite3.connect(tmp_path / "data" / "coordinator.sqlite3") as db:
        before = {name for (name,) in db.execute(TABLES)}
    result = CliRunner().invoke(cli, ["migrate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"upgraded from {OLDER} to {head_revision()}" in result.output
    assert current_revision(url) == head_revision()
    repositories_from(load_coordinator_settings(config)).close()  # what serve opens
    with sqlite3.connect(tmp_path / "data" / "coordinator.sqlite3") as db:
        after = {name for (name,) in db.execute(TABLES)}
    assert before <= after


def test_the_coordinator_creates_a_fresh_empty_database_at_the_latest_schema(
    tmp_path: Path,
) -> None:
    repositories_from(load_coordinator_settings(_config(tmp_path))).close()
    assert current_revision(sqlite_url(tmp_path / "data")) == head_revision()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends: nobody listens


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_a_database_that_cannot_be_reached_is_one_line_naming_the_cause_and_never_the_password(
    tmp_path: Path, command: str
) -> None:
    config = tmp_path / "coordinator.toml"
    url = f"postgresql+psycopg://owm:s3cret-pw@127.0.0.1:{_closed_port()}/owm"
    config.write_text(
        f'[coordinator]\ndatabase_url = "{url}"\n'
        f'signing_key_path = "{tmp_path / "coordinator.key"}"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    result = CliRunner().invoke(cli, [command, "--config", str(config)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: cannot connect to the coordinator's database (")
    assert "Connection refused" in lines[0] and "database_url" in lines[0]
    assert "s3cret-pw" not in result.output and "Traceback" not in result.output
