"""``owm-coordinator api-key``: keys issued on the command line work against the store."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from owm_adapters.storage.sql import open_repositories, sqlite_url
from owm_cli.api_keys import api_key
from owm_core.access.api_keys import Plan, secret_sha256


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "coordinator.toml"
    config.write_text(f'[coordinator]\ndata_dir = "{tmp_path / "data"}"\n')
    return config


def test_a_created_key_is_stored_by_digest_and_can_be_revoked(tmp_path: Path) -> None:
    config = _config(tmp_path)
    runner = CliRunner()
    created = runner.invoke(
        api_key, ["create", "--owner", "acme", "--plan", "commercial", "--config", str(config)]
    )
    assert created.exit_code == 0, created.output
    secret = re.search(r"secret  (owm_[0-9a-f]{48})", created.output)
    key_id = re.search(r"key id  (key_[0-9a-f]{16})", created.output)
    assert secret is not None and key_id is not None
    repos = open_repositories(sqlite_url(tmp_path / "data"))
    try:
        stored = repos.api_keys.get_by_secret_sha256(secret_sha256(secret[1]))
        assert stored is not None and stored.plan is Plan.COMMERCIAL and stored.owner == "acme"
        assert secret[1] not in str(stored)
    finally:
        repos.close()
    revoked = runner.invoke(api_key, ["revoke", key_id[1], "--config", str(config)])
    assert revoked.exit_code == 0, revoked.output
    unknown = runner.invoke(api_key, ["revoke", "key_nope", "--config", str(config)])
    assert unknown.exit_code != 0 and "no API key" in unknown.output


def test_a_key_created_with_json_prints_one_object_whose_secret_works(tmp_path: Path) -> None:
    config = _config(tmp_path)
    created = CliRunner().invoke(
        api_key, ["create", "--owner", "bob", "--config", str(config), "--json"]
    )
    assert created.exit_code == 0, created.output
    report = json.loads(created.stdout)
    assert (report["owner"], report["plan"]) == ("bob", "free")
    repos = open_repositories(sqlite_url(tmp_path / "data"))
    try:
        stored = repos.api_keys.get_by_secret_sha256(secret_sha256(report["secret"]))
        assert stored is not None and stored.key_id == report["key_id"]
    finally:
        repos.close()
