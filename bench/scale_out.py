"""Heartbeats and task dispatch through a real load balancer with 1 and with 2 coordinator
processes on one PostgreSQL (SRS-COORD-05, SRS-PERF-04).

Usage:  .venv/bin/python bench/scale_out.py [--nodes 2000] [--per-node 10] [--streams 8]
        [--batch 250] [--tasks 100]

What it does, in one run:

1. **Raw verify rate**: one process, one core, Ed25519 verifications of the run's own signed
   heartbeats for ~2 s (``bench/heartbeats.py``'s ``raw_verify_per_min``), measured before,
   between and after the balanced runs; the median is reported, and every figure is also
   given as a ratio to it (the machine is shared, so absolute numbers drift).
2. One throw-away PostgreSQL cluster (installed binaries, as ``tests/conftest.py`` starts
   them), migrated once; ``--nodes`` nodes are registered straight into it. Its **write
   rate** on the heartbeat path is measured alone first: ``record_heartbeats`` in batches of
   500 nodes for ~3 s, no signatures (rows per minute).
3. For 1 and then 2 coordinators: each coordinator is its **own process**
   (``build_coordinator`` over the shared PostgreSQL: heartbeat ingest, payouts, slashing,
   every worker ``owm-coordinator serve`` runs) serving gRPC with mTLS on a free port; all
   share one coordinator key and TLS certificate, as replicas behind one address must.
   **HAProxy** (Debian's package) listens in front of them in TCP mode (TLS passes through,
   so each node's certificate binding is still checked by the coordinator) and gives each new
   connection to the coordinator with the fewest open ones (``balance leastconn``). A **load
   generator process** opens ``--streams`` gRPC channels to HAProxy (one TCP connection each,
   so HAProxy spreads them) and sends ``--nodes × --per-node`` heartbeats, **signed before
   timing**, in batches of ``--batch``;
   the clock stops when every stream's summary is back (the last batch committed). The run
   fails if any heartbeat is rejected, if a node's ``last_heartbeat`` was not written, or if
   a coordinator held no connection (HAProxy's open connections per coordinator, read from
   its stats socket, are printed).
4. **Dispatch**, on the same coordinators and balancer: 8 nodes open stake channels in the
   shared embedded ledger and register (once: behind the balancer they all share its address,
   and registrations per address are limited), then open task streams, each over its own
   connection (so HAProxy spreads them); ``--tasks`` tasks are submitted one by one by an
   operator key on the network budget; latency = SubmitTask call → assignment received on a
   node's stream (p50/p99). With two coordinators a new replica can be planned by both (the
   submitting one and the other's sweep); the store's conditional save lets only one assign
   it, and a submission that lost is answered ALREADY_EXISTS: counted, printed, still timed.

The last line is machine-readable:
``one_coordinator_hb_per_min=<n> two_coordinators_hb_per_min=<n> raw_verify_per_min=<n>
one_coordinator_ratio=<x> two_coordinators_ratio=<x> postgres_writes_per_min=<n>
one_coordinator_dispatch_p99_ms=<x> two_coordinators_dispatch_p99_ms=<x>``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pickle
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.heartbeats import (
    bench_task,
    load_parser,
    postgres_cluster,
    presign,
    raw_verify_per_min,
    seed_nodes,
    timed_threads,
    wait_assigned,
)
from owm_core.identity.keys import Identity

HAPROXY_CONFIG = """global
    maxconn 4096
    stats socket {stats} mode 600 level admin
defaults
    mode tcp
    timeout connect 5s
    timeout client 600s
    timeout server 600s
frontend control_plane
    bind 127.0.0.1:{port}
    default_backend coordinators
backend coordinators
    balance leastconn
{servers}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------- coordinators


