"""Settings from the environment (``OWM_<SECTION>__<KEY>``, ``DATABASE_URL``) and the refusal
of configuration files that hold a secret but are open to other users."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from owm_adapters.bootstrap.config_sources import env_variable
from owm_adapters.bootstrap.settings import (
    ConfigError,
    load_coordinator_settings,
    load_node_settings,
)
from owm_cli import coordinator, node

PG_WITH_PASSWORD = "postgresql+psycopg://owm:s3cret-pw@db.example:5432/owm"


def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


def test_every_setting_has_its_variable_named_after_section_and_key() -> None:
    assert env_variable("funding", "max_price_msat") == "OWM_FUNDING__MAX_PRICE_MSAT"


def test_the_environment_sets_integers_floats_booleans_strings_and_lists() -> None:
    settings = load_coordinator_settings(None, {
        "OWM_FUNDING__MAX_PRICE_MSAT": "5000",
        "OWM_FL__MAX_F": "-1",
        "OWM_FL__LR": "0.25",
        "OWM_KNOWLEDGE__ENABLED": "False",
        "OWM_FL__ENABLED": "0",
        "OWM_COORDINATOR__API_LISTEN": "0.0.0.0:9000",
        "OWM_STAKE__MAINTAINER_KEYS": "aa, bb",
        "OWM_FUNDING__NETWORK_SUBMITTERS": f'["{"ab" * 32}"]',
    })

    assert settings.funding.max_price_msat == 5000 and settings.fl.max_f == -1
    assert settings.fl.lr == 0.25
    assert settings.knowledge.enabled is False and settings.fl.enabled is False
    assert settings.coordinator.api_listen == "0.0.0.0:9000"
    assert settings.stake.maintainer_keys == ("aa", "bb")
    assert settings.funding.network_submitters == ("ab" * 32,)


def test_node_lists_optional_strings_and_an_empty_list_come_from_the_environment() -> None:
    settings = load_node_settings(None, {
        "OWM_TASKS__TYPES": "inference",
        "OWM_NODE__RELEASE_KEYS": "",
        "OWM_COORDINATOR__SOCKS5_PROXY": "127.0.0.1:9050",
        "OWM_COORDINATOR__ALLOW_PRIVATE_TARGETS": "yes",
        "OWM_NODE__HEALTH_PORT": "9090",
    })

    assert settings.tasks.types == ["inference"] and settings.node.release_keys == []
    assert settings.coordinator.socks5_proxy == "127.0.0.1:9050"
    assert settings.coordinator.allow_private_targets is True
    assert settings.node.health_port == 9090
    assert load_node_settings(None, {"OWM_COORDINATOR__SOCKS5_PROXY": ""}).coordinator \
        .socks5_proxy is None


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("OWM_FUNDING__MAX_PRICE_MSAT", "lots", "must be an integer"),
    ("OWM_FL__LR", "fast", "must be a number"),
    ("OWM_KNOWLEDGE__ENABLED", "maybe", "must be a boolean"),
    ("OWM_STAKE__MAINTAINER_KEYS", "[1, 2]", "must be a JSON array of strings"),
])
def test_an_invalid_value_is_refused_naming_the_variable_and_the_key(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_coordinator_settings(None, {variable: value})

    section, key = variable.removeprefix("OWM_").lower().split("__")
    assert refused.value.message.startswith(f"{variable} ({section}.{key}): {message}")


def test_a_checked_value_from_the_environment_is_refused_like_one_from_the_file() -> None:
    with pytest.raises(ConfigError, match=r"funding\.max_price_msat: must be at least 1") as err:
        load_coordinator_settings(None, {"OWM_FUNDING__MAX_PRICE_MSAT": "0"})
    assert str(err.value).startswith("settings (defaults and environment): ")


def test_a_misspelt_variable_of_the_scheme_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^OWM_FUNDNG__FEE_PPM: no such setting"):
        load_coordinator_settings(None, {"OWM_FUNDNG__FEE_PPM": "1"})
    with pytest.raises(ConfigError, match=r"^OWM_NODE__HEALTH_PROT: no such setting"):
        load_node_settings(None, {"OWM_NODE__HEALTH_PROT": "1"})


def test_the_other_programs_variables_and_the_older_single_underscore_ones_are_ignored() -> None:
    shared = {
        "OWM_FUNDING__FEE_PPM": "1",          # a coordinator key, in a node's environment
        "OWM_TASKS__MAX_CONCURRENT": "2",     # a node key, in a coordinator's environment
        "OWM_COORDINATOR_URL": "10.0.0.1:50051",
        "OWM_IDENTITY_KEY_PATH": "/tmp/key",
        "OWM_LOG_LEVEL": "DEBUG",
        "OWM_DEBUG": "1",
    }

    assert load_node_settings(None, shared).tasks.max_concurrent == 2
    assert load_coordinator_settings(None, shared).funding.fee_ppm == 1


def test_database_url_sets_the_coordinators_store_and_the_scheme_variable_wins() -> None:
    by_convention = load_coordinator_settings(None, {"DATABASE_URL": "sqlite:///a.db"})
    both = load_coordinator_settings(None, {
        "DATABASE_URL": "sqlite:///a.db", "OWM_COORDINATOR__DATABASE_URL": "sqlite:///b.db"
    })

    assert by_convention.coordinator.database_url == "sqlite:///a.db"
    assert both.coordinator.database_url == "sqlite:///b.db"
    assert load_node_settings(None, {"DATABASE_URL": "sqlite:///a.db"}) is not None


def test_the_environment_wins_over_the_file_which_wins_over_the_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.toml",
                  "[funding]\nfee_ppm = 7\nmax_price_msat = 9\n", 0o600)

    settings = load_coordinator_settings(path, {"OWM_FUNDING__FEE_PPM": "8"})

    assert settings.funding.fee_ppm == 8             # environment
    assert settings.funding.max_price_msat == 9      # file
    assert settings.funding.task_ttl_s == 86_400     # default


def test_the_process_environment_is_read_when_none_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWM_TASKS__REDUNDANCY", "5")

    assert load_coordinator_settings(None).tasks.redundancy == 5


@pytest.mark.parametrize(("text", "key"), [
    (f'[coordinator]\ndatabase_url = "{PG_WITH_PASSWORD}"\n', "coordinator.database_url"),
    ('[knowledge]\nqdrant_url = "https://u:pw@qdrant.example"\n', "knowledge.qdrant_url"),
])
def test_a_group_readable_coordinator_config_with_a_secret_is_refused(
    tmp_path: Path, text: str, key: str
) -> None:
    path = _write(tmp_path / "c.toml", text, 0o640)

    with pytest.raises(ConfigError) as refused:
        load_coordinator_settings(path, {})

    assert refused.value.message == (
        f"{path} holds a secret ({key}) but is readable by group or others (mode 0640): "
        f"run chmod 600 {path}"
    )
    assert "s3cret" not in refused.value.message and "pw@" not in refused.value.message


def test_a_world_readable_node_config_with_an_rpc_password_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "owm.toml", '[chain]\nrpc_password = "hunter2"\n', 0o604)

    with pytest.raises(ConfigError, match=r"\(chain.rpc_password\).*chmod 600") as refused:
        load_node_settings(path, {})
    assert "hunter2" not in refused.value.message


def test_the_same_secrets_in_a_private_file_are_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.toml", f'[coordinator]\ndatabase_url = "{PG_WITH_PASSWORD}"\n',
                  0o600)

    assert load_coordinator_settings(path, {}).coordinator.database_url == PG_WITH_PASSWORD


def test_a_readable_config_without_secrets_is_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.toml",
                  '[coordinator]\ndatabase_url = "postgresql+psycopg://owm@db/owm"\n'
                  '[lightning]\nlnd_macaroon = "/secrets/admin.macaroon"\n',
                  0o644)

    assert load_coordinator_settings(path, {}).lightning.lnd_macaroon == "/secrets/admin.macaroon"


def test_the_cli_refuses_a_readable_secret_config_in_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.toml", f'[coordinator]\ndatabase_url = "{PG_WITH_PASSWORD}"\n',
                  0o644)

    result = CliRunner().invoke(coordinator.cli, ["init", "--config", str(path)], env={})

    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        f"error: {path} holds a secret (coordinator.database_url) but is readable by group or "
        f"others (mode 0644): run chmod 600 {path}"
    ]


def test_the_cli_names_an_invalid_variable_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(node.cli, ["hardware", "--config", str(tmp_path / "none.toml")],
                                env={"OWM_NODE__BANDWIDTH_MBPS": "fast"})

    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        "error: OWM_NODE__BANDWIDTH_MBPS (node.bandwidth_mbps): must be an integer"
    ]


def test_owm_node_init_writes_its_config_readable_by_the_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OWM_IDENTITY_KEY_PATH", raising=False)
    config = tmp_path / "owm.toml"

    result = CliRunner().invoke(node.cli, ["init", "--config", str(config),
                                           "--data-dir", str(tmp_path / "data")])

    assert result.exit_code == 0, result.output
    assert config.stat().st_mode & 0o777 == 0o600
