"""The composition root of ``owm devnet up``: a whole network on one machine.

:func:`build_devnet` provisions a devnet in its data directory (or reuses the one there: same
identities, same ledger and store, fresh free ports) and returns one frozen :class:`Devnet`
whose fields say what it runs: the coordinator, the node daemons and the traffic loop, each as
the command line an operator would type, and the environment they run in. :meth:`Devnet.start`
hands them to :mod:`owm_adapters.devnet.network`, which starts them and waits until each is
ready.

Provisioning: identities, the coordinator's TLS certificate, configuration files, stake
channels, an API key. The whole devnet runs over mTLS like a real network: every node's
``owm.toml`` carries the coordinator certificate's fingerprint and the coordinator's public key,
which ``owm-coordinator init`` prints for operators (SRS-SEC-01).

The identities are made by the code paths of ``owm-coordinator init`` and ``owm-node init``
(:func:`owm_adapters.storage.keystore.create_identity`, the node's commented ``NODE_TEMPLATE``), so
a
devnet node is configured exactly like an operator's node, only with the devnet's values filled
in. Every node gets a simulated Lightning node in the coordinator's embedded ledger and two
channels with the treasury there:

* the **stake channel**, funded by the node, of exactly the tier minimum the coordinator
  requires (SRS-STAKE-01; the tier is this machine's, as every node runs here), which the
  coordinator verifies at registration;
* a **payout channel**, funded by the treasury with half that amount — below the minimum, so
  it never counts as stake — over which rewards are paid (a node's own stake channel holds no
  treasury balance to pay with, as on a real network).

The coordinator's configuration turns on what a devnet should show happening by itself: redundant
task verification over up to three nodes (over the two left, should one be slashed), FL rounds
of ``owm-base`` every 45 s anchored by the embedded OpenTimestamps calendar, and the knowledge
base with the shipped demo datasets behind ``POST /v1/query``. Each node is pointed at the
coordinator's API for new model versions and at the embedded chain to verify their proofs
before installing them (SRS-NODE-10).

Ports are chosen free on 127.0.0.1 at every ``up`` (:func:`assign_ports`), so a stopped devnet
starts again even when another program took one of its old ports.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

from owm_adapters.bootstrap.settings import (
    NODE_TEMPLATE,
    ConfigError,
    CoordinatorSettings,
    load_coordinator_settings,
    load_node_settings,
)
from owm_adapters.control_plane.tls_files import TlsPaths, coordinator_tls
from owm_adapters.devnet import network, processes
from owm_adapters.devnet.github_traffic import DEVNET_APP_ID, github_files
from owm_adapters.devnet.layout import (
    CoordinatorEntry,
    DevnetLayout,
    DevnetState,
    NodeEntry,
    free_ports,
)
from owm_adapters.files import write_private_text
from owm_adapters.storage import keystore
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import StakeRequirements, Tier

TREASURY_ALIAS = "treasury"
LN_BASE_PORT = 9735
"""The (simulated) Lightning port of the treasury; node K pretends to listen on 9735 + K."""
HEARTBEAT_INTERVAL_S = 5
"""Devnet nodes heartbeat every 5 s instead of 60 s, so the dashboard moves visibly."""
ASSIGNMENT_TIMEOUT_S = 60
WEIGHTS_POLL_S = 15
"""Nodes look for new model versions every 15 s (300 s by default)."""
MAX_REDUNDANCY = 3
NODE_ASK_MSAT = 1_000


def machine_tier(bandwidth_mbps: int = 100) -> Tier:
    """The tier every devnet node registers with: this machine's (SRS-NODE-03)."""
    from owm_adapters.bootstrap.node import detect_hardware

    report = detect_hardware(bandwidth_mbps)
    if report.tier is None:
        raise ConfigError(f"this machine is below the smallest tier: {report.below_minimum}")
    return report.tier


def redundancy_for(nodes: int) -> int:
    """Each task runs on up to three nodes and the majority's answer is paid (data flow 3)."""
    return max(1, min(MAX_REDUNDANCY, nodes))