def _coordinator(url: str, ledger: str, tls: Any, ready: Any, stop: Any) -> None:
    """Child process: one coordinator on the shared database, served until ``stop``. Its
    treasury is the shared embedded ledger's (stake channels are checked there); the test
    harness's operator key may submit tasks on the network budget."""
    from owm_adapters.bootstrap.coordinator import build_coordinator
    from owm_adapters.bootstrap.settings import CoordinatorSection, CoordinatorSettings
    from owm_adapters.lightning.embedded import SimLedger
    from owm_adapters.services.coordinator.service import ServiceConfig
    from owm_adapters.storage.sql import open_repositories
    from owm_core.market.tasks import VerificationPolicy
    from owm_server.grpc.server import CoordinatorServer
    from tests.server.harness import COORDINATOR_KEY, OPERATOR

    data = Path(tempfile.mkdtemp(prefix="owm-bench-scale-"))
    settings = CoordinatorSettings(coordinator=CoordinatorSection(
        data_dir=str(data), signing_key_path=str(data / "coordinator.key")))  # fmt: skip
    settings = attrs.evolve(settings, fl=attrs.evolve(settings.fl, enabled=False))
    repositories = open_repositories(url, migrate=False)
    base = ServiceConfig(tick_s=0.05, heartbeat_flush_s=0.05, heartbeat_batch_max=5_000,
                         verification=VerificationPolicy(redundancy=1))  # fmt: skip
    config = attrs.evolve(base, funding=attrs.evolve(
        base.funding, network_submitters=frozenset({OPERATOR.public_key_hex})))  # fmt: skip
    treasury = SimLedger(ledger).lightning("treasury")
    coordinator = build_coordinator(
        settings, store=repositories, treasury=treasury, force_closer=treasury,
        coordinator_key=COORDINATOR_KEY, config=config, slashing=False,
    )  # fmt: skip
    server = CoordinatorServer(coordinator.service, "127.0.0.1:0", tls=tls, max_workers=24)
    coordinator.workers.start()
    server.start()
    ready.put(server.port)
    stop.wait()
    server.stop(5)
    coordinator.workers.stop(5)
    repositories.close()
    shutil.rmtree(data, ignore_errors=True)


@contextmanager
def coordinators(count: int, url: str, ledger: Path, tls: Any) -> Iterator[list[int]]:
    """``count`` coordinator processes on ``url``, all presenting ``tls``; their gRPC ports."""
    ctx = mp.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Queue()
    children = [ctx.Process(target=_coordinator, args=(url, str(ledger), tls, ready, stop))
                for _ in range(count)]  # fmt: skip
    for child in children:
        child.start()
    try:
        ports: list[int] = []
        deadline = time.monotonic() + 120
        while len(ports) < count:
            if time.monotonic() > deadline or any(c.exitcode is not None for c in children):
                raise SystemExit("a coordinator process did not start (its error is above)")
            with suppress(queue.Empty):
                ports.append(ready.get(timeout=1))
        yield ports
    finally:
        stop.set()
        for child in children:
            child.join(20)
            if child.is_alive():
                child.kill()


@contextmanager
def haproxy(ports: list[int]) -> Iterator[tuple[int, Path]]:
    """HAProxy in TCP mode in front of ``ports``; its port and stats socket."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    workdir = Path(tempfile.mkdtemp(prefix="owm-bench-haproxy-"))
    port, stats = _free_port(), workdir / "stats.sock"
    servers = "\n".join(f"    server c{i} 127.0.0.1:{p}" for i, p in enumerate(ports))
    config = workdir / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(stats=stats, port=port, servers=servers))
    process = subprocess.Popen([binary, "-db", "-f", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"haproxy exited: {process.stdout.read()!r}") from None  # type: ignore[union-attr]
                time.sleep(0.05)
        yield port, stats
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def sessions_per_server(stats: Path, field: str = "scur") -> dict[str, int]:
    """Connections HAProxy holds open to each coordinator (``scur`` of ``show stat``; ``stot``:
    handed to it in all)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(stats))
        s.sendall(b"show stat\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    lines = raw.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {r["svname"]: int(r[field]) for r in rows if r.get("pxname") == "coordinators"
            and r["svname"] not in ("BACKEND", "FRONTEND")}  # fmt: skip


# --------------------------------------------------------------------------- load generator


def _generator(
    port: int, pin: str, path: str, streams: int, batch: int, connected: Any, go: Any, out: Any
) -> None:
    """Child process: the pre-signed heartbeats over ``streams`` channels (one TCP connection
    each, each its own relay certificate) through the balancer."""
    import grpc

    from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
    from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import (
        coordinator_pb2_grpc as pb_grpc,
    )
    from owm_adapters.control_plane.tls import ClientTls, issue_node_certificate, pinned_channel

    with open(path, "rb") as fh:
        heartbeats: list[bytes] = pickle.load(fh)
    shares = [heartbeats[i::streams] for i in range(streams)]
    channels = []
    for _ in range(streams):
        relay = Identity.from_seed(os.urandom(32))
        tls = ClientTls(issue_node_certificate(relay, int(time.time())), pin)
        channel = pinned_channel(f"127.0.0.1:{port}", tls, options=[
            ("grpc.max_send_message_length", 64 << 20), ("grpc.use_local_subchannel_pool", 1),
        ])  # fmt: skip
        grpc.channel_ready_future(channel).result(timeout=20)
        channels.append(channel)
    connected.set()
    results: list[tuple[int, int, list[str]]] = []

    def send(channel: grpc.Channel, share: list[bytes]) -> None:
        stub = pb_grpc.CoordinatorStub(channel)
        batches = (pb.HeartbeatBatch(heartbeat_envelopes=share[i : i + batch])
                   for i in range(0, len(share), batch))  # fmt: skip
        summary = stub.HeartbeatStream(batches)
        results.append((summary.accepted, summary.rejected, list(summary.errors)))

    threads = [threading.Thread(target=send, args=pair) for pair in zip(channels, shares,
                                                                         strict=True)]
    elapsed = timed_threads(threads, go)
    for channel in channels:
        channel.close()
    out.put((elapsed, results))


