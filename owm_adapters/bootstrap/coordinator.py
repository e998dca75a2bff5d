"""The composition root of a coordinator process: builds the application from its settings.

The one place that decides which adapter implements which port (docs/architecture.md): the store
(SQLite under ``data_dir`` by default, PostgreSQL for a ``postgresql://`` URL, via
``owm_adapters.storage.sql``), the treasury's Lightning node (the embedded simulated ledger by
default),
the clock and the task-verification policy. Every port can be replaced by the caller — tests
pass in-memory repositories, a fake Lightning node or a stepping clock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from owm_adapters.bootstrap.github import github_app_from
from owm_adapters.bootstrap.governance import governance_from
from owm_adapters.bootstrap.lightning import (
    LIGHTNING_FILE,
    embedded_ledger,
    force_closer_from,
    lightning_from,
    payout_channels_from,
)
from owm_adapters.bootstrap.pool import PoolWorker, pool_from
from owm_adapters.bootstrap.provenance import timestamping_of
from owm_adapters.bootstrap.settings import ConfigError, CoordinatorSettings, data_dir_of
from owm_adapters.clock import SystemClock
from owm_adapters.control_plane import tls_files
from owm_adapters.control_plane.tls import TlsCredentials
from owm_adapters.control_plane.tls_files import TlsPaths
from owm_adapters.files import secure_tree
from owm_adapters.services.coordinator.service import CoordinatorService, ServiceConfig
from owm_adapters.services.coordinator.shared import (
    NETWORK_BUDGET,
    QUERY_BUDGET,
    FundingConfig,
)
from owm_adapters.services.data_payouts import DataCreditPayouts
from owm_adapters.services.github_app import GitHubApp
from owm_adapters.services.governance import GovernanceService
from owm_adapters.services.singletons import Retention, SingletonJobs
from owm_adapters.services.slashing import RESUME_PERIOD_S, SlashingService
from owm_adapters.services.workers import OnStop, Worker, Workers
from owm_adapters.storage import keystore
from owm_core.coordination.reveals import RevealWindows
from owm_core.errors import InvalidValue, NotFound
from owm_core.identity.keys import Identity
from owm_core.market.tasks import Settlement, VerificationMode, VerificationPolicy
from owm_core.ports.chain import Chain, WalletChain
from owm_core.ports.clock import Clock
from owm_core.ports.embeddings import Embedder
from owm_core.ports.invoices import InvoiceSource
from owm_core.ports.leadership import Leadership
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories
from owm_core.ports.timestamping import Timestamping
from owm_core.ports.vector_store import VectorStore
from owm_core.stake.channel import StakePolicy
from owm_core.stake.slashing import SlashingPolicy

SHARED_RECONCILE_S = 5.0
"""How often the coordinator that pays looks for tasks settled on the others (SRS-COORD-05)."""
SHARED_RESUME_S = 5.0
"""How often the coordinator leading slashing considers evidence the others stored."""

if TYPE_CHECKING:
    from owm_adapters.lightning.node_invoices import NodeInvoiceSource
    from owm_adapters.services.fl_rounds import FlRoundService, SignalSink
    from owm_adapters.services.knowledge import KnowledgeBase
    from owm_adapters.services.payouts import PayoutDispatcher
    from owm_adapters.services.queries import QueryConfig
    from owm_core.payments.keysend import KeysendKey



def database_url_of(settings: CoordinatorSettings) -> str:
    """The store URL: ``[coordinator] database_url``, or the SQLite file under ``data_dir``."""
    if settings.coordinator.database_url:
        return settings.coordinator.database_url
    from owm_adapters.storage.sql.engine import sqlite_url

    return sqlite_url(data_dir_of(settings))


def repositories_from(settings: CoordinatorSettings) -> Repositories:
    """Open the SQL store the settings name: an empty database is created at the latest
    schema, one behind it is refused with the command that upgrades it (``owm-coordinator
    migrate``), so a release never alters a production schema unasked."""
    try:
        from owm_adapters.storage.sql import SchemaNotCurrent, open_repositories
    except ImportError as exc:
        raise ConfigError(
            f"the SQL store is not available ({exc}): install owm-network[coordinator]"
        ) from None
    try:
        repositories: Repositories = open_repositories(
            database_url_of(settings), upgrade_existing=False
        )
    except SchemaNotCurrent as exc:
        raise ConfigError(str(exc)) from None
    return repositories


def shares_store(store: Repositories) -> bool:
    """Whether other coordinators may share ``store``: a PostgreSQL database (SRS-COORD-05).
    SQLite and the in-memory store serve one coordinator."""
    try:
        from owm_adapters.storage.sql import SqlRepositories
    except ImportError:
        return False
    return isinstance(store, SqlRepositories) and store.database.engine.dialect.name == "postgresql"


def leadership_of(store: Repositories) -> Leadership:
    """Who runs the singleton jobs: PostgreSQL session advisory locks on a dedicated
    connection when the store is shared, else this process (SRS-COORD-05)."""
    from owm_adapters.storage.memory.leadership import LocalLeadership

    if not shares_store(store):
        return LocalLeadership()
    from owm_adapters.storage.sql import SqlRepositories
    from owm_adapters.storage.sql.leadership import AdvisoryLeadership

    assert isinstance(store, SqlRepositories)
    return AdvisoryLeadership(store.database.engine.url.render_as_string(hide_password=False))


def service_config_of(settings: CoordinatorSettings) -> ServiceConfig:
    """The task-market tuning of ``[tasks]`` (verification policy with its redundancy floor,
    assignment and queue timeouts)."""
    tasks = settings.tasks
    mode = (
        VerificationMode.REDUNDANT
        if tasks.verification == "redundant"
        else (VerificationMode.SPOT_CHECK)
    )
    floor = {"redundancy_floor": tasks.redundancy_floor} if tasks.redundancy_floor else {}
    return ServiceConfig(
        verification=VerificationPolicy(
            mode=mode, redundancy=tasks.redundancy, spot_check_rate_ppm=tasks.spot_rate_ppm,
            **floor,
        ),
        assignment_timeout_s=tasks.assignment_timeout_s,
        queue_timeout_s=tasks.queue_timeout_s,
        reveal_windows=RevealWindows(tasks.commit_window_s, tasks.reveal_window_s),
        stake_policy=StakePolicy(
            reverify_period_s=settings.stake.reverify_period_s,
            grace_period_s=settings.stake.grace_period_s,
        ),
        funding=funding_config_of(settings),
    )


def query_config_of(settings: CoordinatorSettings) -> QueryConfig:
    """The query path's tuning of ``[knowledge]``: how long a query waits for its sub-models,
    whether the transformer readers run their encoder in int8 (SRS-PERF-01); and of
    ``[funding]``: one caller's share of the daily query budget."""
    from owm_adapters.services.queries import QueryConfig

    knowledge = settings.knowledge
    return QueryConfig(timeout_s=knowledge.query_timeout_s, reader_int8=knowledge.reader_int8,
                       caller_share_msat=settings.funding.query_share_msat_per_caller)