def provision(
    layout: DevnetLayout,
    nodes: int,
    *,
    now: int,
    traffic_interval_s: int,
    query_interval_s: int,
    fl_interval_s: int = 45,
    tier: Tier | None = None,
    requirements: StakeRequirements | None = None,
) -> DevnetState:
    """Create a new devnet in ``layout``: identities, channels, configs, API key, state file.

    The directory must not hold a devnet already (:func:`remove_devnet` removes one).
    """
    from owm_adapters.lightning.embedded import SimLedger

    if nodes < 1:
        raise ConfigError(f"--nodes must be at least 1, got {nodes}")
    if layout.state_file.exists():
        raise ConfigError(f"{layout.root} already holds a devnet; use --reset to start afresh")
    tier = tier if tier is not None else machine_tier()
    stake_sat = (requirements or StakeRequirements()).for_tier(tier).min_sats
    layout.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    layout.coordinator_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    coordinator_key = keystore.create_identity(layout.coordinator_dir / "coordinator.key")
    tls_fingerprint = coordinator_pin(layout, now)
    keystore.create_identity(layout.traffic_key)
    ledger = SimLedger(layout.ledger_file)
    treasury = ledger.add_node(TREASURY_ALIAS, address=f"127.0.0.1:{LN_BASE_PORT}")
    entries = []
    for number in range(1, nodes + 1):
        name = f"node-{number}"
        identity = keystore.create_identity(layout.node_dir(name) / "identity.key")
        address = f"127.0.0.1:{LN_BASE_PORT + number}"
        ln_pubkey = ledger.add_node(f"devnet-{name}", address=address)
        ledger.open_channel(ln_pubkey, treasury, stake_sat)
        payout_sat = stake_sat // 2
        ledger.open_channel(treasury, ln_pubkey, payout_sat)
        entries.append(
            NodeEntry(
                name=name,
                node_id=identity.node_id,
                public_key=identity.public_key_hex,
                ln_pubkey=ln_pubkey,
                ln_address=address,
                tier=tier.value,
                stake_sat=stake_sat,
                payout_channel_sat=payout_sat,
                health_port=0,
            )
        )
    state = DevnetState(
        created_at=now,
        coordinator=CoordinatorEntry(
            public_key=coordinator_key.public_key_hex,
            tls_fingerprint=tls_fingerprint,
            treasury_pubkey=treasury,
            grpc_port=0,
            api_port=0,
            metrics_port=0,
        ),
        nodes=tuple(entries),
        api_key="",
        traffic_interval_s=traffic_interval_s,
        query_interval_s=query_interval_s,
        fl_interval_s=fl_interval_s,
    )
    state = assign_ports(state)
    write_configs(layout, state)
    state = attrs.evolve(state, api_key=_issue_api_key(layout, now))
    layout.save(state)
    return state


def coordinator_pin(layout: DevnetLayout, now: int) -> str:
    """The fingerprint of the coordinator's TLS certificate, created (0600, bound to the
    coordinator key) like ``owm-coordinator init`` does when it is not there yet."""
    key = keystore.load_identity(layout.coordinator_dir / "coordinator.key")
    credentials, _created = coordinator_tls(TlsPaths.in_dir(layout.coordinator_dir), key, now)
    return credentials.fingerprint


def remove_devnet(layout: DevnetLayout) -> None:
    """Remove everything a devnet keeps in ``layout`` (never other files in the directory)."""
    state = layout.state_file.exists()
    for path in (
        layout.coordinator_dir, layout.root / "nodes", layout.run_dir, layout.logs_dir,
    ):
        if path.is_dir():
            shutil.rmtree(path)
    for path in (layout.coordinator_config, layout.traffic_file):
        path.unlink(missing_ok=True)
    if state:
        layout.state_file.unlink()


def assign_ports(state: DevnetState) -> DevnetState:
    """The same devnet on ports that are free now: gRPC, API, metrics, the OTS calendar, the
    mining pool, the GitHub stand-in and one health port a node."""
    ports = free_ports(6 + len(state.nodes))
    coordinator = attrs.evolve(
        state.coordinator, grpc_port=ports[0], api_port=ports[1], metrics_port=ports[2],
        calendar_port=ports[3], pool_port=ports[4], github_port=ports[5],
    )
    nodes = tuple(
        attrs.evolve(node, health_port=port)
        for node, port in zip(state.nodes, ports[6:], strict=True)
    )
    return attrs.evolve(state, coordinator=coordinator, nodes=nodes)


