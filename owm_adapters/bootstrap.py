"""The composition root: builds the coordinator application from its settings.

The one place that decides which adapter implements which port (ARCHITECTURE.md): the store
(SQLite under ``data_dir`` by default, PostgreSQL for a ``postgresql://`` URL, via
``owm_adapters.sql``), the treasury's Lightning node (the embedded simulated ledger by default),
the clock and the task-verification policy. Every port can be replaced by the caller — tests
pass in-memory repositories, a fake Lightning node or a stepping clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from owm_adapters.coordinator_service import CoordinatorService, ServiceConfig
from owm_adapters.settings import ConfigError, CoordinatorSettings
from owm_adapters.system_clock import SystemClock
from owm_core.market import VerificationMode, VerificationPolicy
from owm_core.ports.clock import Clock
from owm_core.ports.invoices import InvoiceSource
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories
from owm_core.stake import StakePolicy

if TYPE_CHECKING:
    from owm_adapters.sim_ln import SimLedger

LIGHTNING_FILE = "lightning.sqlite3"


def data_dir_of(settings: CoordinatorSettings) -> Path:
    """The coordinator's data directory, ``~`` expanded and created if missing."""
    directory = Path(settings.coordinator.data_dir).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def database_url_of(settings: CoordinatorSettings) -> str:
    """The store URL: ``[coordinator] database_url``, or the SQLite file under ``data_dir``."""
    if settings.coordinator.database_url:
        return settings.coordinator.database_url
    from owm_adapters.sql.engine import sqlite_url

    return sqlite_url(data_dir_of(settings))


def repositories_from(settings: CoordinatorSettings) -> Repositories:
    """Open the SQL store the settings name (schema created or migrated by the adapter)."""
    try:
        from owm_adapters.sql import open_repositories
    except ImportError as exc:
        raise ConfigError(f"the SQL store is not available: {exc}") from None
    repositories: Repositories = open_repositories(database_url_of(settings))
    return repositories


def lightning_from(settings: CoordinatorSettings) -> Lightning:
    """The treasury's Lightning node: the embedded ledger's ``treasury_alias`` node."""
    if settings.lightning.backend != "embedded":
        raise ConfigError(f"lightning.backend {settings.lightning.backend!r} is not supported")
    from owm_adapters.sim_ln import SimLedger

    ledger = SimLedger(data_dir_of(settings) / LIGHTNING_FILE)
    ledger.add_node(settings.lightning.treasury_alias)
    return ledger.lightning(settings.lightning.treasury_alias)


def service_config_of(settings: CoordinatorSettings) -> ServiceConfig:
    """The task-market tuning of ``[tasks]`` (verification policy, assignment timeout)."""
    tasks = settings.tasks
    mode = (
        VerificationMode.REDUNDANT
        if tasks.verification == "redundant"
        else (VerificationMode.SPOT_CHECK)
    )
    return ServiceConfig(
        verification=VerificationPolicy(
            mode=mode, redundancy=tasks.redundancy, spot_check_rate_ppm=tasks.spot_rate_ppm
        ),
        assignment_timeout_s=tasks.assignment_timeout_s,
        stake_policy=StakePolicy(
            reverify_period_s=settings.stake.reverify_period_s,
            grace_period_s=settings.stake.grace_period_s,
        ),
    )


def build_coordinator(
    settings: CoordinatorSettings,
    *,
    repositories: Repositories | None = None,
    lightning: Lightning | None = None,
    clock: Clock | None = None,
    config: ServiceConfig | None = None,
    invoices: InvoiceSource | None = None,
) -> CoordinatorService:
    """The coordinator application for ``settings``; any port may be passed in instead.

    The service is not started: call ``start()`` (the server shells do) and ``stop()``.
    The payment dispatcher (SRS-LN-04/08) joins it when an invoice source is known: the
    embedded ledger's when the treasury is the embedded default, else ``invoices`` if given.
    """
    if lightning is None and invoices is None and settings.lightning.backend == "embedded":
        from owm_adapters.payouts import LedgerInvoiceSource

        invoices = LedgerInvoiceSource(_embedded_ledger(settings))
    service = CoordinatorService(
        repositories if repositories is not None else repositories_from(settings),
        lightning if lightning is not None else lightning_from(settings),
        clock if clock is not None else SystemClock(),
        config if config is not None else service_config_of(settings),
    )
    if invoices is not None:
        from owm_adapters.payouts import PayoutDispatcher, attach_payouts

        attach_payouts(
            service,
            PayoutDispatcher(service.repositories, service.lightning, invoices, service.clock),
        )
    return service


def _embedded_ledger(settings: CoordinatorSettings) -> SimLedger:
    from owm_adapters.sim_ln import SimLedger

    return SimLedger(data_dir_of(settings) / LIGHTNING_FILE)
