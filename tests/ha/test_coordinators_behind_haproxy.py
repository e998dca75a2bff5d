"""Three coordinator processes on one PostgreSQL behind a real HAProxy, four node daemons
(SRS-COORD-05, SRS-PERF-07).

``owm-coordinator serve`` three times over one database, one data directory (one signing key,
one TLS certificate: nodes pin one fingerprint) and one embedded Lightning ledger (the
treasury they all pay from); HAProxy 2.6 (Debian's package) in front, gRPC in TCP mode (mTLS
passed through) and the HTTP API in HTTP mode, with the configuration
``tests/ha/haproxy.cfg.template`` that docs/high-availability.md shows. Four ``owm-node
start`` daemons reach the coordinators only through HAProxy; the test's client submits tasks
through it too. Redundant verification on three of the four nodes.

The coordinator holding the singleton leads (found in ``pg_locks``) is SIGKILLed while tasks
are still in their verification rounds and their rewards are being paid. Then: every lead moves
to a survivor, every node is connected and streaming again within 10 s, nodes that registered
at the dead coordinator heartbeat at the others, every task is verified, and every settled
replica is paid exactly once — one outbox record, one Lightning payment per hash.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from sqlalchemy import text

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_adapters.control_plane.submitter import signed_submit_request
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.storage.sql import SqlRepositories, open_repositories
from owm_adapters.storage.sql.leadership import lead_lock_id
from owm_core.market.tasks import TaskRequest, TaskState
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import PaymentState
from tests.e2e.test_node_network import BIN, STAKE_SAT, Proc, base_env, health, poll
from tests.server.harness import OPERATOR
from tests.tls_support import secure_channel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TEMPLATE = Path(__file__).with_name("haproxy.cfg.template")
COORDINATORS = 3
NODES = 4
TASKS_BEFORE, TASKS_DURING = 3, 4
RECONNECT_S = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def haproxy_config(grpc_port: int, api_port: int, backends: list[tuple[int, int]]) -> str:
    """The template with the balancer's ports and one server line per coordinator."""
    line = "    server {name} 127.0.0.1:{port} check inter 500ms fall 2 rise 2"
    return TEMPLATE.read_text().format(
        grpc_port=grpc_port, api_port=api_port,
        grpc_servers="\n".join(line.format(name=f"c{i}", port=g) for i, (g, _) in
                               enumerate(backends)),
        api_servers="\n".join(line.format(name=f"a{i}", port=a) for i, (_, a) in
                              enumerate(backends)),
    )


@attrs.define
class Cluster:
    """What the test drives: processes, addresses, the store, the ledger."""

    coordinators: list[Proc]
    nodes: dict[str, dict[str, object]]
    grpc_address: str
    api_url: str
    pin: str
    store: SqlRepositories
    ledger_file: Path
    treasury: str
    stub: pb_grpc.CoordinatorStub


def coordinator_toml(data_dir: Path, url: str, grpc_port: int, api_port: int) -> str:
    return (
        "[coordinator]\n"
        f'data_dir = "{data_dir}"\n'
        f'database_url = "{url}"\n'
        f'grpc_listen = "127.0.0.1:{grpc_port}"\n'
        f'api_listen = "127.0.0.1:{api_port}"\n'
        'metrics_listen = ""\n'
        'api_trusted_proxies = ["127.0.0.1"]\n'
        f'signing_key_path = "{data_dir / "coordinator.key"}"\n'
        "[tasks]\n"
        'verification = "redundant"\n'
        "redundancy = 3\n"
        "assignment_timeout_s = 10\n"
        "[funding]\n"
        f'network_submitters = ["{OPERATOR.public_key_hex}"]\n'
        "[fl]\nenabled = false\n"
        "[knowledge]\nenabled = false\n"
    )


def node_toml(node_dir: Path, grpc: str, pin: str, key: str, ln: str, treasury: str,
              ledger: Path, alias: str) -> str:
    return (
        "[node]\n"
        f'data_dir = "{node_dir}"\n'
        f'identity_key = "{node_dir / "identity.key"}"\n'
        "health_port = 0\nheartbeat_interval_s = 1\n"
        "[coordinator]\n"
        f'url = "{grpc}"\ntls_fingerprint = "{pin}"\npublic_key = "{key}"\n'
        "[lightning]\n"
        f'node_uri = "{ln}@127.0.0.1:9735"\ntreasury_uri = "{treasury}@127.0.0.1:9735"\n'
        f'backend = "embedded"\nledger_path = "{ledger}"\nledger_alias = "{alias}"\n'
        "[tasks]\nask_msat = 500\ntypes = [\"inference\"]\ntimeout_s = 60\n"
    )


