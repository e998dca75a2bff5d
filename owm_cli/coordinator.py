"""``owm-coordinator``: what a coordinator operator runs (SRS 4.10)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import click

from owm_adapters.bootstrap import logs
from owm_adapters.bootstrap.settings import ConfigError
from owm_adapters.storage import keystore
from owm_cli.api_keys import api_key
from owm_cli.errors import OwmGroup
from owm_cli.options import (
    config_option,
    json_option,
    logging_options,
    render,
    version_option,
)
from owm_cli.signals import stopped_by_signals
from owm_core.access.ratelimit import Transport

if TYPE_CHECKING:
    from owm_adapters.bootstrap.coordinator import Coordinator
    from owm_adapters.bootstrap.settings import CoordinatorSection, CoordinatorSettings
    from owm_adapters.control_plane.tls import TlsCredentials
    from owm_adapters.services.api import ApiConfig
    from owm_adapters.services.knowledge import KnowledgeBase
    from owm_adapters.tor.onion import OnionService
    from owm_server.grpc.server import CoordinatorServer
    from owm_server.http.limits import HttpLimits
    from owm_server.http.metrics import HttpMetrics
    from owm_server.http.serve import ApiServer


@click.group(cls=OwmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@version_option()
@logging_options
def cli(log_level: str | None, log_format: str) -> None:
    """Run an OWM coordinator: node registry, task dispatch, FL rounds, rewards.

    \b
    First time:   owm-coordinator init     (signing key, TLS certificate; prints the pin)
    Upgrade:      owm-coordinator migrate  (after installing a new release; serve refuses an
                                            outdated database schema until this ran)
    Run:          owm-coordinator serve [--config coordinator.toml]
    """
    logs.configure(log_level, log_format)


@cli.command()
@config_option(
    "coordinator.toml, for [coordinator] signing_key_path, data_dir and tls_*_path "
    "(default: the embedded defaults)."
)
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to create the coordinator's Ed25519 key, which signs slashing-log entries "
    "(SRS-LN-13), signs task assignments and seals task inputs and outputs (SRS-SEC-02) "
    "[default: signing_key_path, ~/.owm/coordinator.key].",
)
@json_option("the files and the two pins")
def init(config_path: Path | None, key_path: Path | None, as_json: bool) -> None:
    """Create the coordinator's signing key and its control-plane TLS certificate.

    Prints what every node needs in its owm.toml: the certificate's fingerprint
    ([coordinator] tls_fingerprint) and the coordinator's public key ([coordinator]
    public_key). Existing files are kept, never overwritten.
    """
    import time

    import attrs

    from owm_adapters.bootstrap.coordinator import coordinator_tls_from, tls_paths_of
    from owm_adapters.bootstrap.settings import load_coordinator_settings

    settings = load_coordinator_settings(config_path)
    if key_path is not None:
        section = attrs.evolve(settings.coordinator, signing_key_path=str(key_path))
        settings = attrs.evolve(settings, coordinator=section)
    path = Path(settings.coordinator.signing_key_path).expanduser()
    key_existed = path.exists()
    identity = keystore.load_identity(path) if key_existed else keystore.create_identity(path)
    tls, created = coordinator_tls_from(settings, identity, int(time.time()))
    paths = tls_paths_of(settings)
    report = {
        "signing_key_path": str(path), "signing_key_created": not key_existed,
        "tls_key_path": str(paths.key), "tls_certificate_path": str(paths.certificate),
        "tls_created": created, "tls_fingerprint": tls.fingerprint,
        "public_key": identity.public_key_hex,
    }
    render(report, as_json, lambda: [
        f"coordinator key {path} ({'exists, kept' if key_existed else 'mode 0600'})",
        f"TLS key         {paths.key} (mode 0600{'' if created else ', exists, kept'})",
        f"TLS certificate {paths.certificate}",
        "give every node these two lines for the [coordinator] section of its owm.toml:",
        f'tls_fingerprint = "{tls.fingerprint}"',
        f'public_key = "{identity.public_key_hex}"',
    ])


@cli.command()
@config_option(
    "coordinator.toml, for [coordinator] database_url or data_dir (default: the embedded "
    "defaults, SQLite under ~/.owm/coordinator)."
)
@json_option("the revisions before and after")
def migrate(config_path: Path | None, as_json: bool) -> None:
    """Upgrade the coordinator's database schema to this release's (creating it if absent).

    Run it after installing a new release and before ``serve``, which refuses a database
    behind the latest schema. Back up the database first; migrations run in one transaction.
    """
    from owm_adapters.bootstrap.coordinator import database_url_of
    from owm_adapters.bootstrap.settings import load_coordinator_settings

    try:
        from owm_adapters.storage.sql import current_revision, head_revision, upgrade
    except ImportError as exc:
        raise ConfigError(
            f"the SQL store is not available ({exc}): install owm-network[coordinator]"
        ) from None
    url = database_url_of(load_coordinator_settings(config_path))
    before = current_revision(url)
    upgrade(url)
    head = head_revision()
    report = {"before": before, "after": head, "upgraded": before != head}
    render(report, as_json, lambda: [
        f"database schema already at the latest revision {head}" if before == head
        else f"database schema upgraded from {before or 'empty'} to {head}"])


@cli.command()
@config_option(
    "coordinator.toml; without it the embedded defaults are used (SQLite under "
    "~/.owm/coordinator, embedded Lightning ledger, gRPC on 127.0.0.1:50051, HTTP API on "
    "127.0.0.1:8000, metrics on 127.0.0.1:9464)."
)
def serve(config_path: Path | None) -> None:
    """Serve the gRPC control plane, the HTTP API and the metrics until SIGTERM or Ctrl-C.

    Shutdown is graceful: new requests are refused, task streams end, in-flight requests
    finish, pending heartbeats are written, then the process exits 0.
    """
    from owm_adapters.bootstrap.coordinator import (
        build_coordinator,
        coordinator_tls_from,
        tls_paths_of,
    )
    from owm_adapters.bootstrap.settings import load_coordinator_settings

    settings = load_coordinator_settings(config_path)
    coordinator = build_coordinator(settings)
    if coordinator.signing_key_created:
        click.echo(
            f"created the coordinator's signing key {settings.coordinator.signing_key_path} (0600)"
        )
    tls, tls_created = coordinator_tls_from(
        settings, coordinator.identity, coordinator.clock.now()
    )
    if tls_created:
        certificate = tls_paths_of(settings).certificate
        click.echo(f"created the coordinator's TLS certificate {certificate}")
    try:
        with stopped_by_signals() as stop, coordinator.running():
            _serve(coordinator, settings, stop, tls)
    finally:
        coordinator.store.close()
    click.echo("stopped")


def _serve(
    coordinator: Coordinator,
    settings: CoordinatorSettings,
    stop: threading.Event,
    tls: TlsCredentials,
) -> None:
    """gRPC (mTLS with ``tls``), HTTP and metrics over a running ``coordinator`` until ``stop``
    is set."""
    from owm_adapters.bootstrap.tor import onion_listen_of
    from owm_server.grpc.limits import GrpcLimits
    from owm_server.grpc.server import CoordinatorServer
    from owm_server.metrics import CoordinatorMetrics

    section = settings.coordinator
    metrics = CoordinatorMetrics()
    metrics.bind(coordinator.service)
    if coordinator.pool is not None:
        metrics.bind_pool(coordinator.pool)
    server = CoordinatorServer(
        coordinator.service, section.grpc_listen, tls=tls,
        onion_listen=onion_listen_of(settings), invoices=coordinator.node_invoices,
        max_workers=section.grpc_max_workers,
        limits=GrpcLimits.of(section), rpc_metrics=metrics.rpc,
    )
    server.start()
    api = knowledge = calendar = onion = None
    try:
        onion = _start_onion(settings, server)
        if section.api_listen:
            knowledge = _knowledge_base(coordinator, settings)
            published = (onion.address if onion is not None else "", tls.fingerprint)
            api = _start_api(coordinator, settings, knowledge, metrics.http, published)
        calendar = _start_calendar(coordinator, settings)
        metrics_port = metrics.serve(section.metrics_listen) if section.metrics_listen else None
        _say_ready(coordinator, settings, server, api, metrics_port)
        stop.wait()
        click.echo("stopping: refusing new requests, finishing in-flight ones, flushing heartbeats")
    finally:
        if onion is not None:
            onion.stop()
        if calendar is not None:
            calendar.stop(section.grace_period_s)
        if api is not None:
            api.stop(section.grace_period_s)
        server.stop(section.grace_period_s)
        if knowledge is not None:
            knowledge.close()
        metrics.close()


def _say_ready(
    coordinator: Coordinator,
    settings: CoordinatorSettings,
    server: CoordinatorServer,
    api: ApiServer | None,
    metrics_port: int | None,
) -> None:
    section = settings.coordinator
    host = section.grpc_listen.rpartition(":")[0]
    click.echo(f"gRPC control plane  {host}:{server.port}")
    click.echo(f"TLS fingerprint     {server.tls.fingerprint}")
    if section.onion_listen:
        onion_host = section.onion_listen.rpartition(":")[0]
        click.echo(f"onion endpoint      {onion_host}:{server.ports[Transport.ONION]}")
    if api is not None:
        api_host = section.api_listen.rpartition(":")[0]
        click.echo(f"HTTP API            http://{api_host}:{api.port}/v1")
    if metrics_port is not None:
        metrics_host = section.metrics_listen.rpartition(":")[0]
        click.echo(f"metrics             http://{metrics_host}:{metrics_port}/metrics")
    click.echo(f"coordinator key     {coordinator.service.sealing.public_key_hex}"
               "  (nodes: [coordinator] public_key)")
    if coordinator.slashing is not None:
        click.echo(f"slashing log key    {coordinator.slashing.coordinator_public_key}")
    click.echo("ready; SIGTERM or Ctrl-C stops gracefully")
    sys.stdout.flush()


def _knowledge_base(
    coordinator: Coordinator, settings: CoordinatorSettings
) -> KnowledgeBase | None:
    """The knowledge base of ``[knowledge]`` (None when disabled), saying that it loads."""
    from owm_adapters.bootstrap.coordinator import knowledge_of

    if not settings.knowledge.enabled:
        return None
    click.echo(f"knowledge base      loading ({settings.knowledge.embedder} embeddings"
               f"{', demo datasets' if settings.knowledge.demo_data else ''})")
    sys.stdout.flush()
    return knowledge_of(settings, coordinator)


def http_limits_of(section: CoordinatorSection) -> HttpLimits:
    """The public API's connection limits ``[coordinator] api_*`` set (SRS-SEC-04)."""
    from owm_server.http.limits import HttpLimits

    return HttpLimits(
        body_timeout_s=section.api_body_timeout_s,
        max_connections_per_ip=section.api_max_connections_per_ip,
        trusted_proxies=tuple(section.api_trusted_proxies),
    )


