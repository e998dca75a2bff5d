"""Settings: the TOML configuration of a node or coordinator, read at the edge.

Structuring rules live here (cattrs), never on domain classes. Every key is optional and has a
documented default, so an empty file — or no file — gives a working local setup. Unknown keys
and wrong types are reported with their dotted path (``node.health_port: …``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs

from owm_core.errors import DomainError


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
    onion_address: str = ""
    #: Ed25519 public keys (64 hex) of the release signers this node trusts, and how many of
    #: them must sign a release package before `owm-node verify-release --stage` (SRS 4.1).
    release_keys: list[str] = attrs.Factory(list)
    release_threshold: int = 1


@attrs.frozen
class CoordinatorLink:
    """How the node reaches the coordinator's gRPC control plane (SRS-NET-02)."""

    url: str = "127.0.0.1:50051"
    socks5_proxy: str | None = None


@attrs.frozen
class NodeLightning:
    """The node's own Lightning node, where rewards are paid (SRS-LN-02), and the treasury
    node its stake channel goes to (SRS-NODE-11)."""

    node_uri: str = ""
    treasury_uri: str = ""


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
class NodeSettings:
    """The whole ``owm.toml`` of a node daemon."""

    node: NodeSection = NodeSection()
    coordinator: CoordinatorLink = CoordinatorLink()
    lightning: NodeLightning = NodeLightning()
    tasks: NodeTasks = NodeTasks()


_converter = cattrs.Converter(forbid_extra_keys=True)
_T = TypeVar("_T")


def load_node_settings(path: Path | None) -> NodeSettings:
    """Read a node configuration; ``None`` means all defaults."""
    return _load(path, NodeSettings)


def _load(path: Path | None, kind: type[_T]) -> _T:
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"no configuration file at {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return _converter.structure(raw, kind)
    except cattrs.BaseValidationError as exc:
        details = "; ".join(_describe(exc))
        raise ConfigError(f"{path}: {details}") from None


def _describe(exc: cattrs.BaseValidationError) -> list[str]:
    """Turn a cattrs error tree into ``dotted.path: message`` lines."""
    lines = []
    for text in cattrs.transform_error(exc, path=""):
        message, _, where = text.rpartition(" @ ")
        lines.append(f"{where.lstrip('.') or '(top level)'}: {message}")
    return lines


def _strict_scalar(kind: type) -> Any:
    """TOML already types its values; refuse coercions such as '80' → 80 or 1.5 → 1."""

    def structure(value: Any, _type: Any) -> Any:
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
# Route control-plane traffic through Tor (SRS-NET-02). FL uploads and weight
# downloads never use this proxy (SRS-NET-04).
# socks5_proxy = "127.0.0.1:9050"

[lightning]
# Your Lightning node's URI, where rewards are paid: pubkey@host:port (SRS-LN-02).
node_uri = ""
# The treasury's Lightning node (pubkey@host:port, published by your coordinator). Your stake
# is a channel from node_uri to this node; `owm-node start` prints the exact command (SRS-NODE-11).
treasury_uri = ""

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

    ``database_url`` empty means an SQLite file ``coordinator.sqlite`` under ``data_dir``;
    production sets a ``postgresql+psycopg://`` URL. ``api_listen`` is the public HTTP API
    (REST + SSE; empty: off), ``metrics_listen`` Prometheus (empty: off). ``onion_listen``
    (empty: off) is the
    local-only port the Tor hidden service forwards to (SRS-COORD-08); registrations arriving
    there are rate-limited per node key instead of per IP (SRS-NET-07).
    """

    data_dir: str = "~/.owm/coordinator"
    grpc_listen: str = "127.0.0.1:50051"
    onion_listen: str = ""
    api_listen: str = "127.0.0.1:8000"
    metrics_listen: str = "127.0.0.1:9464"
    database_url: str = ""
    grace_period_s: int = 10
    #: The coordinator's Ed25519 key that signs slashing-log entries (SRS-LN-13);
    #: created by ``owm-coordinator init``.
    signing_key_path: str = "~/.owm/coordinator.key"


@attrs.frozen
class TasksSection:
    """How tasks are verified and how long a node has to deliver (seed 003, data flow 3).

    ``verification`` is ``"redundant"`` (each task runs on ``redundancy`` nodes, majority
    wins) or ``"spot"`` (one node; a share of ``spot_rate_ppm`` per million is re-executed).
    """

    verification: str = "redundant"
    redundancy: int = 3
    spot_rate_ppm: int = 100_000
    assignment_timeout_s: int = 600


@attrs.frozen
class CoordinatorLightning:
    """The treasury's Lightning node, which stake channels are checked against (spec 4.12).

    ``backend = "embedded"`` is the simulated ledger in ``data_dir/lightning.sqlite`` with a
    node called ``treasury_alias``.
    """

    backend: str = "embedded"
    treasury_alias: str = "treasury"


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


@attrs.frozen
class CoordinatorSettings:
    """The whole ``coordinator.toml``."""

    coordinator: CoordinatorSection = CoordinatorSection()
    tasks: TasksSection = TasksSection()
    lightning: CoordinatorLightning = CoordinatorLightning()
    stake: StakeSection = StakeSection()


def load_coordinator_settings(path: Path | None) -> CoordinatorSettings:
    """Read a coordinator configuration; ``None`` means all defaults."""
    settings = _load(path, CoordinatorSettings)
    if settings.tasks.verification not in {"redundant", "spot"}:
        raise ConfigError(f"{path}: tasks.verification: must be 'redundant' or 'spot'")
    if settings.lightning.backend != "embedded":
        raise ConfigError(
            f"{path}: lightning.backend: only 'embedded' can be built from this file so far"
        )
    return settings
