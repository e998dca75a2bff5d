"""`coordinator.toml`: defaults, the [tasks] policy, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from owm_adapters.bootstrap.coordinator import (
    database_url_of,
    query_config_of,
    service_config_of,
)
from owm_adapters.bootstrap.settings import ConfigError, load_coordinator_settings
from owm_cli.coordinator import api_config_of, http_limits_of
from owm_core.market.tasks import VerificationMode


def test_no_file_means_embedded_defaults() -> None:
    settings = load_coordinator_settings(None)

    assert settings.coordinator.grpc_listen == "127.0.0.1:50051"
    assert settings.coordinator.metrics_listen == "127.0.0.1:9464"
    assert settings.lightning.backend == "embedded"
    assert service_config_of(settings).verification.redundancy == 3
    assert service_config_of(settings).verification.redundancy_floor == 2


def test_the_redundancy_floor_is_read_from_the_file_and_the_environment_wins(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[tasks]\nredundancy = 5\nredundancy_floor = 3\n", encoding="utf-8")

    from_file = service_config_of(load_coordinator_settings(path, environ={}))
    overridden = service_config_of(
        load_coordinator_settings(path, environ={"OWM_TASKS__REDUNDANCY_FLOOR": "4"})
    )
    one = service_config_of(load_coordinator_settings(
        None, environ={"OWM_TASKS__REDUNDANCY": "1"}
    ))

    assert (from_file.verification.redundancy, from_file.verification.redundancy_floor) == (5, 3)
    assert overridden.verification.redundancy_floor == 4
    assert one.verification.redundancy_floor == 1  # the default never exceeds redundancy


def test_the_total_of_open_top_up_invoices_is_read_from_the_file_and_the_environment(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[funding]\nmax_open_top_ups = 500\n", encoding="utf-8")
    sources: list[tuple[Path | None, dict[str, str]]] = [
        (path, {}), (path, {"OWM_FUNDING__MAX_OPEN_TOP_UPS": "7"}), (None, {}),
    ]

    caps = [
        service_config_of(load_coordinator_settings(p, environ=env)).funding.max_open_top_ups
        for p, env in sources
    ]

    assert caps == [500, 7, 10_000]  # the file, the environment over it, the default


def test_the_tasks_section_selects_spot_checks_and_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[coordinator]\ndata_dir = "{tmp_path}"\n'
        '[tasks]\nverification = "spot"\nspot_rate_ppm = 50000\nassignment_timeout_s = 90\n'
        'queue_timeout_s = 120\n',
        encoding="utf-8",
    )

    settings = load_coordinator_settings(path)
    config = service_config_of(settings)

    assert config.verification.mode is VerificationMode.SPOT_CHECK
    assert config.verification.spot_check_rate_ppm == 50_000
    assert config.assignment_timeout_s == 90
    assert config.queue_timeout_s == 120
    assert database_url_of(settings) == f"sqlite:///{tmp_path / 'coordinator.sqlite3'}"


def test_the_knowledge_section_sets_the_query_timeout_and_the_readers_precision(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[knowledge]\nquery_timeout_s = 9\nreader_int8 = false\n", encoding="utf-8")

    default = query_config_of(load_coordinator_settings(None, environ={}))
    configured = query_config_of(load_coordinator_settings(path, environ={}))

    assert (default.timeout_s, default.reader_int8) == (4, True)
    assert (configured.timeout_s, configured.reader_int8) == (9, False)


def test_a_whole_number_is_taken_where_seconds_may_be_fractional_but_no_other_coercion_is(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[pool]\nlogin_timeout_s = 30\ntemplate_poll_s = 2\n")
    pool = load_coordinator_settings(path).pool
    assert (pool.login_timeout_s, pool.template_poll_s) == (30.0, 2.0)
    assert type(pool.login_timeout_s) is float and type(pool.template_poll_s) is float

    for refused, named in (
        ("[pool]\nlogin_timeout_s = true\n", "pool.login_timeout_s"),
        ('[pool]\nlogin_timeout_s = "30"\n', "pool.login_timeout_s"),
        ("[pool]\nmax_connections = 10.0\n", "pool.max_connections"),
    ):
        path.write_text(refused)
        with pytest.raises(ConfigError, match=named):
            load_coordinator_settings(path)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[coordinator]\ngrpc_port = 1\n", "grpc_port"),
        ('[tasks]\nverification = "vote"\n', "tasks.verification"),
        ('[lightning]\nbackend = "eclair"\n', "lightning.backend"),
        ("[coordinator]\ngrpc_max_workers = 1\n", "coordinator.grpc_max_workers"),
        ("[coordinator]\ngrpc_stream_idle_s = 0\n", "coordinator.grpc_stream_idle_s"),
        ("[coordinator]\napi_body_timeout_s = 0\n", "coordinator.api_body_timeout_s"),
        ("[coordinator]\napi_max_connections_per_ip = 0\n",
         "coordinator.api_max_connections_per_ip"),
        ("[coordinator]\ngrpc_heartbeat_streams = -1\n", "coordinator.grpc_heartbeat_streams"),
        (
            "[coordinator]\ngrpc_heartbeat_streams_per_peer = 0\n",
            "coordinator.grpc_heartbeat_streams_per_peer",
        ),
        ("[funding]\nmax_open_top_ups = 0\n", "funding.max_open_top_ups"),
        ("[coordinator]\napi_public_requests_per_minute = 0\n",
         "coordinator.api_public_requests_per_minute"),
        ("[tasks]\nredundancy = 3\nredundancy_floor = 4\n", "tasks.redundancy_floor"),
        ("[tasks]\nredundancy_floor = -1\n", "tasks.redundancy_floor"),
        ("[knowledge]\nquery_timeout_s = 0\n", "knowledge.query_timeout_s"),
        ("[github]\nbounty_lapse_s = 59\n", "github.bounty_lapse_s"),
        ("[funding]\nquery_share_msat_per_caller = -1\n", "funding.query_share_msat_per_caller"),
    ],
)
def test_a_wrong_key_or_value_is_refused_naming_it(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ConfigError, match=named):
        load_coordinator_settings(path)


def test_the_public_apis_connection_limits_are_read_from_the_file_and_reach_the_server(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[coordinator]\napi_body_timeout_s = 12\napi_max_connections_per_ip = 7\n"
        'api_trusted_proxies = ["10.0.0.1"]\n',
        encoding="utf-8",
    )
    limits = http_limits_of(load_coordinator_settings(path, environ={}).coordinator)
    assert (limits.body_timeout_s, limits.max_connections_per_ip) == (12.0, 7)
    assert limits.trusted_proxies == ("10.0.0.1",)
    defaults = http_limits_of(load_coordinator_settings(None, environ={}).coordinator)
    assert (defaults.body_timeout_s, defaults.max_connections_per_ip) == (30.0, 64)


def test_the_public_operations_limit_per_address_is_read_from_the_file_and_reaches_the_api(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[coordinator]\napi_public_requests_per_minute = 30\n", encoding="utf-8")
    config = api_config_of(load_coordinator_settings(path, environ={}).coordinator)
    assert (config.public_per_client.limit, config.public_per_client.window_s) == (30, 60)
    default = api_config_of(load_coordinator_settings(None, environ={}).coordinator)
    assert default.public_per_client.limit == 120
