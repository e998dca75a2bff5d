"""Builds a node daemon from ``owm.toml`` (the node's composition root).

Reads the settings (with the spec's environment overrides, §10.3: ``OWM_COORDINATOR_URL``,
``OWM_IDENTITY_KEY_PATH``, ``OWM_MODEL_CACHE_DIR``; ``OWM_LOG_LEVEL`` is read by
:mod:`owm_adapters.bootstrap.logs`), probes the hardware
(``nvidia-smi`` / ``rocm-smi`` and ``/proc/meminfo``; SRS-NODE-03), classifies the tier,
and wires the task runner, the task log and the daemon — with the weights watcher when
``[coordinator] api_url`` is set (OTS proofs checked against ``[chain]``) and the payout
invoicer when ``[lightning] backend`` names the node's own Lightning node (LND, CLN, or a
devnet's embedded ledger; built in :mod:`owm_adapters.bootstrap.lightning`). :func:`build_node`
returns the whole process as one frozen :class:`Node`: the daemon, its control plane (the gRPC
client of ``owm_adapters.control_plane.grpc_client`` unless a test passes the in-process twin)
and the health endpoint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from owm_adapters.bootstrap.lightning import cln_from_socket, lnd_from_files
from owm_adapters.bootstrap.mining_proxy import MiningProxy, mining_proxy
from owm_adapters.bootstrap.settings import (
    ConfigError,
    NodeSettings,
    allowed_networks,
    listen_address,
)
from owm_adapters.clock import SystemClock
from owm_adapters.control_plane import tls_files
from owm_adapters.control_plane.tls import ClientTls
from owm_adapters.control_plane.tls_files import TlsPaths
from owm_adapters.files import private_directory, secure_tree
from owm_adapters.gpu import LinuxHostProbe, SystemGpuProbe
from owm_adapters.hashing.select import hasher_for
from owm_adapters.node.daemon import DaemonSettings, NodeDaemon
from owm_adapters.node.health import HealthServer
from owm_adapters.node.invoicing import PayoutInvoicer
from owm_adapters.node.metrics import NodeMetrics
from owm_adapters.node.mining import MiningWorker
from owm_adapters.node.task_log import TaskLog
from owm_adapters.node.task_runner import Limits, TaskRunner
from owm_adapters.node.weights import CachedModelRuntime, model_cache_dir
from owm_adapters.node.weights_watcher import WeightsWatcher
from owm_adapters.pool.miner import check_clearnet
from owm_adapters.probes import Readiness
from owm_adapters.storage import keystore
from owm_core.access.destinations import DestinationPolicy
from owm_core.errors import DomainError
from owm_core.identity.envelopes import CapabilityManifest
from owm_core.identity.keys import Identity, parse_public_key
from owm_core.market import task_types
from owm_core.nodes.hardware import GpuDevice
from owm_core.nodes.registry import LnNodeUri
from owm_core.nodes.tiers import Hardware, Tier, classify
from owm_core.pool.noise import PoolUrl
from owm_core.ports.control_plane import ControlPlane
from owm_core.ports.gpu import GpuProbe, HostProbe
from owm_core.ports.lightning import Lightning
from owm_core.ports.timestamping import Timestamping

log = logging.getLogger(__name__)

COORDINATOR_URL_ENV = "OWM_COORDINATOR_URL"


@attrs.frozen
class HardwareReport:
    """What this machine offers, its tier, and why GPUs may be missing (SRS-NODE-03)."""

    devices: tuple[GpuDevice, ...]
    hardware: Hardware
    tier: Tier | None
    problems: tuple[str, ...]
    below_minimum: str = ""

    def manifest(self) -> CapabilityManifest:
        """The capability manifest the node signs and publishes (SRS-NODE-04)."""
        if self.tier is None:
            raise ConfigError(f"this machine cannot join: {self.below_minimum}")
        return CapabilityManifest(
            tier=self.tier,
            vram_mb=self.hardware.vram_mb,
            ram_mb=max(1, self.hardware.ram_mb),
            bandwidth_mbps=self.hardware.bandwidth_mbps,
            gpu_vendor=self.hardware.gpu_vendor.value,
            gpu_count=self.hardware.gpu_count,
        )

    def summary(self) -> dict[str, object]:
        """The hardware part of ``/health`` and ``owm-node hardware``."""
        return {
            "tier": self.tier.value if self.tier is not None else None,
            "gpus": [
                {"index": d.index, "vendor": d.vendor.value, "name": d.name, "vram_mb": d.vram_mb}
                for d in self.devices
            ],
            "ram_mb": self.hardware.ram_mb,
            "bandwidth_mbps": self.hardware.bandwidth_mbps,
            "problems": list(self.problems),
        }


def detect_hardware(
    bandwidth_mbps: int, gpu_probe: GpuProbe | None = None, host_probe: HostProbe | None = None
) -> HardwareReport:
    """Probe GPUs and host, classify the tier; a CPU-only machine is t1 with no GPU."""
    probe = gpu_probe if gpu_probe is not None else SystemGpuProbe()
    host = host_probe if host_probe is not None else LinuxHostProbe(bandwidth_mbps)
    devices = tuple(probe.devices())
    problems = tuple(str(p) for p in getattr(probe, "problems", ()))
    hardware = Hardware.from_devices(devices, host.ram_mb(), host.bandwidth_mbps())
    try:
        return HardwareReport(devices, hardware, classify(hardware), problems)
    except DomainError as exc:
        return HardwareReport(devices, hardware, None, problems, exc.message)


def coordinator_url(settings: NodeSettings) -> str:
    """``$OWM_COORDINATOR_URL``, else ``[coordinator] url``."""
    return os.environ.get(COORDINATOR_URL_ENV) or settings.coordinator.url


def data_dir(settings: NodeSettings) -> Path:
    """The node's state directory (created if missing; mode 0700 whatever the umask)."""
    return private_directory(Path(settings.node.data_dir).expanduser())


