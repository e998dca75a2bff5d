"""Three coordinator processes on one PostgreSQL behind a real HAProxy, four node daemons, FL
rounds on (SRS-COORD-05, SRS-COORD-03, SRS-PERF-07).

``owm-coordinator serve`` three times over one database, one data directory (one signing key,
one TLS certificate: nodes pin one fingerprint; one FL weights directory) and one embedded
Lightning ledger (the treasury they all pay from); HAProxy 2.6 (Debian's package) in front,
gRPC in TCP mode (mTLS passed through) and the HTTP API in HTTP mode, with the configuration
``tests/ha/haproxy.cfg.template`` that docs/high-availability.md shows. Four ``owm-node
start`` daemons reach the coordinators only through HAProxy, and upload their FL updates to
its HTTP front; the test's client submits tasks through it too. Redundant verification on
three of the four nodes; an FL round trains on three.

Where things land is arranged, not left to the balancer: the first coordinator starts alone,
takes every singleton lead and registers every node (HAProxy sends the connections meant for
the two coordinators not started yet to it); then the other two start. So the coordinator
holding the leads — the one SIGKILLed — holds every node's task stream. It is frozen
(SIGSTOP) once a reward of a batch of tasks is recorded, and killed if, frozen, it still has an
FL round open and a reward unpaid or a task unfinished (else it goes on, and the next round is
tried). Then: every lead moves to a survivor, every node streams
again within 10 s (now spread over the survivors) and heartbeats at a coordinator it did not
register at, the open round completes on a survivor, a new round starts there and completes
(its trainers stream at different coordinators), every client task is verified, and every
settled replica is paid exactly once — one outbox record, one Lightning payment per hash, no
payment without a record.
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

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_adapters.control_plane.submitter import signed_submit_request
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.storage.sql import SqlRepositories, open_repositories
from owm_adapters.storage.sql.leadership import lead_lock_id
from owm_core.fl.rounds import FlRound, RoundState
from owm_core.market.tasks import TERMINAL_STATES, TaskRequest, TaskState
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import PaymentState
from tests.e2e.test_node_network import BIN, STAKE_SAT, Proc, base_env, health, poll
from tests.server.harness import OPERATOR
from tests.tls_support import secure_channel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TEMPLATE = Path(__file__).with_name("haproxy.cfg.template")
COORDINATORS = 3
NODES = 4
TASKS_BEFORE, TASKS_DURING = 3, 4
RECONNECT_S = 10
FL_INTERVAL_S = 5
LEADS = ("payouts", "market-housekeeping", "fl-rounds", "slashing", "retention")


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
    coordinator_key: str

    def tails(self, chars: int = 3000) -> str:
        """The end of every process's output, for a failure message."""
        parts = [f"--- coordinator pid {p.popen.pid}:\n{p.output()[-chars:]}"
                 for p in self.coordinators]
        parts += [f"--- node {name}:\n{n['proc'].output()[-chars:]}"  # type: ignore[attr-defined]
                  for name, n in self.nodes.items()]
        return "\n".join(parts)


def coordinator_toml(data_dir: Path, url: str, grpc_port: int, api_port: int,
                     upload_url: str) -> str:
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
        "assignment_timeout_s = 60\n"
        "[funding]\n"
        f'network_submitters = ["{OPERATOR.public_key_hex}"]\n'
        "[fl]\nenabled = true\n"
        f"interval_s = {FL_INTERVAL_S}\nmin_participants = 3\nupload_grace_s = 5\n"
        f'round_timeout_s = 120\nupload_url = "{upload_url}"\n'
        "[knowledge]\nenabled = false\n"
    )


def node_toml(node_dir: Path, grpc: str, api: str, pin: str, key: str, ln: str, treasury: str,
              coordinator_dir: Path, alias: str) -> str:
    return (
        "[node]\n"
        f'data_dir = "{node_dir}"\n'
        f'identity_key = "{node_dir / "identity.key"}"\n'
        "health_port = 0\nheartbeat_interval_s = 1\n"
        "[coordinator]\n"
        f'url = "{grpc}"\ntls_fingerprint = "{pin}"\npublic_key = "{key}"\n'
        # FL uploads and the FL releases' weights (tasks pin them) go through the balancer
        f'api_url = "{api}"\nweights_poll_s = 5\nallow_private_targets = true\n'
        f'[chain]\nlocal_chain = "{coordinator_dir / "provenance" / "chain.sqlite3"}"\n'
        "[lightning]\n"
        f'node_uri = "{ln}@127.0.0.1:9735"\ntreasury_uri = "{treasury}@127.0.0.1:9735"\n'
        f'backend = "embedded"\nledger_path = "{coordinator_dir / "lightning.sqlite3"}"\n'
        f'ledger_alias = "{alias}"\n'
        "[tasks]\nask_msat = 500\n"
        'types = ["inference", "fl_training"]\ntimeout_s = 60\nmax_concurrent = 2\n'
    )