def funding_config_of(settings: CoordinatorSettings) -> FundingConfig:
    """Who pays for tasks, from ``[funding]``: the cap, the share, the daily budgets."""
    funding = settings.funding
    return FundingConfig(
        max_price_msat=funding.max_price_msat,
        fee_ppm=funding.fee_ppm,
        budgets_msat={
            NETWORK_BUDGET: funding.network_budget_msat_per_day,
            QUERY_BUDGET: funding.query_budget_msat_per_day,
        },
        network_submitters=frozenset(funding.network_submitters),
        max_top_up_msat=funding.max_top_up_msat,
        max_open_top_ups=funding.max_open_top_ups,
        task_ttl_s=funding.task_ttl_s,
    )


@attrs.frozen
class Coordinator:
    """Everything one coordinator process runs, built only by :func:`build_coordinator`.

    Shells hold it and never patch it. ``workers`` lists what runs in the background, in
    start order: the task market's threads first, then the singleton jobs (payouts,
    slashing, FL rounds, …: each runs while this coordinator holds its lead, SRS-COORD-05) and
    the pool; :meth:`running` starts them and stops them in reverse.
    """

    store: Repositories
    clock: Clock
    #: The payment handle; never the force-close credential (SRS-SEC-13).
    treasury: Lightning
    #: The façade the shells call: registry, heartbeats, task market.
    service: CoordinatorService
    payouts: PayoutDispatcher | None
    slashing: SlashingService | None
    fl: FlRoundService | None
    #: Invoices the nodes hand in over gRPC (SRS-LN-04), when that is where payees' come from.
    node_invoices: NodeInvoiceSource | None
    #: The coordinator's log-signing key, and whether it was created by this build.
    signing_key_created: bool
    workers: Workers
    #: The coordinator's Ed25519 key: signs the slashing log and task assignments; its public
    #: half goes into every node's ``[coordinator] public_key``.
    identity: Identity
    #: Signed governance statements, the governance log and the treasury's PSBTs (its
    #: wallet's chain: ``wallet_chain`` of :func:`build_coordinator`, or from the settings).
    governance: GovernanceService
    #: The GitHub App: webhook intake and REST client (None while ``[github]`` is off); the
    #: ``github`` argument of :func:`build_coordinator`, or :func:`github_app_from` settings.
    github: GitHubApp | None = None
    #: The Stratum V2 mining pool (None while ``[pool]`` is off; docs/mining-pool.md), on the
    #: ``pool_chain`` of :func:`build_coordinator` if given, else the settings' chain.
    pool: PoolWorker | None = None
    #: The jobs that run on one coordinator at a time, and which of them run here.
    singletons: SingletonJobs | None = None

    @contextmanager
    def running(self, timeout_s: float = 10.0) -> Iterator[Coordinator]:
        """Start the workers for the ``with`` block; stop them in reverse after it."""
        with self.workers.running(timeout_s):
            yield self