def load_node_identity(settings: NodeSettings) -> Identity:
    """The node's identity from ``$OWM_IDENTITY_KEY_PATH`` or ``[node] identity_key``."""
    return keystore.load_identity(keystore.default_key_path(settings.node.identity_key))


def client_tls(settings: NodeSettings, identity: Identity, now: int) -> ClientTls:
    """The node's mTLS client side (SRS-SEC-01): its certificate bound to ``identity`` in
    ``DATA_DIR/tls.key`` / ``tls.crt`` (issued, 0600, on first start or when it would
    expire) and the coordinator's pinned fingerprint from ``[coordinator] tls_fingerprint``."""
    pin = settings.coordinator.tls_fingerprint.strip().lower().replace(":", "")
    if not pin:
        raise ConfigError(
            "[coordinator] tls_fingerprint is empty: set the fingerprint `owm-coordinator init` "
            "printed; the control plane is mTLS and the node trusts only that certificate"
        )
    if len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
        raise ConfigError("coordinator.tls_fingerprint: must be 64 hex characters (SHA-256)")
    credentials = tls_files.node_tls(TlsPaths.in_dir(data_dir(settings)), identity, now)
    return ClientTls(credentials, pin)


def daemon_settings(settings: NodeSettings) -> DaemonSettings:
    """The daemon's behaviour from owm.toml; a missing Lightning URI is a config error."""
    uri = settings.lightning.node_uri
    if not uri:
        raise ConfigError(
            "[lightning] node_uri is empty: set your Lightning node's pubkey@host:port; rewards "
            "are paid there and your stake channel is opened from it (SRS-LN-02)"
        )
    try:
        LnNodeUri.parse(uri)
    except DomainError as exc:
        raise ConfigError(f"lightning.node_uri: {exc.message}") from None
    return DaemonSettings(
        ln_node_uri=uri,
        coordinator_public_key=coordinator_public_key(settings),
        onion_address=settings.node.onion_address or None,
        treasury_uri=settings.lightning.treasury_uri,
        heartbeat_interval_s=float(settings.node.heartbeat_interval_s),
        ask_msat=settings.tasks.ask_msat,
        max_concurrent_tasks=max(1, settings.tasks.max_concurrent),
        capabilities=serves(settings.tasks.types),
        upload_proxy=settings.coordinator.upload_proxy or None,
        destinations=destination_policy_of(settings),
        weights_poll_s=float(max(1, settings.coordinator.weights_poll_s)),
        invoice_poll_s=float(max(1, settings.lightning.invoice_poll_s)),
    )