def write_configs(layout: DevnetLayout, state: DevnetState) -> None:
    """(Re)write ``coordinator.toml`` and every node's ``owm.toml`` for ``state``'s ports.

    Each file is read back with the settings loader, so a devnet never starts on a
    configuration its own programs would refuse.
    """
    write_private_text(layout.coordinator_config, coordinator_toml(layout, state))
    load_coordinator_settings(layout.coordinator_config, environ={})
    ensure_chain(layout)
    for node in state.nodes:
        path = layout.node_config(node.name)
        write_private_text(path, node_toml(layout, state, node))
        settings = load_node_settings(path, environ={})
        if settings.node.health_port != node.health_port:
            raise ConfigError(f"{path}: node.health_port was not written")


def coordinator_settings(layout: DevnetLayout) -> CoordinatorSettings:
    """The devnet coordinator's settings, as its process reads them."""
    return load_coordinator_settings(layout.coordinator_config)


def coordinator_toml(layout: DevnetLayout, state: DevnetState) -> str:
    """The devnet's ``coordinator.toml``: embedded defaults, devnet ports, redundant checks."""
    c = state.coordinator
    traffic = traffic_identity(layout)
    redundancy = redundancy_for(len(state.nodes))
    floor = min(2, redundancy)
    min_participants = redundancy
    return f"""\
# coordinator.toml of an OWM devnet, written by `owm devnet up` at every start
# (edit the generator, not this file: docs/devnet.md). Keys: owm_adapters/bootstrap/settings.py.

[coordinator]
# SQLite store, the embedded Lightning ledger and the signing key live here.
data_dir = {_q(layout.coordinator_dir)}
grpc_listen = "127.0.0.1:{c.grpc_port}"
api_listen = "127.0.0.1:{c.api_port}"
metrics_listen = "127.0.0.1:{c.metrics_port}"
grace_period_s = 5
# Signs the public slashing log and every task assignment (created like `owm-coordinator
# init` does); the nodes know its public key.
signing_key_path = {_q(layout.coordinator_dir / "coordinator.key")}
# The control plane is mTLS; the nodes pin this certificate's fingerprint.
tls_key_path = {_q(layout.coordinator_dir / "tls.key")}
tls_cert_path = {_q(layout.coordinator_dir / "tls.crt")}

[tasks]
# Every task runs on {redundancy} node(s); the majority's answer is verified and paid.
verification = "redundant"
redundancy = {redundancy}
# With fewer nodes that can take a task (one slashed, say) it runs on those left, never on
# fewer than {floor}; below that on one node, spot-checked (a re-execution by another node
# holds the reward of spot_rate_ppm per million tasks until it agrees).
redundancy_floor = {floor}
assignment_timeout_s = {ASSIGNMENT_TIMEOUT_S}

[funding]
# Funded work only: the sample traffic signs its tasks with {_q(layout.traffic_key)},
# an operator key whose tasks draw on the treasury's network budget per day.
network_submitters = ["{traffic.public_key_hex}"]
# The sample traffic asks a query every {state.query_interval_s} s with one API key, far more
# than one caller's share of the daily query budget allows (a few dozen queries); on this
# network of your own the share is off.
query_share_msat_per_caller = 0

[lightning]
# The simulated ledger in data_dir/lightning.sqlite3; the treasury is its node "treasury".
backend = "embedded"
treasury_alias = "{TREASURY_ALIAS}"

[stake]
# Stakes are re-checked every 10 minutes on a devnet (6 hours by default).
reverify_period_s = 600
grace_period_s = 3600
# Tier-1 slashing counts reporters by distinct stake channel; beside one poisoner a 3-node
# devnet has 2 honest nodes to report it (3 are needed by default, SRS-STAKE-04).
tier1_reporters = 2

{_fl_toml(state, min_participants)}[provenance]
# Model versions are anchored by the embedded OpenTimestamps calendar in a local regtest
# chain (data_dir/provenance/chain.sqlite3), which the nodes check proofs against. The
# calendar and the chain's JSON-RPC are served on calendar_listen for the reference client:
# ots stamp -c URL, ots upgrade, ots --btc-regtest --bitcoin-node URL verify.
backend = "embedded"
calendar_interval_s = 5
calendar_listen = "{f"127.0.0.1:{c.calendar_port}" if c.calendar_port else ""}"

[knowledge]
# The conglomerate's knowledge base: MiniLM embeddings (shipped offline) in embedded Qdrant,
# loaded with the shipped demo datasets, so that POST /v1/query answers real questions.
enabled = true
embedder = "minilm"
demo_data = true
# Every process of a devnet shares one machine: give the reader tasks time to be verified.
query_timeout_s = 20
""" + _pool_toml(state) + _governance_toml(layout) + _github_toml(layout, state)