def build_coordinator(
    settings: CoordinatorSettings,
    *,
    store: Repositories | None = None,
    treasury: Lightning | None = None,
    force_closer: Lightning | None = None,
    clock: Clock | None = None,
    config: ServiceConfig | None = None,
    invoices: InvoiceSource | None = None,
    timestamping: Timestamping | None = None,
    coordinator_key: Identity | None = None,
    slashing: bool = True,
    payout_sweep_s: float | None = None,
    wallet_chain: WalletChain | None = None,
    github: GitHubApp | None = None, pool_chain: Chain | None = None,
) -> Coordinator:
    """The coordinator application for ``settings``; any port may be passed in instead.

    Nothing is started: use :meth:`Coordinator.running`. The payment dispatcher (SRS-LN-04/08)
    runs when an invoice source is known: by default (no ``treasury`` or ``invoices`` passed)
    the invoices the nodes hand in over gRPC (:func:`node_invoice_source`, with the embedded
    ledger's simulated nodes as fallback when the treasury is the embedded default), else
    ``invoices`` if given. The slashing service (SRS-STAKE-04..07) hears of lost task
    verifications as ``fake_proof`` signals and FL anomalies; its key is ``coordinator_key``
    or the one of :func:`coordinator_identity_from`, and its force-close handle
    ``force_closer`` or the one of :func:`force_closer_from`. ``slashing=False`` leaves it out
    (unit tests of other parts). The same key seals task inputs to their nodes and opens their
    outputs (SRS-SEC-02; nodes hold its public key as ``[coordinator] public_key``); with
    ``slashing=False`` and no ``coordinator_key`` the service draws one of its own. FL rounds
    run when ``[fl] enabled``; ``payout_sweep_s`` is the payout worker's idle sweep period."""
    if (existing := Path(settings.coordinator.data_dir).expanduser()).is_dir():
        secure_tree(existing)  # state written by an older release is private from now on
    default_invoices = treasury is None and invoices is None
    store = store if store is not None else repositories_from(settings)
    shared = shares_store(store)
    treasury = treasury if treasury is not None else lightning_from(settings)
    clock = clock if clock is not None else SystemClock()
    created = False
    if slashing and coordinator_key is None:
        coordinator_key, created = coordinator_identity_from(settings, store)
    own_key = coordinator_key or Identity.from_seed(os.urandom(32))
    invoices = (
        node_invoice_source(settings, store, clock, own_key.public_key_hex)
        if default_invoices else invoices
    )
    node_invoices = invoices if isinstance(invoices, _node_invoice_type()) else None
    payouts = None if invoices is None else _payouts_of(
        settings, store, treasury, invoices, clock, payout_sweep_s, coordinator_key)
    slashing_service = None if not slashing else slashing_service_from(
        settings, store, clock, force_closer=force_closer, coordinator=coordinator_key)
    channels = payout_channels_from(settings, store, treasury, clock)
    config = config if config is not None else service_config_of(settings)
    service = CoordinatorService(
        store, treasury, clock, attrs.evolve(config, shared_state=shared),
        settlement_listeners=_settlement_listeners(store, clock, payouts, slashing_service),
        coordinator_key=own_key,
        registration_listeners=() if channels is None else (channels.registered,),
    )  # fmt: skip
    timestamping = timestamping or _calendar_of(settings)
    fl = None if not settings.fl.enabled else fl_rounds_from(
        settings, service, timestamping=timestamping,
        signals=None if slashing_service is None else slashing_service.report,
    )
    wire_market(service, settings, fl)
    stamping = _timestamping_worker(timestamping) if timestamping is not None else None
    pool = pool_from(settings, store, clock, data_dir_of(settings), chain=pool_chain,
                     payouts=payouts)
    github = github or github_app_from(settings, service, payouts, timestamping)
    singletons = _singletons(store, clock, service, payouts, github, ("payout-channels", channels),
                             ("slashing", slashing_service), ("fl-rounds", fl))
    return Coordinator(
        store=store, clock=clock, treasury=treasury, service=service, payouts=payouts,
        slashing=slashing_service, fl=fl, node_invoices=node_invoices,
        signing_key_created=created, identity=service.signer,
        workers=Workers(tuple(w for w in (service, stamping, singletons, pool) if w is not None)),
        governance=governance_from(settings, store, clock, service.signer, chain=wallet_chain,
                                   shared=shared), github=github, pool=pool, singletons=singletons,
    )