def coordinator_public_key(settings: NodeSettings) -> str:
    """``[coordinator] public_key``: task inputs are sealed by it and outputs to it
    (SRS-SEC-02), assignments are signed by it (SRS-SEC-01/03), so a node without it cannot
    work; a missing or malformed key is a config error."""
    key = settings.coordinator.public_key
    if not key:
        raise ConfigError(
            "[coordinator] public_key is empty: set the coordinator's public key (64 hex, "
            "printed by `owm-coordinator init` and `serve`); task inputs and outputs are "
            "sealed with it (SRS-SEC-02)"
        )
    try:
        return parse_public_key(key, "coordinator.public_key")
    except DomainError as exc:
        raise ConfigError(exc.message) from None


def destination_policy_of(settings: NodeSettings) -> DestinationPolicy:
    """Which non-public targets uploads and weight downloads may reach: loopback and private
    networks only when ``[coordinator] allow_private_targets`` is on (devnets; SRS-SEC-06)."""
    if settings.coordinator.allow_private_targets:
        return DestinationPolicy.devnet()
    return DestinationPolicy()


def timestamping_from(settings: NodeSettings) -> Timestamping | None:
    """The OpenTimestamps verifier over the node's ``[chain]`` (bitcoind or a devnet's chain
    file); None when neither is configured."""
    from owm_adapters.bootstrap.chains import chain_source_of
    from owm_adapters.provenance.ots import OpenTimestamps

    source = chain_source_of(settings.chain)
    return None if source is None else OpenTimestamps(*source)


def weights_watcher(
    settings: NodeSettings, identity: Identity, model_dir: Path, say: Callable[[str], None]
) -> WeightsWatcher | None:
    """The watcher that installs new model versions (``[coordinator] api_url``), or None."""
    api_url = settings.coordinator.api_url
    if not api_url:
        return None
    timestamping = timestamping_from(settings)
    if timestamping is None:
        raise ConfigError(
            "coordinator.api_url is set but [chain] has neither bitcoin_rpc nor local_chain: "
            "model versions are installed only after their OpenTimestamps proof is checked "
            "against your own chain (SRS-NODE-10)"
        )
    pending = settings.chain.pending_versions
    if pending not in PENDING_VERSIONS:
        raise ConfigError(
            f"chain.pending_versions: {pending!r} is not one of {', '.join(PENDING_VERSIONS)}"
        )
    keep = settings.node.keep_model_versions
    if keep < 0:
        raise ConfigError(f"node.keep_model_versions: {keep} is negative")
    return WeightsWatcher(api_url, identity, CachedModelRuntime(model_dir), timestamping,
                          SystemClock(), coordinator_key=coordinator_public_key(settings),
                          proxy=settings.coordinator.upload_proxy or None, say=say,
                          policy=destination_policy_of(settings), pending_versions=pending,
                          keep_versions=keep)


LIGHTNING_BACKENDS = ("none", "lnd", "cln", "embedded")
PENDING_VERSIONS = ("wait", "skip")


def node_lightning(settings: NodeSettings) -> Lightning | None:
    """The node's own Lightning node, which issues the invoices its rewards are paid to
    (``[lightning] backend``; SRS-LN-01): LND over gRPC with an invoice macaroon, Core Lightning
    over its RPC socket, a devnet's embedded ledger, or None (``none``)."""
    ln = settings.lightning
    if ln.backend not in LIGHTNING_BACKENDS:
        raise ConfigError(f"lightning.backend: must be one of {', '.join(LIGHTNING_BACKENDS)}")
    try:
        if ln.backend == "lnd":
            return lnd_from_files(ln.lnd_host, ln.lnd_tls_cert, ln.lnd_macaroon,
                                  tls_server_name=ln.lnd_tls_server_name)
        if ln.backend == "cln":
            return cln_from_socket(ln.cln_socket)
        if ln.backend == "embedded":
            if not ln.ledger_path or not ln.ledger_alias:
                raise ConfigError("lightning.backend = \"embedded\" needs ledger_path and "
                                  "ledger_alias")
            from owm_adapters.lightning.embedded import SimLedger

            return SimLedger(Path(ln.ledger_path).expanduser()).lightning(ln.ledger_alias)
    except ConfigError:
        raise
    except DomainError as exc:
        raise ConfigError(f"lightning ({ln.backend}): {exc.message}") from None
    return None


