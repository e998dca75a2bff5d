"""The three command-line shells: help, the demo, identity creation, one-line errors."""

from __future__ import annotations

import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from owm_adapters.storage import keystore
from owm_cli import coordinator, main, node


@pytest.mark.parametrize("group", [main.cli, node.cli, coordinator.cli])
def test_every_command_explains_itself_with_help(group):
    result = CliRunner().invoke(group, ["--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    names = group.list_commands(click.Context(group))
    assert names
    for name in names:
        sub = CliRunner().invoke(group, [name, "--help"])
        assert sub.exit_code == 0, (name, sub.output)


def test_the_demo_walks_through_every_rule_with_real_figures():
    result = CliRunner().invoke(main.cli, ["demo"])
    assert result.exit_code == 0, result.output
    assert "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f" in result.output
    assert "signature verifies" in result.output
    assert "replayed heartbeat" in result.output and "refused" in result.output
    assert "2 distinct reporters         no decision" in result.output
    assert "3 distinct reporters         slash" in result.output
    assert "log verifies                 True" in result.output
    assert "krum vs honest mean          cosine similarity +0.9" in result.output
    assert "flagged clients              [9, 10, 11] (the poisoned ones are [9, 10, 11])" in (
        result.output
    )
    assert "after the calendar's block   confirmed: block 1" in result.output
    assert "tampered weights             refused: digest_mismatch" in result.output


def test_node_init_creates_a_private_identity_and_a_commented_config(tmp_path, monkeypatch):
    key = tmp_path / "keys" / "identity.key"
    monkeypatch.setenv("OWM_IDENTITY_KEY_PATH", str(key))
    config = tmp_path / "owm.toml"
    result = CliRunner().invoke(node.cli, ["init", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    seed_hex = key.read_text().strip()
    assert seed_hex not in result.output
    assert "node id    n" in result.output
    text = config.read_text()
    assert "[coordinator]" in text and "# " in text and str(key) in text


def test_node_init_refuses_to_overwrite_an_identity(tmp_path, monkeypatch):
    key = tmp_path / "identity.key"
    monkeypatch.setenv("OWM_IDENTITY_KEY_PATH", str(key))
    runner = CliRunner()
    first = runner.invoke(node.cli, ["init", "--config", str(tmp_path / "a.toml")])
    assert first.exit_code == 0
    before = key.read_bytes()
    second = runner.invoke(node.cli, ["init", "--config", str(tmp_path / "b.toml")])
    assert second.exit_code == 2
    assert second.output.startswith("error: ") and "refusing to overwrite" in second.output
    assert len(second.output.strip().splitlines()) == 1
    assert key.read_bytes() == before


def test_the_node_config_template_loads_back_with_its_defaults(tmp_path: Path, monkeypatch):
    from owm_adapters.bootstrap.settings import load_node_settings

    monkeypatch.setenv("OWM_IDENTITY_KEY_PATH", str(tmp_path / "id.key"))
    config = tmp_path / "owm.toml"
    CliRunner().invoke(node.cli, ["init", "--config", str(config)])
    settings = load_node_settings(config)
    assert settings.node.health_port == 8080
    assert settings.coordinator.socks5_proxy is None


def test_a_config_with_a_wrong_key_is_reported_by_its_dotted_path(tmp_path: Path):
    from owm_adapters.bootstrap.settings import ConfigError, load_node_settings

    config = tmp_path / "owm.toml"
    config.write_text("[node]\nhealth_port = 'eighty'\nbogus = 1\n")
    with pytest.raises(ConfigError) as raised:
        load_node_settings(config)
    assert "node.health_port: " in raised.value.message
    assert "node: extra fields found (bogus)" in raised.value.message


def test_coordinator_init_creates_its_key_and_tls_certificate_once_and_prints_the_pins(tmp_path):
    from owm_adapters.control_plane.tls import fingerprint_of

    key = tmp_path / "coordinator.key"
    config = tmp_path / "coordinator.toml"
    config.write_text(f'[coordinator]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    runner = CliRunner()
    first = runner.invoke(coordinator.cli, ["init", "--config", str(config), "--key", str(key)])
    assert first.exit_code == 0, first.output
    for path in (key, tmp_path / "data" / "tls.key", tmp_path / "data" / "tls.crt"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fingerprint = fingerprint_of((tmp_path / "data" / "tls.crt").read_bytes())
    public_key = keystore.load_identity(key).public_key_hex
    assert f'tls_fingerprint = "{fingerprint}"' in first.output
    assert f'public_key = "{public_key}"' in first.output
    assert "PRIVATE" not in first.output
    again = runner.invoke(coordinator.cli, ["init", "--config", str(config), "--key", str(key)])
    assert again.exit_code == 0 and "kept" in again.output
    assert f'tls_fingerprint = "{fingerprint}"' in again.output  # nothing was overwritten