def api_config_of(section: CoordinatorSection, published: tuple[str, str] = ("", "")) -> ApiConfig:
    """The public API's tuning ``[coordinator] api_*`` sets; ``published`` is the onion
    address and TLS fingerprint ``GET /v1/network/coordinator`` answers (SRS-COORD-07)."""
    from owm_adapters.services.api import ApiConfig
    from owm_core.access.ratelimit import RateLimit

    return ApiConfig(
        dashboard_access=section.api_dashboard,
        query_price_msat=section.api_query_price_msat,
        public_per_client=RateLimit(limit=section.api_public_requests_per_minute, window_s=60),
        onion_address=published[0], tls_fingerprint=published[1],
    )


def _start_api(
    coordinator: Coordinator,
    settings: CoordinatorSettings,
    knowledge: KnowledgeBase | None,
    metrics: HttpMetrics,
    published: tuple[str, str] = ("", ""),
) -> ApiServer:
    """Serve the public HTTP API over the same coordinator (one store, one Lightning node)."""
    from owm_adapters.bootstrap.coordinator import data_dir_of, query_config_of
    from owm_server.http.serve import api_server_for

    section = settings.coordinator
    try:
        api = api_server_for(
            coordinator, section.api_listen, data_dir=data_dir_of(settings),
            grace_s=section.grace_period_s, knowledge=knowledge, metrics=metrics,
            limits=http_limits_of(section),
            config=attrs.evolve(
                api_config_of(section, published),
                max_bounty_sat=settings.github.max_bounty_sat,
                bounty_budget_sat=settings.github.bounty_budget_sat,
                bounty_maintainers=tuple(settings.github.bounty_maintainers),
            ),
            query_config=query_config_of(settings),
        )
        api.start()
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"coordinator.api_listen: {exc}") from None
    return api


