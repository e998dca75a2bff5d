"""Where a devnet lives on disk, and the state file that describes it between commands.

One data directory (default ``~/.owm/devnet``) holds everything::

    devnet.json              the network: identities, ports, API key (mode 0600)
    coordinator.toml         generated coordinator configuration
    coordinator/             the coordinator's data_dir (SQLite store, embedded ledger, key)
    nodes/node-K/owm.toml    generated node configuration; node-K/ is the node's data_dir
    logs/NAME.log            stdout + stderr of each process
    run/NAME.pid             pid of each running process
    traffic.json             what the traffic loop did last (written by the loop)

Nodes are numbered from 1 (``node-1`` … ``node-N``), as ``owm devnet attack --node K`` counts.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import attrs
import cattrs

from owm_core.errors import DomainError

DEFAULT_DATA_DIR = "~/.owm/devnet"
STATE_FILE = "devnet.json"
STATE_VERSION = 1


class DevnetError(DomainError):
    """The devnet in a data directory cannot do what was asked (a wrong node number, an
    unreadable state file, a process that did not come up); the CLI prints it as one line."""

    code = "devnet"


@attrs.frozen
class NodeEntry:
    """One node of the devnet: its identity, its Lightning node, its stake, its ports."""

    name: str
    node_id: str
    public_key: str
    ln_pubkey: str
    ln_address: str
    tier: str
    stake_sat: int
    payout_channel_sat: int
    health_port: int


@attrs.frozen
class CoordinatorEntry:
    """The devnet's coordinator: its signing key, its treasury and where it listens."""

    public_key: str
    treasury_pubkey: str
    grpc_port: int
    api_port: int
    metrics_port: int
    #: SHA-256 of the coordinator's TLS certificate, which every node pins (SRS-SEC-01).
    tls_fingerprint: str = ""
    #: The embedded calendar and its chain's JSON-RPC for the reference ``ots`` client
    #: (``[provenance] calendar_listen``); 0 in a state written before it existed.
    calendar_port: int = 0
    #: The Stratum V2 pool every node mines on (``[pool] listen``); 0 in older states.
    pool_port: int = 0
    #: The local GitHub stand-in the traffic loop serves (0 in a state written before it).
    github_port: int = 0


@attrs.frozen
class DevnetState:
    """Everything ``up``/``down``/``status``/``attack`` need to know about a devnet."""

    created_at: int
    coordinator: CoordinatorEntry
    nodes: tuple[NodeEntry, ...]
    api_key: str
    traffic_interval_s: int
    query_interval_s: int
    fl_interval_s: int = 45
    version: int = STATE_VERSION

    @property
    def api_url(self) -> str:
        """Base URL of the public API (without ``/v1``)."""
        return f"http://127.0.0.1:{self.coordinator.api_port}"

    @property
    def calendar_url(self) -> str:
        """The embedded calendar's URL (and its chain's JSON-RPC); empty before ports exist."""
        port = self.coordinator.calendar_port
        return f"http://127.0.0.1:{port}" if port else ""

    @property
    def grpc_target(self) -> str:
        """``host:port`` of the coordinator's gRPC control plane."""
        return f"127.0.0.1:{self.coordinator.grpc_port}"

    def node(self, number: int) -> NodeEntry:
        """Node ``number`` (1-based); DevnetError naming the valid range otherwise."""
        if not 1 <= number <= len(self.nodes):
            raise DevnetError(f"--node must be between 1 and {len(self.nodes)}, got {number}")
        return self.nodes[number - 1]


_converter = cattrs.Converter(forbid_extra_keys=True)


@attrs.frozen
class DevnetLayout:
    """The paths of one devnet data directory (see the module docstring)."""

    root: Path

    @classmethod
    def at(cls, data_dir: str | os.PathLike[str]) -> DevnetLayout:
        """The layout of ``data_dir`` (``~`` expanded, made absolute)."""
        return cls(Path(data_dir).expanduser().absolute())

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def coordinator_config(self) -> Path:
        return self.root / "coordinator.toml"

    @property
    def coordinator_dir(self) -> Path:
        return self.root / "coordinator"

    @property
    def ledger_file(self) -> Path:
        from owm_adapters.lightning.embedded import LEDGER_FILE

        return self.coordinator_dir / LEDGER_FILE

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def traffic_file(self) -> Path:
        return self.root / "traffic.json"

    @property
    def github_dir(self) -> Path:
        """The devnet GitHub App's private key and webhook secret (0600 files)."""
        return self.root / "github"

    @property
    def traffic_key(self) -> Path:
        """The operator key the sample traffic signs its tasks with (a network submitter)."""
        return self.coordinator_dir / "traffic.key"

    def node_dir(self, name: str) -> Path:
        return self.root / "nodes" / name

    def node_config(self, name: str) -> Path:
        return self.node_dir(name) / "owm.toml"

    def log_file(self, process: str) -> Path:
        return self.logs_dir / f"{process}.log"

    def pid_file(self, process: str) -> Path:
        return self.run_dir / f"{process}.pid"

    def load(self) -> DevnetState | None:
        """The devnet provisioned here, or None when this directory holds none."""
        try:
            raw = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise DevnetError(f"{self.state_file} cannot be read: {exc}") from None
        try:
            return _converter.structure(raw, DevnetState)
        except (cattrs.BaseValidationError, KeyError, TypeError) as exc:
            raise DevnetError(
                f"{self.state_file} is not a devnet state file of this version ({exc}); "
                "start afresh with `owm devnet up --reset`"
            ) from None

    def save(self, state: DevnetState) -> None:
        """Write the state file atomically, readable by its owner only (it holds an API key)."""
        write_private(self.state_file, json.dumps(_converter.unstructure(state), indent=2) + "\n")


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def free_ports(count: int, taken: set[int] | None = None) -> list[int]:
    """``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago.

    Each is found by binding port 0; all sockets stay open until every port is chosen, so the
    kernel never hands out the same one twice here.
    """
    avoid = set(taken or ())
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port not in avoid:
                avoid.add(port)
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing or half-written."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