def _singletons(
    store: Repositories, clock: Clock, service: CoordinatorService,
    payouts: PayoutDispatcher | None, github: GitHubApp | None,
    *others: tuple[str, Worker | None],
) -> SingletonJobs:
    """The jobs that run on one coordinator at a time (SRS-COORD-05), in start order: the
    market's housekeeping and stake re-verification (flags of the market thread), retention,
    payouts, the data contributors' payout sweep (over the payout outbox, when payouts run),
    then the payout channels, slashing's resume loop, FL rounds and the GitHub App's workers
    (handler retries, bounty lapses) when they run."""
    service.housekeeping.on = service.stake_checks.on = False  # until the lead is taken
    credits = None if payouts is None else DataCreditPayouts(store, clock, payouts)
    jobs: list[tuple[str, Worker | None]] = [
        ("market-housekeeping", service.housekeeping),
        ("stake-reverification", service.stake_checks),
        ("retention", Retention(store, clock)),
        ("payouts", payouts),
        ("data-credit-payouts", credits),
        *others,
        *(github.workers if github is not None else ()),
    ]
    return SingletonJobs(leadership_of(store), [(n, w) for n, w in jobs if w is not None])


def _calendar_of(settings: CoordinatorSettings) -> Timestamping | None:
    """The process's one calendar (``[provenance]``) when FL rounds or the GitHub App stamp
    through it, else None."""
    if not (settings.fl.enabled or settings.github.webhook_secret_file):
        return None
    return timestamping_of(settings.provenance, data_dir_of(settings), settings.chain)


def _timestamping_worker(timestamping: Timestamping) -> OnStop | None:
    """The embedded calendar's flusher, stopped after the FL rounds and the GitHub App that
    stamp through it (one calendar per process)."""
    stop = getattr(timestamping, "stop", None)
    return OnStop(stop) if callable(stop) else None