def balanced_run(count: int, url: str, identities: list[Identity], first_seq: int,
                 args: argparse.Namespace, ledger: Path) -> tuple[float, list[float]]:  # fmt: skip
    """Heartbeats per minute, then dispatch latencies (ms), through HAProxy with ``count``
    coordinators."""
    from owm_adapters.storage.sql import open_repositories
    from tests.tls_support import COORDINATOR_TLS as tls

    now = int(time.time())
    heartbeats = presign(identities, args.per_node, now, first_seq=first_seq)
    ctx = mp.get_context("spawn")
    with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as fh:
        pickle.dump(heartbeats, fh)
    try:
        with coordinators(count, url, ledger, tls) as ports, haproxy(ports) as (port, stats):
            connected, go, out = ctx.Event(), ctx.Event(), ctx.Queue()
            child = ctx.Process(target=_generator, args=(
                port, tls.fingerprint, fh.name, args.streams, args.batch, connected, go, out,
            ))  # fmt: skip
            child.start()
            if not connected.wait(120):
                raise SystemExit("the load generator did not connect through HAProxy")
            spread = sessions_per_server(stats)  # the open channels, per coordinator
            go.set()
            elapsed, results = out.get(timeout=900)
            child.join(30)
            raced: list[str] = []
            latencies = dispatch_latencies(port, ledger, args.tasks, f"c{count}", raced)
    finally:
        os.unlink(fh.name)
    accepted = sum(r[0] for r in results)
    rejected = sum(r[1] for r in results)
    repositories = open_repositories(url, migrate=False)
    ids = {who.node_id for who in identities}  # the dispatch run's nodes registered too
    written = sum(1 for n in repositories.nodes.list() if n.node_id in ids
                  and n.last_heartbeat >= now)  # fmt: skip
    repositories.close()
    rate = accepted / elapsed * 60
    label = f"{count} coordinator{'s' if count > 1 else ''}"
    print(f"{label:<15} {accepted:>8} heartbeats accepted, {rejected} rejected, in "
          f"{elapsed:6.2f} s over {args.streams} connections → {rate:>12,.0f} hb/min; "
          f"open connections per coordinator {spread}; "
          f"{written}/{len(identities)} nodes' last_heartbeat written", flush=True)  # fmt: skip
    if rejected or written != len(identities) or min(spread.values(), default=0) == 0:
        errors = [e for r in results for e in r[2]][:3]
        raise SystemExit(f"{label}: heartbeats lost or rejected, or a coordinator idle: {errors}")
    ordered = sorted(latencies)
    print(f"{label:<15} dispatch through HAProxy over {len(ordered)} tasks: p50 "
          f"{statistics.median(ordered):.1f} ms, p99 {_p99(ordered):.1f} ms, "
          f"{len(ordered) / (sum(ordered) / 1000) * 60:,.0f} tasks/min one at a time; "
          f"{len(raced)} submissions answered ALREADY_EXISTS (dispatch raced)"
          + (f", e.g. {raced[0]}" if raced else ""), flush=True)  # fmt: skip
    return rate, ordered