def ln_signer(settings: NodeSettings) -> Lightning:
    """The node's Lightning node, which signs the registration challenge to prove control of
    ``[lightning] node_uri`` (SRS-STAKE-01); a ConfigError when ``backend`` is ``none``."""
    lightning = node_lightning(settings)
    if lightning is None:
        raise ConfigError(
            "[lightning] backend is \"none\": set it to lnd, cln or embedded; the coordinator "
            "accepts a registration only when your Lightning node signs it (SRS-STAKE-01)"
        )
    return lightning


def payout_invoicer(
    settings: NodeSettings,
    identity: Identity,
    control: ControlPlane,
    say: Callable[[str], None],
    lightning: Lightning,
) -> PayoutInvoicer:
    """Hands the node's invoices, made by its own Lightning node, to the coordinator."""
    registered = settings.lightning.node_uri.partition("@")[0]
    return PayoutInvoicer(identity, control, lightning, SystemClock(),
                          coordinator_public_key=coordinator_public_key(settings),
                          registered_pubkey=registered, say=say)


def serves(types: list[str]) -> tuple[str, ...]:
    """The task types to advertise; ConfigError for one that is not built in."""
    known = set(task_types.capabilities())
    unknown = sorted(set(types) - known)
    if unknown or not types:
        raise ConfigError(
            f"tasks.types: {', '.join(unknown) or 'empty'}; choose from {', '.join(sorted(known))}"
        )
    return tuple(sorted(set(types)))


@attrs.frozen
class Node:
    """Everything one node process runs, built only by :func:`build_node`.

    The daemon (registration, heartbeats, task stream, proofs, watchers), the control plane it
    talks to its coordinator through, and the loopback health endpoint (SRS-NODE-08).
    :meth:`running` serves the health endpoint for the ``with`` block and releases all three
    after it; the shell runs ``daemon.run(stop)`` inside.
    """

    daemon: NodeDaemon
    control: ControlPlane
    health: HealthServer
    #: Where the control plane reaches the coordinator, and whether through SOCKS5 (Tor).
    coordinator_url: str
    via_proxy: bool
    #: owm-mine, when ``[mining] enabled`` (SRS-NODE-13); always clearnet (SRS-NET-05).
    miner: MiningWorker | None = None
    #: The mining login proxy, when ``[mining] proxy_listen`` is set (SRS-POOL-03).
    mining_proxy: MiningProxy | None = None

    @contextmanager
    def running(self) -> Iterator[Node]:
        """Serve ``/health`` for the ``with`` block; then close it, the task log and the
        control plane."""
        self.health.start()
        if self.miner is not None:
            self.miner.start()
        if self.mining_proxy is not None:
            log.info("mining login proxy: miners connect to %s", self.mining_proxy.start())
        try:
            yield self
        finally:
            if self.mining_proxy is not None:
                self.mining_proxy.stop()
            if self.miner is not None:
                self.miner.stop()
            self.health.close()
            self.daemon.log.close()
            self.control.close()