def _settlement_listeners(
    store: Repositories,
    clock: Clock,
    payouts: PayoutDispatcher | None,
    slashing: SlashingService | None,
) -> tuple[Callable[[Settlement], None], ...]:
    """Who hears of settlements: the payout dispatcher, then the fake-proof detector."""
    from owm_adapters.services.slashing import FakeProofDetector

    listeners: list[Callable[[Settlement], None]] = []
    if payouts is not None:
        listeners.append(payouts.on_settlement)
    if slashing is not None:
        listeners.append(FakeProofDetector(store, clock, slashing.report))
    return tuple(listeners)


def _node_invoice_type() -> type[NodeInvoiceSource]:
    from owm_adapters.lightning.node_invoices import NodeInvoiceSource

    return NodeInvoiceSource


def node_invoice_source(
    settings: CoordinatorSettings, store: Repositories, clock: Clock, coordinator_key: str
) -> NodeInvoiceSource:
    """Where the payout dispatcher gets payees' invoices (SRS-LN-04): handed in by the nodes
    (gRPC SubmitInvoice), signed for the coordinator whose public key is ``coordinator_key``,
    falling back to the embedded ledger's simulated nodes on devnets."""
    from owm_adapters.lightning.node_invoices import NodeInvoiceSource
    from owm_adapters.services.payouts import LedgerInvoiceSource

    fallback = (
        LedgerInvoiceSource(embedded_ledger(settings))
        if settings.lightning.backend == "embedded" else None
    )
    from owm_core.identity.envelopes import ReplayGuard

    guard = ReplayGuard(ledger=store.nonces) if shares_store(store) else ReplayGuard()
    return NodeInvoiceSource(
        store, clock, coordinator_key=coordinator_key, fallback=fallback, guard=guard
    )


# -- slashing (SRS-STAKE-04..07, SRS-SEC-11/13/14, SRS-LN-13) -------------------------------------


def coordinator_identity_from(
    settings: CoordinatorSettings, repositories: Repositories
) -> tuple[Identity, bool]:
    """The coordinator's log-signing key at ``[coordinator] signing_key_path``, and whether it
    was created now.

    A network whose slashing log is still empty (first start, a devnet) gets a fresh key
    (0600, as ``owm-coordinator init`` writes it). Once the log has entries the key must exist
    and be the one that signed them: a missing or different key is a ConfigError, because a
    new key would make every published entry fail ``owm slashing-log verify``.
    """
    from owm_core.stake.slashing import signed_by

    path = Path(settings.coordinator.signing_key_path).expanduser()
    latest = repositories.slashing_log.latest()
    if not path.exists():
        if latest is not None:
            raise ConfigError(
                f"coordinator.signing_key_path: {path} does not exist, but the slashing log has "
                f"{latest.index + 1} entries signed by the coordinator key; restore that key file"
            )
        return keystore.create_identity(path), True
    identity = keystore.load_identity(path)
    if latest is not None and not signed_by(latest, identity.public_key_hex):
        raise ConfigError(
            f"coordinator.signing_key_path: {path} is not the key that signed the slashing log"
        )
    return identity, False


def _payouts_of(
    settings: CoordinatorSettings, store: Repositories, treasury: Lightning,
    invoices: InvoiceSource, clock: Clock, sweep_s: float | None, key: Identity | None,
) -> PayoutDispatcher:
    """The payment dispatcher (SRS-LN-04/08); bare nodes with no invoice are paid by keysend
    (``[lightning] keysend``) under the coordinator key's secret, when there is a key: without
    one (tests that draw a key per process) keysend stays off, since its hashes must survive a
    restart."""
    from owm_adapters.services.payouts import DEFAULT_SWEEP_S, PayoutDispatcher

    return PayoutDispatcher(
        store, treasury, invoices, clock, sweep_s=sweep_s or DEFAULT_SWEEP_S,
        reconcile_every_s=SHARED_RECONCILE_S if shares_store(store) else None,
        keysend_key=None if key is None else keysend_key_of(key),
        keysend=settings.lightning.keysend,
    )


def keysend_key_of(identity: Identity) -> KeysendKey:
    """The keysend secret of the coordinator whose signing key is ``identity``: derived from
    its deterministic signature, so every coordinator of the network holding that key pays a
    keysend payout under the same hash, and no one else can (SRS-LN-08)."""
    from owm_core.payments.keysend import SECRET_DOMAIN, KeysendKey

    return KeysendKey.from_signature(identity.sign(SECRET_DOMAIN))


