"""Heartbeat capacity through a real load balancer with 1 and with 2 coordinator processes on
one PostgreSQL (SRS-COORD-05, SRS-PERF-04).

Usage:  .venv/bin/python bench/scale_out.py [--nodes 2000] [--per-node 10] [--streams 8]
        [--batch 250]

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

The last line is machine-readable:
``one_coordinator_hb_per_min=<n> two_coordinators_hb_per_min=<n> raw_verify_per_min=<n>
one_coordinator_ratio=<x> two_coordinators_ratio=<x> postgres_writes_per_min=<n>``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pickle
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.heartbeats import (
    load_parser,
    postgres_cluster,
    presign,
    raw_verify_per_min,
    seed_nodes,
    timed_threads,
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


def _coordinator(url: str, seed: bytes, tls: Any, ready: Any, stop: Any) -> None:
    """Child process: one coordinator on the shared database, served until ``stop``."""
    from owm_adapters.bootstrap.coordinator import build_coordinator
    from owm_adapters.bootstrap.settings import CoordinatorSection, CoordinatorSettings
    from owm_adapters.services.coordinator.service import ServiceConfig
    from owm_adapters.storage.sql import open_repositories
    from owm_server.grpc.server import CoordinatorServer

    class NoLightning:
        def channels_with(self, peer_pubkey: str) -> list[object]:
            return []

    data = Path(tempfile.mkdtemp(prefix="owm-bench-scale-"))
    settings = CoordinatorSettings(coordinator=CoordinatorSection(
        data_dir=str(data), signing_key_path=str(data / "coordinator.key")))  # fmt: skip
    repositories = open_repositories(url, migrate=False)
    coordinator = build_coordinator(
        settings, store=repositories, treasury=NoLightning(),  # type: ignore[arg-type]
        force_closer=NoLightning(),  # type: ignore[arg-type]
        coordinator_key=Identity.from_seed(seed),
        config=ServiceConfig(heartbeat_flush_s=0.05, heartbeat_batch_max=5_000),
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
def coordinators(count: int, url: str, seed: bytes, tls: Any) -> Iterator[list[int]]:
    """``count`` coordinator processes on ``url``; their gRPC ports."""
    ctx = mp.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Queue()
    children = [ctx.Process(target=_coordinator, args=(url, seed, tls, ready, stop))
                for _ in range(count)]  # fmt: skip
    for child in children:
        child.start()
    try:
        yield [ready.get(timeout=120) for _ in children]
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


def _generator(port: int, pin: str, path: str, streams: int, batch: int, go: Any, out: Any) -> None:
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
                 args: argparse.Namespace, seed: bytes, tls: Any) -> float:  # fmt: skip
    """Heartbeats per minute through HAProxy with ``count`` coordinators."""
    from owm_adapters.storage.sql import open_repositories

    now = int(time.time())
    heartbeats = presign(identities, args.per_node, now, first_seq=first_seq)
    ctx = mp.get_context("spawn")
    with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as fh:
        pickle.dump(heartbeats, fh)
    try:
        with coordinators(count, url, seed, tls) as ports, haproxy(ports) as (port, stats):
            go, out = ctx.Event(), ctx.Queue()
            child = ctx.Process(target=_generator, args=(
                port, tls.fingerprint, fh.name, args.streams, args.batch, go, out))  # fmt: skip
            child.start()
            time.sleep(2.0)  # let the child import and connect every channel
            spread = sessions_per_server(stats)  # the open channels, per coordinator
            go.set()
            elapsed, results = out.get(timeout=900)
            child.join(30)
    finally:
        os.unlink(fh.name)
    accepted = sum(r[0] for r in results)
    rejected = sum(r[1] for r in results)
    repositories = open_repositories(url, migrate=False)
    written = sum(1 for n in repositories.nodes.list() if n.last_heartbeat >= now)
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
    return rate


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
    from owm_adapters.control_plane.tls import issue_coordinator_certificate
    from owm_adapters.storage.sql import open_repositories, upgrade

    args = load_parser(__doc__ or "", per_node=10, streams=8, batch=250).parse_args()

    print(f"{os.cpu_count()} CPU cores; {args.nodes} nodes × {args.per_node} heartbeats per run",
          flush=True)  # fmt: skip
    identities = [Identity.from_seed(os.urandom(32)) for _ in range(args.nodes)]
    sample = presign(identities[:500], 2, int(time.time()))
    raws = [raw_verify_per_min(sample)]
    print(f"raw Ed25519 verify, 1 process / 1 core: {raws[-1]:>12,.0f} /min", flush=True)
    seed = os.urandom(32)
    tls = issue_coordinator_certificate(Identity.from_seed(seed), int(time.time()))
    rates: list[float] = []
    with postgres_cluster() as url:
        upgrade(url)
        repositories = open_repositories(url, migrate=False)
        seed_nodes(repositories, identities, int(time.time()))
        repositories.close()
        writes = postgres_writes_per_min(url, identities)
        print(f"PostgreSQL heartbeat writes (batches of 500, no verification): "
              f"{writes:>12,.0f} rows/min", flush=True)  # fmt: skip
        for count in (1, 2):
            rates.append(balanced_run(count, url, identities, 1 + (count - 1) * args.per_node,
                                      args, seed, tls))  # fmt: skip
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
        f"two_coordinators_ratio={two / raw:.3f} postgres_writes_per_min={writes:.0f}"
    )


if __name__ == "__main__":
    main()