def build_node(
    settings: NodeSettings,
    control: ControlPlane | None = None,
    *,
    report: HardwareReport | None = None,
    say: Callable[[str], None] = print,
) -> Node:
    """The node process for ``settings`` (nothing started: use :meth:`Node.running`).

    ``control`` defaults to the gRPC client of ``$OWM_COORDINATOR_URL`` / ``[coordinator] url``,
    over mTLS (:func:`client_tls`), through ``[coordinator] socks5_proxy`` when set; tests pass
    the in-process twin. A control
    plane built here is closed again when the rest cannot be built.
    """
    url = coordinator_url(settings)
    miner, proxy = mining_worker_from(settings), mining_proxy_from(settings)
    owned = control is None
    if control is None:
        from owm_adapters.control_plane.grpc_client import GrpcControlPlane

        tls = client_tls(settings, load_node_identity(settings), SystemClock().now())
        control = GrpcControlPlane(url, settings.coordinator.socks5_proxy, tls=tls,
                                   coordinator_public_key=coordinator_public_key(settings))
    via_proxy = bool(getattr(control, "via_proxy", False))
    try:
        daemon = build_daemon(settings, control, report=report, say=say, via_proxy=via_proxy)
        try:
            health = HealthServer(
                settings.node.health_port, daemon.health,
                NodeMetrics(daemon, None if proxy is None else proxy.counts).render,
                readiness=Readiness(daemon.readiness_probes()),
            )
        except BaseException:
            daemon.log.close()
            raise
    except BaseException:
        if owned:
            control.close()
        raise
    return Node(daemon=daemon, control=control, health=health, coordinator_url=url,
                via_proxy=via_proxy, miner=miner, mining_proxy=proxy)


def mining_worker_from(settings: NodeSettings) -> MiningWorker | None:
    """owm-mine for ``[mining]`` (None while it is off), signed in as this node."""
    mining = settings.mining
    if not mining.enabled:
        return None
    return MiningWorker(load_node_identity(settings), mining.pool_url, mining.worker,
                        mining.intensity, mining.max_shares_per_minute,
                        hasher_for(mining.hasher))


def mining_proxy_from(settings: NodeSettings) -> MiningProxy | None:
    """The mining login proxy for ``[mining] proxy_listen`` (None while it is empty), signing
    miners in as this node on ``[mining] pool_url``, over clearnet only (SRS-NET-05)."""
    mining = settings.mining
    if not mining.proxy_listen:
        return None
    pool = PoolUrl.parse(mining.pool_url)
    check_clearnet(pool.host, os.environ)
    key_dir = Path(settings.node.data_dir).expanduser() / "mine-proxy"
    return mining_proxy(pool, load_node_identity(settings), key_dir, SystemClock().now(),
                        listen=listen_address(mining.proxy_listen, "mining.proxy_listen"),
                        allowed=allowed_networks(mining.proxy_allow, "mining.proxy_allow"))


def build_daemon(
    settings: NodeSettings,
    control: ControlPlane,
    *,
    report: HardwareReport | None = None,
    say: Callable[[str], None] = print,
    via_proxy: bool = False,
) -> NodeDaemon:
    """The node daemon for ``settings`` talking to ``control`` (not started; part of
    :func:`build_node`)."""
    identity = load_node_identity(settings)
    behaviour = daemon_settings(settings)
    lightning = ln_signer(settings)
    hw = report if report is not None else detect_hardware(settings.node.bandwidth_mbps)
    manifest = hw.manifest()
    state_dir = data_dir(settings)
    secure_tree(state_dir)  # keys, task log, weights: the node operator's only
    tasks = settings.tasks
    models = model_cache_dir(settings.node.model_cache_dir, str(state_dir))
    runner = TaskRunner(
        limits=Limits(
            timeout_s=float(tasks.timeout_s),
            memory_mb=tasks.memory_mb,
            gpu_memory_mb=tasks.gpu_memory_mb,
            gpu_thread_percentage=tasks.gpu_thread_percentage,
        ),
        gpus=hw.devices,
        model_dir=str(models),
        keep_spare=True,
    )
    return NodeDaemon(
        identity,
        control,
        manifest,
        runner,
        TaskLog.in_dir(state_dir),
        SystemClock(),
        behaviour,
        data_dir=state_dir,
        say=say,
        hardware=hw.summary(),
        coordinator_url=coordinator_url(settings),
        via_proxy=via_proxy,
        weights=weights_watcher(settings, identity, models, say),
        invoicer=payout_invoicer(settings, identity, control, say, lightning),
        ln_signer=lightning,
    )