def tls_paths_of(settings: CoordinatorSettings) -> TlsPaths:
    """Where the control plane's TLS key and certificate live (``[coordinator] tls_*_path``)."""
    section = settings.coordinator
    default = TlsPaths.in_dir(Path(section.data_dir).expanduser())
    return TlsPaths(
        Path(section.tls_key_path).expanduser() if section.tls_key_path else default.key,
        Path(section.tls_cert_path).expanduser() if section.tls_cert_path else default.certificate,
    )


def coordinator_tls_from(
    settings: CoordinatorSettings, identity: Identity, now: int
) -> tuple[TlsCredentials, bool]:
    """The control plane's TLS credentials (SRS-SEC-01), created (0600) when missing; and
    whether they were created now. The certificate is bound to ``identity``."""
    return tls_files.coordinator_tls(tls_paths_of(settings), identity, now)


def knowledge_base_from(
    settings: CoordinatorSettings,
    repositories: Repositories,
    *,
    now: int,
    timestamping: Timestamping | None = None,
    embedder: Embedder | None = None,
) -> KnowledgeBase | None:
    """The knowledge base of ``[knowledge]`` over ``repositories`` (None when disabled).

    Qdrant's local mode under ``<data_dir>/qdrant`` unless ``qdrant_path``/``qdrant_url`` say
    otherwise; the demo datasets are loaded (idempotently, stamped with ``now``) when
    ``demo_data`` is on, and the vector index is rebuilt from the stored documents if it lacks
    passages (a fresh Qdrant over an existing database).
    """
    from owm_adapters.knowledge.minilm import HashingEmbedder, MiniLmEmbedder
    from owm_adapters.knowledge.qdrant import QdrantVectorStore
    from owm_adapters.services.knowledge import KnowledgeBase

    section = settings.knowledge
    if not section.enabled:
        return None
    if embedder is None and section.embedder == "minilm":
        import torch

        # The coordinator embeds one short query per request, many requests at once: torch's
        # intra-op threads only add contention there (measured: 27 ms instead of 207 ms of CPU
        # per query embedding under load, docs/conglomerate.md).
        torch.set_num_threads(1)
        embedder = MiniLmEmbedder()
    elif embedder is None:
        embedder = HashingEmbedder()
    if section.qdrant_url:
        api_key = None
        if section.qdrant_api_key_file:
            api_key = Path(section.qdrant_api_key_file).expanduser().read_text().strip()
        store = QdrantVectorStore(url=section.qdrant_url, api_key=api_key)
    elif section.qdrant_path == ":memory:":
        store = QdrantVectorStore(":memory:")
    else:
        path = Path(section.qdrant_path).expanduser() if section.qdrant_path else None
        store = QdrantVectorStore(path=path or data_dir_of(settings) / "qdrant")
    knowledge = KnowledgeBase(
        repositories, embedder, store, timestamping=timestamping, collection=section.collection
    )
    if section.demo_data:
        knowledge.load_demo_data(now)
    else:
        knowledge.sync_index()
    return knowledge


def knowledge_of(
    settings: CoordinatorSettings, coordinator: Coordinator, *, embedder: Embedder | None = None
) -> KnowledgeBase | None:
    """The conglomerate's knowledge base of ``[knowledge]`` over ``coordinator``'s store (None
    when disabled); its sub-model versions are stamped through the coordinator's FL provenance
    (by the FL upgrade thread when calendars are remote), as the FL model versions are."""
    fl = coordinator.fl
    return knowledge_base_from(
        settings, coordinator.store, now=coordinator.clock.now(),
        # Remote calendars may take 30 s to answer: the FL upgrade thread stamps the new
        # sub-model versions instead of the request that made them (they publish unstamped).
        timestamping=None if fl is None or fl.config.stamp_in_background else fl.timestamping,
        embedder=embedder,
    )


# -- federated-learning rounds and model provenance (SRS-COORD-03, SRS-NODE-10) -------------------


def replicas_per_task(policy: VerificationPolicy) -> int:
    """How many nodes run one task: the redundancy of redundant verification, else one."""
    return policy.redundancy if policy.mode is VerificationMode.REDUNDANT else 1