def _start_onion(settings: CoordinatorSettings, server: CoordinatorServer) -> OnionService | None:
    """Publish the gRPC server's onion port as a Tor v3 onion service (``[tor] enabled``): the
    hostname is read from the service directory and logged (SRS-COORD-07/09)."""
    from owm_adapters.bootstrap.coordinator import data_dir_of
    from owm_adapters.bootstrap.tor import onion_service_of
    from owm_adapters.tor.onion import TorUnavailable

    if not settings.tor.enabled:
        return None
    onion = onion_service_of(settings, data_dir_of(settings))
    assert onion is not None
    try:
        onion.start(server.ports[Transport.ONION])
    except TorUnavailable as exc:
        raise ConfigError(f"tor: {exc.message}") from None
    click.echo(f"onion service       {onion.address}  (read from "
               f"{onion.hidden_service_dir / 'hostname'})")
    return onion


def _start_calendar(coordinator: Coordinator, settings: CoordinatorSettings) -> ApiServer | None:
    """Serve the embedded calendar and chain for the reference ``ots`` client on
    ``[provenance] calendar_listen`` (None when unset)."""
    from owm_adapters.provenance.embedded import EmbeddedProvenance
    from owm_server.http.ots_calendar import create_calendar_app
    from owm_server.http.serve import ApiServer

    listen = settings.provenance.calendar_listen
    if not listen:
        return None
    fl = coordinator.fl
    timestamping = None if fl is None else fl.timestamping
    if not isinstance(timestamping, EmbeddedProvenance):
        raise ConfigError(
            "provenance.calendar_listen serves the embedded calendar: it needs "
            'provenance.backend = "embedded" and [fl] enabled'
        )
    try:
        calendar = ApiServer(create_calendar_app(timestamping.endpoints()), listen,
                             settings.coordinator.grace_period_s)
        calendar.start()
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"provenance.calendar_listen: {exc}") from None
    click.echo(f"OTS calendar        http://{listen.rpartition(':')[0]}:{calendar.port}"
               "  (and Bitcoin JSON-RPC of the embedded chain)")
    return calendar


cli.add_command(api_key)


if __name__ == "__main__":
    cli()