def _fl_toml(state: DevnetState, min_participants: int) -> str:
    """``[fl]`` of the devnet's coordinator.toml: a robust round every ``fl_interval_s``."""
    return f"""[fl]
# A federated round of owm-base every {state.fl_interval_s} s once {min_participants} node(s)
# serve fl_training; updates are uploaded to this coordinator's API, aggregated robustly.
enabled = true
sub_model = "owm-base"
# TinyNet, not a reader adapter: an adapter round costs each node 4x the CPU or more, and three
# nodes share two cores with everything else here; the margins are in docs/models.md.
model = "tinynet"
interval_s = {state.fl_interval_s}
min_participants = {min_participants}
rule = "trimmed"
# A round whose task is stuck (a replica lost under load) closes with the updates it has
# after this long instead of holding the next round for the default 10 minutes.
round_timeout_s = {max(60, 4 * state.fl_interval_s)}

"""


POOL_SHARES_PER_MINUTE = 2
"""Each devnet node's miner submits at most this many shares a minute: on the regtest chain
every share is a block, and the embedded chain must not run ahead of the clock."""


POOL_BLOCK_REWARD_SAT = 50
"""What FPPS pretends a devnet block is worth: each share earns its miner 40 sat (80 %), about
5,000 sat an hour a node at two shares a minute, so a payout channel lasts for hours."""
POOL_PAYOUT_SWEEP_S = 10.0
"""How often the devnet's pool pays what a block made due: payouts show within a minute."""


def _pool_toml(state: DevnetState) -> str:
    port = state.coordinator.pool_port
    if not port:
        return ""
    return f"""
[pool]
# The Stratum V2 pool on the embedded regtest chain; every node mines on it ([mining]).
enabled = true
listen = "127.0.0.1:{port}"
template_poll_s = 2.0
# Every regtest share is a block: FPPS values it as a {POOL_BLOCK_REWARD_SAT}-sat block, not 50 BTC,
# so the payouts (due at the next sweep after each block) fit the devnet's channels.
fpps_block_reward_sat = {POOL_BLOCK_REWARD_SAT}
payout_sweep_s = {POOL_PAYOUT_SWEEP_S}
"""


def pool_url(layout: DevnetLayout, state: DevnetState) -> str:
    """The pool's URL with its authority key, created now if the coordinator has none yet."""
    from owm_core.pool.noise import encode_authority_key
    from owm_core.pool.secp256k1 import xonly_public_key

    path = layout.coordinator_dir / "pool" / "authority.key"
    secret = keystore.load_secret(path) if path.exists() else keystore.create_secret(path)
    key = encode_authority_key(xonly_public_key(secret))
    return f"stratum2+tcp://127.0.0.1:{state.coordinator.pool_port}/{key}"


def _github_toml(layout: DevnetLayout, state: DevnetState) -> str:
    port = state.coordinator.github_port
    if not port:
        return ""
    key, secret = github_files(layout)
    return f"""
[github]
# The GitHub App against the devnet's GitHub stand-in (served by the traffic loop): sample
# bounties and contributions are paid over the embedded ledger (docs/github-app.md).
app_id = "{DEVNET_APP_ID}"
private_key_file = {_q(key)}
webhook_secret_file = {_q(secret)}
api_url = "http://127.0.0.1:{port}"
public_url = "{state.api_url}"
contribution_reward_sat = 100
max_bounty_sat = 10000
bounty_budget_sat = 1000000
"""