def upload_url_of(api_listen: str) -> str:
    """``http://<api_listen>/v1/fl/updates``, or "" when the address is not one nodes can use
    (API off, port 0, a wildcard host): then ``[fl] upload_url`` must say where."""
    host, _, port = api_listen.rpartition(":")
    wildcard = {"0.0.0.0", "[::]", "::"}  # noqa: S104 (recognised, not bound)
    if not host or not port.isdigit() or int(port) == 0 or host in wildcard:
        return ""
    return f"http://{host}:{port}/v1/fl/updates"


def advertised_api_url(
    settings: CoordinatorSettings, fl: FlRoundService | None
) -> Callable[[], str]:
    """Where this coordinator tells nodes to send uploads: the URL whose origin every task URL
    must lie on (SRS-SEC-06). The FL round service's upload URL, read live (an API bound on
    port 0 sets it once known), else ``[fl] upload_url`` or the one ``api_listen`` implies."""
    if fl is not None:
        rounds = fl
        return lambda: rounds.upload_url
    static = settings.fl.upload_url or upload_url_of(settings.coordinator.api_listen)
    return lambda: static


def wire_market(
    service: CoordinatorService, settings: CoordinatorSettings, fl: FlRoundService | None
) -> None:
    """What the market learns once the FL rounds exist: the advertised API URL every task URL
    must lie on (SRS-SEC-06), and which releases have published weights (task pins)."""
    service.market.advertised_api_url = advertised_api_url(settings, fl)
    service.market.pins.has_weights = published_weights(fl)


def published_weights(fl: FlRoundService | None) -> Callable[[str], bool]:
    """Whether nodes can download a release's weights (``GET /v1/model/versions/{id}/weights``
    serves the FL rounds' files): only such a release is a task's pinned version. Without FL
    rounds there is nothing to download, and every pinned task runs ``genesis``."""
    if fl is None:
        return lambda _release_id: False
    releases = fl.releases

    def published(release_id: str) -> bool:
        try:
            return releases.weights_path(release_id).is_file()
        except NotFound:
            return False

    return published


def fl_rounds_from(
    settings: CoordinatorSettings,
    service: CoordinatorService,
    *,
    timestamping: Timestamping | None = None,
    signals: SignalSink | None = None,
) -> FlRoundService:
    """The FL round service of ``[fl]`` and ``[provenance]`` over ``service``'s task market.

    Model versions are stamped through ``timestamping``, by default the embedded calendar and
    local chain under ``<data_dir>/provenance`` (created on first use); weights files go to
    ``<data_dir>/fl/weights``. Its slashing signals go to ``signals`` (else the log).
    """
    from owm_adapters.services.fl_rounds import FlConfig, FlRoundService

    fl, provenance = settings.fl, settings.provenance
    remote = provenance.backend == "calendars"
    directory = Path(settings.coordinator.data_dir).expanduser()
    if timestamping is None:
        timestamping = timestamping_of(provenance, directory, settings.chain)
    checks = (
        ("fl.interval_s", fl.interval_s >= 1),
        ("fl.min_participants", fl.min_participants >= 1),
        ("fl.round_timeout_s", fl.round_timeout_s >= 1),
        ("fl.upload_grace_s", fl.upload_grace_s >= 0),
        ("fl.partitions", fl.partitions >= 1),
        ("fl.max_price_msat", fl.max_price_msat >= 0),
        ("fl.anomaly_threshold", fl.anomaly_threshold >= 1.0),
    )
    for name, ok in checks:
        if not ok:
            raise ConfigError(f"{name}: out of range")
    try:
        config = FlConfig(
            sub_model=fl.sub_model,
            sub_models=fl.sub_models,
            model=fl.model,
            models=tuple(fl.models.items()),
            interval_s=float(fl.interval_s),
            min_participants=fl.min_participants,
            rule=fl.rule,
            max_f=None if fl.max_f < 0 else fl.max_f,
            round_timeout_s=fl.round_timeout_s,
            upload_grace_s=fl.upload_grace_s,
            epochs=fl.epochs,
            lr=fl.lr,
            batch_size=fl.batch_size,
            partitions=fl.partitions,
            max_price_msat=fl.max_price_msat,
            anomaly_threshold=fl.anomaly_threshold,
            upgrade_every_s=float(provenance.upgrade_every_s),
            upgrade_max_backoff_s=float(
                provenance.upgrade_max_backoff_s if remote else provenance.upgrade_every_s
            ),
            stamp_in_background=remote,
        )
    except InvalidValue as exc:
        raise ConfigError(exc.message) from None
    return FlRoundService(
        service.market,
        timestamping,
        directory / "fl" / "weights",
        config,
        store=service.repositories,
        clock=service.clock,
        replicas_per_task=replicas_per_task(service.config.verification),
        upload_url=fl.upload_url or upload_url_of(settings.coordinator.api_listen),
        signals=signals,
    )