def start_nodes(tmp_path: Path, ledger: SimLedger, treasury: str, grpc: str, api: str,
                pin: str, key: str, procs: list[Proc]) -> dict[str, dict[str, object]]:
    """``owm-node init`` and ``start`` for every node, each with a funded stake channel."""
    data = tmp_path / "coordinator"
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
        config.write_text(node_toml(node_dir, grpc, api, pin, key, ln, treasury, data,
                                    f"node-{name}"))
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
    return nodes


@pytest.fixture
def cluster(migrated_postgresql_url: str, tmp_path: Path) -> Iterator[Cluster]:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert Path(haproxy).exists(), "HAProxy is needed: apt-get install haproxy"
    procs: list[Proc] = []
    data = tmp_path / "coordinator"
    data.mkdir()
    ledger = SimLedger(data / "lightning.sqlite3")
    treasury = ledger.add_node("treasury")
    (data / "provenance").mkdir(mode=0o700)
    LocalChain(data / "provenance" / "chain.sqlite3")  # the nodes verify FL releases in it
    ports = [(free_port(), free_port()) for _ in range(COORDINATORS)]
    grpc_port, api_port = free_port(), free_port()
    upload_url = f"http://127.0.0.1:{api_port}/v1/fl/updates"  # the balancer's HTTP front
    configs = []
    for i, (coordinator_grpc, coordinator_api) in enumerate(ports):
        config = tmp_path / f"coordinator-{i}.toml"
        config.write_text(coordinator_toml(data, migrated_postgresql_url, coordinator_grpc,
                                           coordinator_api, upload_url))
        configs.append(config)
    init = subprocess.run([str(BIN / "owm-coordinator"), "init", "--config", str(configs[0])],
                          env=base_env(), capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    pin = re.search(r'tls_fingerprint = "([0-9a-f]{64})"', init.stdout).group(1)  # type: ignore[union-attr]
    key = re.search(r'public_key = "([0-9a-f]{64})"', init.stdout).group(1)  # type: ignore[union-attr]
    store = open_repositories(migrated_postgresql_url, migrate=False)
    channel = None
    try:
        def serve(config: Path) -> Proc:
            return Proc([str(BIN / "owm-coordinator"), "serve", "--config", str(config)],
                        base_env(), tmp_path)

        # The first coordinator alone: it takes every lead and registers every node.
        procs.append(serve(configs[0]))
        procs[0].wait_line("singleton job fl-rounds: runs on this coordinator", 60)
        procs[0].wait_line("ready", 60)
        balancer = tmp_path / "haproxy.cfg"
        balancer.write_text(haproxy_config(grpc_port, api_port, ports))
        procs.append(Proc([haproxy, "-db", "-f", str(balancer)], base_env(), tmp_path))
        grpc = f"127.0.0.1:{grpc_port}"
        poll(lambda: _http(f"http://127.0.0.1:{api_port}/v1/network/coordinator") is not None,
             20, "HAProxy's HTTP frontend")
        nodes = start_nodes(tmp_path, ledger, treasury, grpc, f"http://127.0.0.1:{api_port}",
                            pin, key, procs)
        for node in nodes.values():
            poll(lambda node=node: health(node["health_port"])["coordinator"]["task_stream_open"],
                 30, "a task stream")
        # Then the other two, which HAProxy takes into its rotation within a second.
        later = [serve(config) for config in configs[1:]]
        procs.extend(later)
        for proc in later:
            proc.wait_line("ready", 60)
        channel = secure_channel(grpc, pin=pin)
        cluster = Cluster([procs[0], *later], nodes, grpc, f"http://127.0.0.1:{api_port}", pin,
                          store, data / "lightning.sqlite3", treasury,
                          pb_grpc.CoordinatorStub(channel), key)
        yield cluster
    finally:
        if channel is not None:
            channel.close()
        for proc in procs:
            proc.kill()
        store.close()


def _http(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            return json.loads(reply.read())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def submit(cluster: Cluster, task_id: str) -> None:
    request = TaskRequest(
        task_id=task_id, task_type="inference", input_schema_id="owm.inference.text",
        input_schema_version=1, min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0,
        gpu_required=False, max_price_msat=10_000,
    )
    payload = json.dumps({"prompt": f"hello {task_id}"}).encode()
    signed = signed_submit_request(OPERATOR, request, payload,
                                   coordinator_key=cluster.coordinator_key)  # fmt: skip
    cluster.stub.SubmitTask(signed, timeout=10)


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
        raise AssertionError(f"{task_id} not verified: {states}") from None


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


def streams_at(store: SqlRepositories) -> dict[str, int]:
    """Which coordinator process (pid) holds each node's task stream, from the shared store."""
    return {s.node_id: int(s.coordinator.rpartition("/")[2])
            for s in store.task_streams.seen_since(0)}


def replicas_of(store: SqlRepositories, groups: list[str]) -> list[tuple[str, TaskState]]:
    """(replica id, state) of every stored replica of ``groups``."""
    found = []
    for group in groups:
        for i in range(3):
            task = store.tasks.get(f"{group}:{i}")
            if task is not None:
                found.append((task.task_id, task.state))
    return found


def fl_round(store: SqlRepositories, number: int) -> FlRound | None:
    return store.fl_rounds.get_round(number)


def open_round(store: SqlRepositories) -> FlRound | None:
    rounds = store.fl_rounds.rounds(limit=1, state=RoundState.OPEN)
    return rounds[0] if rounds else None


def closed(store: SqlRepositories, number: int) -> bool:
    found = fl_round(store, number)
    assert found is None or found.state is not RoundState.FAILED, found
    return found is not None and found.state is RoundState.CLOSED


def ledger_payments(ledger_file: Path, treasury: str) -> list[str]:
    """The payment hashes of every payment the treasury made, in the ledger itself."""
    with sqlite3.connect(f"file:{ledger_file}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute(
            "SELECT payment_hash FROM sim_ln_payments WHERE payer = ? AND status = 'succeeded'",
            (treasury,))]


def test_three_coordinators_behind_haproxy_survive_the_leader_being_killed_mid_round(
    cluster: Cluster,
) -> None:
    try:
        scenario(cluster)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.tails()}") from None