GOVERNANCE_DIR = "governance"
MAINTAINERS = 2
HOLDERS = 5
TREASURY_FUNDING_SAT = 100_000_000
"""1 BTC in the embedded ledger for the devnet's treasury wallet, at its first start."""


@attrs.frozen
class GovernanceKeys:
    """The devnet's governance key files: two maintainers, five holders (each an Ed25519
    statement key and a secp256k1 multisig key), all 0600 under ``<devnet>/governance``."""

    folder: Path

    def maintainer(self, number: int) -> Path:
        """Maintainer ``number``'s Ed25519 key file (1 or 2)."""
        return self.folder / f"maintainer-{number}.key"

    def holder(self, number: int) -> Path:
        """Holder ``number``'s Ed25519 statement key file (1 … 5)."""
        return self.folder / f"holder-{number}.key"

    def multisig(self, number: int) -> Path:
        """Holder ``number``'s secp256k1 multisig key file (its hardware wallet's stand-in)."""
        return self.folder / f"holder-{number}.multisig.key"

    @property
    def time_file(self) -> Path:
        """Seconds added to the governance rules' time (``owm devnet gov-time``)."""
        return self.folder / "time-offset"


def governance_keys(layout: DevnetLayout) -> GovernanceKeys:
    """The devnet's governance keys, created where missing (older devnets get them too)."""
    keys = GovernanceKeys(layout.root / GOVERNANCE_DIR)
    for path in [*(keys.maintainer(i) for i in range(1, MAINTAINERS + 1)),
                 *(keys.holder(i) for i in range(1, HOLDERS + 1)),
                 *(keys.multisig(i) for i in range(1, HOLDERS + 1))]:  # fmt: skip
        if not path.exists():
            keystore.create_secret(path)
    return keys


def _governance_toml(layout: DevnetLayout) -> str:
    """The ``[governance]`` section: the devnet's roles, wallet and governance time."""
    from owm_adapters.treasury.wallet import public_key_of

    keys = governance_keys(layout)

    def listed(values: list[str]) -> str:
        return "[" + ", ".join(f'"{v}"' for v in values) + "]"

    maintainers = [keystore.load_identity(keys.maintainer(i)).public_key_hex
                   for i in range(1, MAINTAINERS + 1)]  # fmt: skip
    statements = [keystore.load_identity(keys.holder(i)).public_key_hex
                  for i in range(1, HOLDERS + 1)]  # fmt: skip
    multisig = [public_key_of(keystore.load_secret(keys.multisig(i)))
                for i in range(1, HOLDERS + 1)]  # fmt: skip
    return f"""
[governance]
# Two core maintainers and five treasury multisig holders; their key files are in
# {_q(keys.folder)} (docs/devnet.md, docs/governance.md).
maintainer_keys = {listed(maintainers)}
holder_statement_keys = {listed(statements)}
holder_multisig_keys = {listed(multisig)}
# The 3-of-5 treasury wallet on regtest: its coins live in the embedded ledger, funded with
# 1 BTC at the first start; `owm devnet gov-time --days N` moves the governance clock ahead.
network = "regtest"
ledger_path = {_q(layout.coordinator_dir / "treasury-ledger.sqlite3")}
devnet_funding_sat = {TREASURY_FUNDING_SAT}
devnet_time_file = {_q(keys.time_file)}
explorer_tx_url = ""
"""


def traffic_identity(layout: DevnetLayout) -> Identity:
    """The sample traffic's operator key (created for devnets provisioned before it existed)."""
    if not layout.traffic_key.exists():
        return keystore.create_identity(layout.traffic_key)
    return keystore.load_identity(layout.traffic_key)