def slashing_service_from(
    settings: CoordinatorSettings,
    repositories: Repositories,
    clock: Clock,
    *,
    force_closer: Lightning | None = None,
    coordinator: Identity | None = None,
) -> SlashingService:
    """The slashing service for ``settings``.

    The force-close handle is built separately from the payment handle, with the force-close
    credential (SRS-SEC-13): for the embedded ledger, the treasury node with
    ``force_close_allowed``; for LND a second client holding ``lnd_force_close_macaroon``, for
    CLN one that closes over clnrest (``cln_rest_url``, ``cln_rest_ca_file``) with the
    close-only rune in ``cln_force_close_rune_file`` (required: without it slashing could never
    close a channel, so this is a ConfigError). Or pass ``force_closer``. The
    coordinator key is read from ``[coordinator] signing_key_path`` (``owm-coordinator init``).
    """
    if force_closer is None:
        force_closer = force_closer_from(settings)
    identity = coordinator or keystore.load_identity(
        Path(settings.coordinator.signing_key_path).expanduser()
    )
    stake = settings.stake
    return SlashingService(
        repositories,
        force_closer,
        identity,
        clock,
        SlashingPolicy(
            maintainer_keys=stake.maintainer_keys, tier1_distinct_reporters=stake.tier1_reporters,
            signal_window_s=stake.signal_window_s, coordinator_key=identity.public_key_hex,
        ),
        StakePolicy(reverify_period_s=stake.reverify_period_s, grace_period_s=stake.grace_period_s),
        # several coordinators: the one leading the slashing job decides (SRS-COORD-05)
        shared=shares_store(repositories),
        resume_period_s=SHARED_RESUME_S if shares_store(repositories) else RESUME_PERIOD_S,
    )


__all__ = [
    "LIGHTNING_FILE",
    "Coordinator",
    "advertised_api_url",
    "build_coordinator",
    "coordinator_identity_from",
    "coordinator_tls_from",
    "data_dir_of",
    "database_url_of",
    "fl_rounds_from",
    "force_closer_from",
    "keysend_key_of",
    "knowledge_base_from",
    "knowledge_of",
    "lightning_from",
    "node_invoice_source",
    "published_weights",
    "replicas_per_task",
    "repositories_from",
    "service_config_of",
    "shares_store",
    "slashing_service_from",
    "tls_paths_of",
    "upload_url_of",
]


def demo_knowledge_base(
    embedder: Embedder | None = None,
    store: VectorStore | None = None,
    repositories: Repositories | None = None,
    now: int = 1_767_225_600,
) -> KnowledgeBase:
    """A ready knowledge base with the demo data loaded: memory repositories, and by default the
    hashing embedder and the numpy vector store (instant; pass ``MiniLmEmbedder`` /
    ``QdrantVectorStore`` for the real thing)."""
    from owm_adapters.knowledge.minilm import HashingEmbedder
    from owm_adapters.knowledge.qdrant import MemoryVectorStore
    from owm_adapters.services.knowledge import KnowledgeBase
    from owm_adapters.storage.memory import memory_repositories

    kb = KnowledgeBase(
        repositories=repositories or memory_repositories(),
        embedder=embedder or HashingEmbedder(),
        store=store or MemoryVectorStore(),
    )
    kb.load_demo_data(now)
    return kb
