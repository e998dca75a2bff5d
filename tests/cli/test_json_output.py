"""``--json`` on every command that reports (SRS 4.1, docs/cli.md): the command prints one JSON
object on stdout holding what its text says, and progress goes to stderr so stdout parses.

Commands that only act (start a daemon, write a file, stop something) are listed with why;
any other command without ``--json`` fails here, so a new reporting command cannot forget it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
from click.testing import CliRunner

from owm_cli import coordinator, main, mine, node
from owm_cli.ots import EXIT_PENDING
from tests.cli.test_data_cli import DATASET

#: Commands that report nothing a script would parse: daemons, file writers, one-line actions.
NOT_REPORTING = {
    "owm demo": "a narrated tour for people, not figures",
    "owm devnet attack": "switches a node's behaviour; one confirmation line",
    "owm devnet down": "stops processes; one confirmation line",
    "owm devnet gov-time": "moves the devnet's governance clock; one confirmation line",
    "owm release manifest": "writes M.json, which is the JSON",
    "owm release sign": "writes M.json.sig, which is the JSON",
    "owm treasury psbt sign": "writes the signed PSBT file",
    "owm-node start": "the node daemon",
    "owm-coordinator serve": "the coordinator daemon",
    "owm-coordinator api-key revoke": "revokes a key; one confirmation line",
    "owm-mine run": "the miner daemon",
    "owm-mine proxy": "the login proxy daemon",
}


def _leaves(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    ctx = click.Context(group)
    found: list[tuple[str, click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found += _leaves(command, path)
        elif not command.hidden:
            found.append((path, command))
    return found


COMMANDS = [leaf for group, prog in ((main.cli, "owm"), (node.cli, "owm-node"),
                                     (coordinator.cli, "owm-coordinator"), (mine.cli, "owm-mine"))
            for leaf in _leaves(group, prog)]


def test_every_command_that_reports_takes_json_and_the_exempt_ones_exist() -> None:
    paths = {path for path, _ in COMMANDS}
    assert set(NOT_REPORTING) <= paths, set(NOT_REPORTING) - paths
    missing = [path for path, command in COMMANDS if path not in NOT_REPORTING
               and not any("--json" in p.opts for p in command.params)]
    assert missing == []


def _json(result: Any, exit_code: int = 0) -> dict[str, Any]:
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


def test_ots_stamp_upgrade_and_info_print_one_json_object_each(tmp_path: Path) -> None:
    runner = CliRunner()
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights of owm-v0.7.0")
    devnet = ["--calendar", str(tmp_path / "cal.db"), "--local-chain", str(tmp_path / "c.db")]
    stamped = _json(runner.invoke(main.cli, ["ots", "stamp", "--file", str(model), *devnet,
                                             "--json"]))
    proof = tmp_path / "model.bin.ots"
    assert stamped["digest"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert stamped["status"] == "pending" and stamped["file"] == str(proof)
    assert len(stamped["calendars"]) == 1
    pending = _json(runner.invoke(main.cli, ["ots", "upgrade", str(proof), *devnet, "--json"]),
                    EXIT_PENDING)
    assert pending["status"] == "pending" and pending["height"] is None
    upgraded = _json(runner.invoke(main.cli, ["ots", "upgrade", str(proof), *devnet, "--flush",
                                              "--json"]))
    assert upgraded["status"] == "complete" and upgraded["height"] == 1
    assert upgraded["flushed"] == {"leaves": 1, "height": 1}
    info = _json(runner.invoke(main.cli, ["ots", "info", str(proof), "--json"]))
    assert info["digest"] == stamped["digest"] and info["hash_op"] == "sha256"
    heights = [a["height"] for a in info["attestations"] if a["height"] is not None]
    assert heights == [1]
    text = runner.invoke(main.cli, ["ots", "info", str(proof)]).output
    assert f"File sha256 hash: {info['digest']}" in text
    assert "Attestation: Bitcoin block 1, merkle root " in text


def test_data_validate_prints_the_summary_as_json(tmp_path: Path) -> None:
    path = tmp_path / "rivers.json"
    path.write_text(json.dumps(DATASET))
    report = _json(CliRunner().invoke(main.cli, ["data", "validate", str(path), "--json"]))
    assert report["valid"] is True and report["name"] == "rivers"
    assert report["documents"] == 1 and report["sub_models"] == ["owm-geo"]
    assert len(report["digest"]) == 64


def test_coordinator_init_and_migrate_and_node_init_print_json(tmp_path: Path) -> None:
    runner = CliRunner()
    config = tmp_path / "coordinator.toml"
    config.write_text(
        f'[coordinator]\ndata_dir = "{tmp_path / "data"}"\n'
        f'signing_key_path = "{tmp_path / "coordinator.key"}"\n', encoding="utf-8")
    init = _json(runner.invoke(coordinator.cli, ["init", "--config", str(config), "--json"]))
    assert init["signing_key_created"] is True and init["tls_created"] is True
    assert len(init["tls_fingerprint"]) == 64 and len(init["public_key"]) == 64
    again = _json(runner.invoke(coordinator.cli, ["init", "--config", str(config), "--json"]))
    assert again["signing_key_created"] is False and again["public_key"] == init["public_key"]
    migrated = _json(runner.invoke(coordinator.cli, ["migrate", "--config", str(config),
                                                     "--json"]))
    assert migrated["before"] is None and migrated["upgraded"] is True
    current = _json(runner.invoke(coordinator.cli, ["migrate", "--config", str(config),
                                                    "--json"]))
    assert current == {"before": migrated["after"], "after": migrated["after"],
                       "upgraded": False}
    node_init = _json(runner.invoke(node.cli, ["init", "--config", str(tmp_path / "owm.toml"),
                                               "--data-dir", str(tmp_path / "node"), "--json"]))
    assert node_init["config_path"] == str(tmp_path / "owm.toml")
    assert node_init["identity_key_path"] == str(tmp_path / "node" / "identity.key")


def test_devnet_up_with_json_prints_the_endpoints_on_stdout_and_progress_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from owm_adapters.bootstrap import devnet as bootstrap_devnet

    state = SimpleNamespace(nodes=(1, 2), api_url="http://127.0.0.1:8123",
                            calendar_url="http://127.0.0.1:8124", api_key="owm_" + "ab" * 16)

    class Built:
        def start(self, say: Any) -> Any:
            say("coordinator ready")
            return state

    def build(layout: Any, nodes: int, *, say: Any, **_: Any) -> Built:
        say("provisioning")
        return Built()

    monkeypatch.setattr(bootstrap_devnet, "build_devnet", build)
    result = CliRunner().invoke(main.cli, ["devnet", "up", "--data-dir", str(tmp_path),
                                           "--json"])
    report = _json(result)
    assert report["api_url"] == "http://127.0.0.1:8123/v1" and report["nodes"] == 2
    assert report["api_key"] == state.api_key
    assert "provisioning" in result.stderr and "coordinator ready" in result.stderr