def node_toml(layout: DevnetLayout, state: DevnetState, node: NodeEntry) -> str:
    """A node's ``owm.toml``: ``owm-node init``'s commented template with the devnet's values."""
    directory = layout.node_dir(node.name)
    text = NODE_TEMPLATE.format(
        data_dir=str(directory), identity_key=str(directory / "identity.key")
    )
    values = {
        ("node", "health_port"): str(node.health_port),
        ("node", "heartbeat_interval_s"): str(HEARTBEAT_INTERVAL_S),
        ("coordinator", "url"): f'"{state.grpc_target}"',
        ("coordinator", "tls_fingerprint"): f'"{state.coordinator.tls_fingerprint}"',
        ("coordinator", "public_key"): f'"{state.coordinator.public_key}"',  # SRS-SEC-02/03
        ("lightning", "node_uri"): f'"{node.ln_pubkey}@{node.ln_address}"',
        # The node's Lightning node is its alias in the devnet's ledger: it signs registrations.
        ("lightning", "backend"): '"embedded"',
        ("lightning", "ledger_path"): _q(layout.ledger_file),
        ("lightning", "ledger_alias"): f'"devnet-{node.name}"',
        ("lightning", "treasury_uri"): (
            f'"{state.coordinator.treasury_pubkey}@127.0.0.1:{LN_BASE_PORT}"'
        ),
        ("coordinator", "api_url"): f'"{state.api_url}"',
        ("coordinator", "weights_poll_s"): str(WEIGHTS_POLL_S),
        ("coordinator", "allow_private_targets"): "true",  # everything runs on 127.0.0.1
        ("chain", "local_chain"): _q(chain_file(layout)),
        ("tasks", "ask_msat"): str(NODE_ASK_MSAT),
        ("tasks", "timeout_s"): "120",
    }
    for (section, key), value in values.items():
        text = set_toml_value(text, section, key, value)
    header = (
        f"# {node.name} of the OWM devnet in {layout.root}, written by `owm devnet up`.\n"
    )
    if state.coordinator.pool_port:
        text += (
            f'\n[mining]\nenabled = true\npool_url = "{pool_url(layout, state)}"\n'
            f'worker = "{node.name}"\nintensity = 10\n'
            f"max_shares_per_minute = {POOL_SHARES_PER_MINUTE}\n"
        )
    return header + text


def set_toml_value(text: str, section: str, key: str, value: str) -> str:
    """Set ``key = value`` inside ``[section]`` of a commented TOML text, keeping its comments.

    The key's existing line is replaced; a key that is absent is added at the section's end.
    """
    lines = text.splitlines(keepends=True)
    start = next(
        (i for i, line in enumerate(lines) if line.strip() == f"[{section}]"), None
    )
    if start is None:
        raise ConfigError(f"the template has no [{section}] section")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
        len(lines),
    )
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for i in range(start + 1, end):
        if pattern.match(lines[i]):
            lines[i] = f"{key} = {value}\n"
            return "".join(lines)
    insert_at = end
    while insert_at > start + 1 and not lines[insert_at - 1].strip():
        insert_at -= 1
    lines.insert(insert_at, f"{key} = {value}\n")
    return "".join(lines)


def chain_file(layout: DevnetLayout) -> Path:
    """The embedded chain the coordinator anchors model versions in; nodes verify against it."""
    from owm_adapters.provenance.embedded import CHAIN_FILE

    return layout.coordinator_dir / "provenance" / CHAIN_FILE


def ensure_chain(layout: DevnetLayout) -> Path:
    """Create the embedded chain (its genesis block) if it does not exist yet.

    The coordinator would create it when it stamps its first model version; the nodes must be
    able to open it from their first start, as their ``[chain] local_chain``.
    """
    from owm_adapters.chain.local_chain import LocalChain

    path = chain_file(layout)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        LocalChain(path)
    return path