def _p99(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


DISPATCH_NODES: list[Any] = []
"""The dispatch run's nodes, registered by the first run and reconnected by the next."""


def dispatch_latencies(
    port: int, ledger_path: Path, tasks: int, tag: str, raced: list[str]
) -> list[float]:
    """Milliseconds from SubmitTask to the assignment on a node's stream, everything through
    HAProxy: 8 nodes stake in the shared ledger, register and open their task streams, each
    over its own connection (so HAProxy spreads them over the coordinators); the operator's
    submissions go over one more. A submission answered ALREADY_EXISTS because another
    coordinator's dispatch sweep assigned the new replica before the submitting one did (no
    shared dispatch lock yet) is noted in ``raced`` and still timed to its assignment."""
    import grpc

    from owm_adapters.lightning.embedded import SimLedger
    from tests.server.harness import T1_STAKE_SAT, NodeRoutingStub, SimNode

    ledger = SimLedger(ledger_path)
    treasury = ledger.add_node("treasury")
    router = NodeRoutingStub(f"127.0.0.1:{port}")
    stub: Any = router
    feeds = []
    try:
        if not DISPATCH_NODES:  # registered once: the balancer's address is every node's,
            for _ in range(8):  # and registrations per address are limited (SRS-SEC-04)
                node = SimNode.create()
                ledger.open_channel(treasury, node.ln_pubkey, 2 * T1_STAKE_SAT,
                                    push_sat=T1_STAKE_SAT)  # fmt: skip
                node.register(stub, int(time.time()))
                DISPATCH_NODES.append(node)
        for i, node in enumerate(DISPATCH_NODES):
            feeds.append(node.open_stream(stub, ask_msat=1_000 + i))
        time.sleep(0.5)
        arrived: dict[str, float] = {}
        latencies: list[float] = []
        for i in range(tasks):
            task_id = f"scale-{tag}-{i}"
            request = bench_task(task_id)
            sent = time.perf_counter()
            try:
                stub.SubmitTask(request)
            except grpc.RpcError as exc:  # stored, but its dispatch lost a race (see the doc)
                if exc.code() is not grpc.StatusCode.ALREADY_EXISTS:
                    raise
                raced.append(f"{task_id}: {exc.details()}")
            latencies.append(wait_assigned(feeds, f"{task_id}:0", arrived, sent, 10.0))
        return latencies
    finally:
        for feed in feeds:
            feed.close()
        router.close()


def postgres_writes_per_min(url: str, identities: list[Identity], seconds: float = 3.0) -> float:
    """Heartbeat rows PostgreSQL takes per minute on the coordinator's own write path
    (``NodeRepository.record_heartbeats``, batches of 500 nodes, one transaction each), no
    signature checked: the database's share of the capacity model."""
    from owm_adapters.storage.sql import open_repositories

    repositories = open_repositories(url, migrate=False)
    ids = [who.node_id for who in identities]
    batches = [ids[i : i + 500] for i in range(0, len(ids), 500)]
    at, written = int(time.time()) + 1_000, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        at += 1
        for batch in batches:
            written += repositories.nodes.record_heartbeats(dict.fromkeys(batch, at))
    elapsed = time.perf_counter() - started
    repositories.close()
    return written / elapsed * 60


# --------------------------------------------------------------------------- main


def main() -> None:
    from owm_adapters.storage.sql import open_repositories, upgrade

    parser = load_parser(__doc__ or "", per_node=10, streams=8, batch=250)
    parser.add_argument("--tasks", type=int, default=100)
    args = parser.parse_args()

    print(f"{os.cpu_count()} CPU cores; {args.nodes} nodes × {args.per_node} heartbeats per run",
          flush=True)  # fmt: skip
    identities = [Identity.from_seed(os.urandom(32)) for _ in range(args.nodes)]
    sample = presign(identities[:500], 2, int(time.time()))
    raws = [raw_verify_per_min(sample)]
    print(f"raw Ed25519 verify, 1 process / 1 core: {raws[-1]:>12,.0f} /min", flush=True)
    rates: list[float] = []
    p99s: list[float] = []
    from owm_adapters.lightning.embedded import SimLedger

    ledger = Path(tempfile.mkdtemp(prefix="owm-bench-ledger-")) / "lightning.sqlite3"
    SimLedger(ledger).add_node("treasury")  # the coordinators' treasury: stake channels
    with postgres_cluster() as url:
        upgrade(url)
        repositories = open_repositories(url, migrate=False)
        seed_nodes(repositories, identities, int(time.time()))
        repositories.close()
        writes = postgres_writes_per_min(url, identities)
        print(f"PostgreSQL heartbeat writes (batches of 500, no verification): "
              f"{writes:>12,.0f} rows/min", flush=True)  # fmt: skip
        for count in (1, 2):
            rate, latencies = balanced_run(count, url, identities,
                                           1 + (count - 1) * args.per_node, args, ledger)
            rates.append(rate)
            p99s.append(_p99(latencies))
            raws.append(raw_verify_per_min(sample))
            print(f"raw Ed25519 verify, 1 process / 1 core: {raws[-1]:>12,.0f} /min", flush=True)
    raw = statistics.median(raws)
    one, two = rates
    print(f"raw Ed25519 verify (median of {len(raws)} measurements): {raw:,.0f} /min")
    print(f"1 coordinator: {one / raw:.0%} of the raw verify rate; 2 coordinators: "
          f"{two / raw:.0%} ({two / one:.2f}× one), on {os.cpu_count()} cores shared with "
          "PostgreSQL, HAProxy and the load generator")  # fmt: skip
    print(
        f"one_coordinator_hb_per_min={one:.0f} two_coordinators_hb_per_min={two:.0f} "
        f"raw_verify_per_min={raw:.0f} one_coordinator_ratio={one / raw:.3f} "
        f"two_coordinators_ratio={two / raw:.3f} postgres_writes_per_min={writes:.0f} "
        f"one_coordinator_dispatch_p99_ms={p99s[0]:.1f} two_coordinators_dispatch_p99_ms="
        f"{p99s[1]:.1f}"
    )
    shutil.rmtree(ledger.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