@pytest.fixture
def cluster(migrated_postgresql_url: str, tmp_path: Path) -> Iterator[Cluster]:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert Path(haproxy).exists(), "HAProxy is needed: apt-get install haproxy"
    procs: list[Proc] = []
    data = tmp_path / "coordinator"
    data.mkdir()
    ledger = SimLedger(data / "lightning.sqlite3")
    treasury = ledger.add_node("treasury")
    ports = [(free_port(), free_port()) for _ in range(COORDINATORS)]
    configs = []
    for i, (grpc_port, api_port) in enumerate(ports):
        config = tmp_path / f"coordinator-{i}.toml"
        config.write_text(coordinator_toml(data, migrated_postgresql_url, grpc_port, api_port))
        configs.append(config)
    init = subprocess.run([str(BIN / "owm-coordinator"), "init", "--config", str(configs[0])],
                          env=base_env(), capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    pin = re.search(r'tls_fingerprint = "([0-9a-f]{64})"', init.stdout).group(1)  # type: ignore[union-attr]
    key = re.search(r'public_key = "([0-9a-f]{64})"', init.stdout).group(1)  # type: ignore[union-attr]
    store = open_repositories(migrated_postgresql_url, migrate=False)
    try:
        def serve(config: Path) -> Proc:
            return Proc([str(BIN / "owm-coordinator"), "serve", "--config", str(config)],
                        base_env(), tmp_path)

        procs.append(serve(configs[0]))  # takes every lead before the others start
        procs[0].wait_line("singleton job payouts: runs on this coordinator", 60)
        procs.extend(serve(config) for config in configs[1:])
        for proc in procs:
            proc.wait_line("ready", 60)
        grpc_port, api_port = free_port(), free_port()
        balancer = tmp_path / "haproxy.cfg"
        balancer.write_text(haproxy_config(grpc_port, api_port, ports))
        procs.append(Proc([haproxy, "-db", "-f", str(balancer)], base_env(), tmp_path))
        grpc = f"127.0.0.1:{grpc_port}"
        poll(lambda: _http(f"http://127.0.0.1:{api_port}/v1/network/coordinator") is not None,
             20, "HAProxy's HTTP frontend")
        nodes: dict[str, dict[str, object]] = {}
        inits = {f"n{i}": subprocess.Popen(
            [str(BIN / "owm-node"), "init", "--config", str(tmp_path / f"init-n{i}.toml"),
             "--data-dir", str(tmp_path / f"node-n{i}")],
            env=base_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for i in range(NODES)}
        for name, init_proc in inits.items():
            assert init_proc.wait(60) == 0, init_proc.stderr.read()  # type: ignore[union-attr]
            node_dir = tmp_path / f"node-{name}"
            ln = ledger.add_node(f"node-{name}")
            ledger.open_channel(treasury, ln, 2 * STAKE_SAT, push_sat=STAKE_SAT)
            config = tmp_path / f"node-{name}.toml"
            config.write_text(node_toml(node_dir, grpc, pin, key, ln, treasury,
                                        data / "lightning.sqlite3", f"node-{name}"))
            proc = Proc([str(BIN / "owm-node"), "start", "--config", str(config)], base_env(),
                        tmp_path)
            procs.append(proc)
            nodes[name] = {"proc": proc, "config": config}
        for node in nodes.values():
            proc = node["proc"]
            assert isinstance(proc, Proc)
            node["health_port"] = int(
                proc.wait_line(r"health\s+http://127\.0\.0\.1:(\d+)/health", 60).group(1))
            node["node_id"] = proc.wait_line(r"registered\s+node (\S+)", 60).group(1)
        channel = secure_channel(grpc, pin=pin)
        yield Cluster(procs[:COORDINATORS], nodes, grpc, f"http://127.0.0.1:{api_port}", pin,
                      store, data / "lightning.sqlite3", treasury,
                      pb_grpc.CoordinatorStub(channel))
        channel.close()
    finally:
        for proc in procs:
            proc.kill()
        store.close()


def _http(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            return json.loads(reply.read())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def submit(stub: pb_grpc.CoordinatorStub, task_id: str) -> None:
    request = TaskRequest(
        task_id=task_id, task_type="inference", input_schema_id="owm.inference.text",
        input_schema_version=1, min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0,
        gpu_required=False, max_price_msat=10_000,
    )
    payload = json.dumps({"prompt": f"hello {task_id}"}).encode()
    stub.SubmitTask(signed_submit_request(OPERATOR, request, payload), timeout=10)


def outcome(stub: pb_grpc.CoordinatorStub, task_id: str) -> str:
    try:
        return str(stub.GetTask(pb.GetTaskRequest(task_id=task_id), timeout=5).outcome)
    except Exception:  # the balancer moving the connection: ask again
        return ""


def verified(cluster: Cluster, task_id: str, timeout_s: float) -> None:
    """Wait for ``task_id``'s verdict through the balancer; on a timeout, say where it stands."""
    try:
        poll(lambda: outcome(cluster.stub, task_id) == "verified", timeout_s,
             f"{task_id} verified")
    except AssertionError:
        states = [cluster.store.tasks.get(f"{task_id}:{i}") for i in range(3)]
        logs = "\n".join(p.output()[-4000:] for p in cluster.coordinators)
        raise AssertionError(f"{task_id} not verified: {states}\n{logs}") from None


def lead_holders(store: SqlRepositories, name: str) -> list[int]:
    """The process ids (from ``application_name``) holding the lead ``name``."""
    unsigned = lead_lock_id(name) & 0xFFFF_FFFF_FFFF_FFFF
    with store.database.engine.connect() as conn:
        names = conn.execute(
            text("SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                 " WHERE l.locktype = 'advisory' AND l.granted"
                 " AND l.classid::bigint = :high AND l.objid::bigint = :low"),
            {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF},
        ).scalars().all()
    return [int(n.rpartition("/")[2]) for n in names if n.startswith("owm-coordinator/")]


def heard_from(store: SqlRepositories, node_id: str) -> int:
    """When ``node_id``'s latest heartbeat was stored (0: never)."""
    node = store.nodes.get(node_id)
    return 0 if node is None else node.last_heartbeat


def settled_replicas(store: SqlRepositories, task_ids: list[str]) -> list[tuple[str, str]]:
    """(replica id, node id) of every settled replica of ``task_ids``."""
    found = []
    for task_id in task_ids:
        for i in range(3):
            task = store.tasks.get(f"{task_id}:{i}")
            if task is not None and task.state is TaskState.SETTLED and task.node_id:
                found.append((task.task_id, task.node_id))
    return found


def test_three_coordinators_behind_haproxy_survive_the_leader_being_killed(
    cluster: Cluster,
) -> None:
    stub, store = cluster.stub, cluster.store
    names = {p.popen.pid: p for p in cluster.coordinators}

    # Every node online and streaming through the balancer; the coordinators share the work.
    for node in cluster.nodes.values():
        poll(lambda node=node: health(node["health_port"])["coordinator"]["task_stream_open"],
             30, "a task stream")
    registered_at = {
        str(n["node_id"]): next(pid for pid, p in names.items()
                                if f"node {n['node_id']} registered here" in p.output())
        for n in cluster.nodes.values()
    }
    (leader,) = lead_holders(store, "payouts")
    assert leader in names and lead_holders(store, "market-housekeeping") == [leader]
    assert leader in registered_at.values(), "the balancer sent no node to the leader"

    # A client's tasks, through the balancer: dispatched, verified, paid.
    first = [f"before-{i}" for i in range(TASKS_BEFORE)]
    for task_id in first:
        submit(stub, task_id)
    for task_id in first:
        verified(cluster, task_id, 30)

    # More tasks, and the leader SIGKILLed once their first reward is recorded: mid-round,
    # mid-payment.
    during = [f"during-{i}" for i in range(TASKS_DURING)]
    for task_id in during:
        submit(stub, task_id)
    poll(lambda: any(store.payments.for_task(f"{t}:{i}") for t in during for i in range(3)),
         30, "a reward of the second batch recorded")
    os.kill(leader, signal.SIGKILL)
    killed_at = time.monotonic()
    names[leader].popen.wait(10)
    open_rounds = [t for t in during if outcome(stub, t) != "verified"]
    unpaid = [p for t in during for i in range(3) for p in store.payments.for_task(f"{t}:{i}")
              if p.state is not PaymentState.SUCCEEDED]
    assert open_rounds or unpaid, "the leader died after all the work was done"

    # Its leads move to a survivor within seconds; every node streams again within 10 s.
    moved = poll(lambda: lead_holders(store, "payouts"), 10, "the payouts lead moved")
    assert moved != [leader] and leader not in lead_holders(store, "market-housekeeping")
    for node in cluster.nodes.values():
        poll(lambda node=node: (doc := health(node["health_port"]))["coordinator"]["connected"]
             and doc["coordinator"]["task_stream_open"], RECONNECT_S - (time.monotonic()
                                                                        - killed_at) + 0.5,
             f"node {node['node_id']} reconnected")
    assert time.monotonic() - killed_at <= RECONNECT_S + 1

    # Nodes registered at the dead coordinator heartbeat at the others.
    orphans = [n for n, pid in registered_at.items() if pid == leader]
    kill_wall = int(time.time())
    for node_id in orphans:
        poll(lambda n=node_id: heard_from(store, n) > kill_wall, 10,
             f"a heartbeat of {node_id} after the kill")

    # No task lost: every round completes elsewhere; every settled replica is paid once.
    for task_id in first + during:
        verified(cluster, task_id, 40)
    settled = settled_replicas(store, first + during)
    assert len(settled) >= 2 * len(first + during)

    def paid_once() -> bool:
        records = [store.payments.for_task(r) for r, _ in settled]
        return all(len(r) == 1 and r[0].state is PaymentState.SUCCEEDED for r in records)

    poll(paid_once, 30, "every settled replica paid")
    hashes = sorted(store.payments.for_task(r)[0].payment_hash for r, _ in settled)
    with sqlite3.connect(f"file:{cluster.ledger_file}?mode=ro", uri=True) as db:
        paid = sorted(row[0] for row in db.execute(
            "SELECT payment_hash FROM sim_ln_payments WHERE payer = ? AND status = 'succeeded'",
            (cluster.treasury,)))
    assert paid == hashes  # each reward once, and nothing else left the treasury

    # The HTTP API answers through the balancer with one coordinator gone, every time.
    for _ in range(2 * COORDINATORS):
        assert _http(f"{cluster.api_url}/v1/network/coordinator") is not None