def _q(path: Path) -> str:
    """A TOML basic string holding ``path``."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _issue_api_key(layout: DevnetLayout, now: int) -> str:
    """A commercial API key for the devnet's traffic loop and status (what
    ``owm-coordinator api-key create --plan commercial`` issues)."""
    from owm_adapters.bootstrap.coordinator import repositories_from
    from owm_adapters.services.api import issue_api_key
    from owm_core.access.api_keys import Plan

    repositories = repositories_from(coordinator_settings(layout))
    try:
        _key, secret = issue_api_key(repositories, "owm-devnet", Plan.COMMERCIAL, now)
    finally:
        repositories.close()
    return secret


class DevnetRunning(ConfigError):
    """``up`` was asked for while the devnet in this data directory is already running."""

    code = "devnet-running"


@attrs.frozen
class Devnet:
    """Everything ``owm devnet up`` runs, built only by :func:`build_devnet`.

    ``processes`` lists the coordinator, the node daemons and the traffic loop in start order,
    each as the command an operator runs against the generated configuration; ``environment``
    is what they run in (this one's, without the overrides that would bypass that
    configuration). ``provisioned`` says whether this build made the network new.
    """

    layout: DevnetLayout
    state: DevnetState
    processes: tuple[processes.DevnetProcess, ...]
    environment: Mapping[str, str]
    provisioned: bool

    def start(self, say: Callable[[str], None] = lambda _line: None) -> DevnetState:
        """Start every process in the background, each once the one before is ready; on a
        failure stop them all again. The processes outlive this call (``owm devnet down``)."""
        network.start(self.layout, self.state, self.processes, self.environment, say)
        return self.state


def build_devnet(
    layout: DevnetLayout,
    nodes: int,
    *,
    reset: bool = False,
    traffic_interval_s: int = 15,
    query_interval_s: int = 60,
    fl_interval_s: int = 45,
    say: Callable[[str], None] = lambda _line: None,
    now: Callable[[], float] = time.time,
) -> Devnet:
    """The devnet in ``layout`` with ``nodes`` nodes, provisioned or reconfigured (nothing started).

    Raises DevnetRunning when any of its processes already runs (stop it, or use ``down``
    first), ConfigError when the directory holds a devnet of another size (use ``reset``).
    """
    alive = processes.running(layout)
    if alive:
        names = ", ".join(p.name for p in alive)
        raise DevnetRunning(
            f"the devnet in {layout.root} is already up ({names}); "
            "`owm devnet status` shows it, `owm devnet up --restart` restarts it"
        )
    if reset:
        remove_devnet(layout)
    state = layout.load()
    provisioned = state is None
    if state is None:
        say(f"provisioning a new devnet of {nodes} node(s) in {layout.root}")
        state = provision(
            layout, nodes, now=int(now()), traffic_interval_s=traffic_interval_s,
            query_interval_s=query_interval_s, fl_interval_s=fl_interval_s,
        )
        _describe_new(state, say)
    else:
        if len(state.nodes) != nodes:
            raise ConfigError(
                f"{layout.root} holds a devnet of {len(state.nodes)} node(s), not {nodes}; "
                f"use --nodes {len(state.nodes)}, or --reset for a new one"
            )
        say(f"restarting the devnet in {layout.root} (same identities, ledger and store)")
        pinned = attrs.evolve(
            state.coordinator, tls_fingerprint=coordinator_pin(layout, int(now()))
        )  # a devnet provisioned before mTLS gets its certificate now
        state = attrs.evolve(
            assign_ports(attrs.evolve(state, coordinator=pinned)),
            traffic_interval_s=traffic_interval_s,
            query_interval_s=query_interval_s, fl_interval_s=fl_interval_s,
        )
        write_configs(layout, state)
        layout.save(state)
    return Devnet(
        layout=layout, state=state, processes=processes.commands(layout, state),
        environment=processes.child_environment(), provisioned=provisioned,
    )


def _describe_new(state: DevnetState, say: Callable[[str], None]) -> None:
    first = state.nodes[0]
    say(f"  coordinator key   {state.coordinator.public_key}")
    say(f"  TLS fingerprint   {state.coordinator.tls_fingerprint} (pinned by every node)")
    say(f"  treasury (LN)     {state.coordinator.treasury_pubkey}")
    for node in state.nodes:
        say(f"  {node.name:<7} id {node.node_id}  LN {node.ln_pubkey[:16]}…")
    say(f"  stake channels    {first.stake_sat:,} sat each (tier {first.tier} minimum), "
        f"node → treasury, in the embedded ledger")
    say(f"  payout channels   {first.payout_channel_sat:,} sat each, treasury → node")