def scenario(cluster: Cluster) -> None:
    store = cluster.store
    began = time.monotonic()

    def step(what: str) -> None:  # where the time goes, in the output of a failed run
        print(f"[{time.monotonic() - began:6.1f} s] {what}")

    by_pid = {p.popen.pid: p for p in cluster.coordinators}
    leader = cluster.coordinators[0].popen.pid
    node_ids = [str(n["node_id"]) for n in cluster.nodes.values()]

    # The first coordinator holds every lead and every node's stream: it registered them all.
    for name in LEADS:
        assert lead_holders(store, name) == [leader], name
    for node_id in node_ids:
        assert f"node {node_id} registered here" in by_pid[leader].output()
    assert poll(lambda: streams_at(store) == dict.fromkeys(node_ids, leader), 10,
                "every stream recorded at the leader")

    step("every lead and stream at the leader")
    # A client's tasks, through the balancer: dispatched, verified, paid. An FL round runs.
    first = [f"before-{i}" for i in range(TASKS_BEFORE)]
    for task_id in first:
        submit(cluster, task_id)
    for task_id in first:
        verified(cluster, task_id, 60)
    step("the first tasks verified")
    poll(lambda: closed(store, 1), 90, "FL round 1 closed")
    step("FL round 1 closed")

    # The next round opens; more tasks; the leader is SIGKILLed once a reward of those is
    # recorded while the round is still open: mid-round, mid-payment.
    during: list[str] = []

    def in_flight() -> tuple[list[object], list[str]]:
        """Rewards recorded but not paid yet, and client tasks not final, as the store says."""
        groups = first + during
        unpaid = [p for t in groups for i in range(3) for p in store.payments.for_task(f"{t}:{i}")
                  if p.state is not PaymentState.SUCCEEDED]
        unfinished = [t for t in groups if any(
            state not in TERMINAL_STATES for _, state in replicas_of(store, [t]))]
        return unpaid, unfinished

    victim_round = None
    for attempt in range(3):
        current = poll(lambda: open_round(store), 60, "an FL round open")
        assert isinstance(current, FlRound)
        batch = [f"during-{attempt}-{i}" for i in range(TASKS_DURING)]
        during += batch
        for task_id in batch:
            submit(cluster, task_id)
        poll(lambda b=batch: any(store.payments.for_task(f"{t}:{i}") for t in b
                                 for i in range(3)), 60, "a reward of the batch recorded")
        # Frozen, the leader changes nothing (it leads the rounds and the payouts): what is
        # open now is open when it dies.
        os.kill(leader, signal.SIGSTOP)
        still = open_round(store)
        if still is not None and still.number == current.number and any(in_flight()):
            victim_round = still
            break
        os.kill(leader, signal.SIGCONT)  # the round closed first: try the next one
    assert victim_round is not None, "no reward was in flight while an FL round was open"
    unpaid, unfinished = in_flight()
    step(f"killing the leader: FL round {victim_round.number} open, {len(unpaid)} reward(s) "
         f"unpaid, {len(unfinished)} task(s) unfinished")
    os.kill(leader, signal.SIGKILL)
    killed_at, kill_wall = time.monotonic(), int(time.time())
    by_pid[leader].popen.wait(10)
    survivors = [p for pid, p in by_pid.items() if pid != leader]
    client_groups = first + during

    # Its leads move to a survivor within seconds; every node streams again within 10 s.
    # (The dead process's database session can hold its locks a moment longer: wait it out.)
    def moved_from_leader(name: str) -> list[int] | None:
        held = lead_holders(store, name)
        return held if held and leader not in held else None

    for name in LEADS:
        moved = poll(lambda name=name: moved_from_leader(name), 10, f"the {name} lead moved")
        assert len(moved) == 1 and moved[0] in by_pid, name
    for node in cluster.nodes.values():
        poll(lambda node=node: (doc := health(node["health_port"]))["coordinator"]["connected"]
             and doc["coordinator"]["task_stream_open"], RECONNECT_S - (time.monotonic()
                                                                        - killed_at) + 0.5,
             f"node {node['node_id']} reconnected")
    assert time.monotonic() - killed_at <= RECONNECT_S + 1

    step("leads moved, nodes reconnected")
    # Registered at the dead coordinator, every node heartbeats at the others.
    for node_id in node_ids:
        poll(lambda n=node_id: heard_from(store, n) > kill_wall, 10,
             f"a heartbeat of {node_id} after the kill")
    def recorded_again() -> dict[str, int] | None:
        now = streams_at(store)
        return now if set(now) == set(node_ids) and leader not in now.values() else None

    spread = poll(recorded_again, 20, "every stream recorded again")
    step(f"streams after the kill, by coordinator pid: {spread}")

    # The open round completes on a survivor; the next round starts and completes there.
    number = victim_round.number
    poll(lambda: closed(store, number), 90, f"FL round {number} closed after the kill")
    (fl_lead,) = lead_holders(store, "fl-rounds")
    assert f"FL round {number} closed" in by_pid[fl_lead].output()
    assert f"FL round {number} closed" not in by_pid[leader].output()
    step(f"FL round {number} closed on a survivor")
    poll(lambda: closed(store, number + 1), 90, f"FL round {number + 1} closed")
    step(f"FL round {number + 1} closed")
    assert f"FL round {number + 1} of " in by_pid[fl_lead].output()

    # No task lost: every client task is verified; every settled replica is paid once.
    for task_id in client_groups:
        verified(cluster, task_id, 60)
    rounds = [r for r in store.fl_rounds.rounds(limit=100) if r.number <= number + 1]
    groups = client_groups + [g for r in rounds for g in r.task_ids]

    succeeded: set[str] = set()

    def paid_once() -> bool:
        settled = [r for r, state in replicas_of(store, groups) if state is TaskState.SETTLED]
        records = [store.payments.for_task(r) for r in settled]
        once = len(settled) >= 2 * len(client_groups) and all(
            len(r) == 1 and r[0].state is PaymentState.SUCCEEDED for r in records)
        succeeded.clear()
        succeeded.update(r[0].payment_hash for r in records if once)
        return once

    poll(paid_once, 60, "every settled replica paid")
    step("every task verified, every settled replica paid")
    paid = ledger_payments(cluster.ledger_file, cluster.treasury)  # read after the records
    assert len(paid) == len(set(paid)), "a payment hash was paid twice"
    assert all(store.payments.get(h) is not None for h in paid), "a payment without a record"
    assert succeeded <= set(paid), "a payment recorded as succeeded is not in the ledger"

    # The HTTP API answers through the balancer with one coordinator gone, every time.
    for _ in range(2 * COORDINATORS):
        assert _http(f"{cluster.api_url}/v1/network/coordinator") is not None
    assert all(p.popen.poll() is None for p in survivors)
