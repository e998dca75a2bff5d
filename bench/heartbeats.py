"""Heartbeat ingestion and dispatch latency of the coordinator over real gRPC (SRS-PERF-04/09).

Everything runs over the control plane's mTLS (SRS-SEC-01), as in production: the figures
include TLS (handshakes, encryption) and the per-call certificate-binding check.

Usage:  .venv/bin/python bench/heartbeats.py [--nodes 2000] [--per-node 20] [--streams 4]
        [--batch 500] [--tasks 200] [--no-postgres]

What it does, in one run:

1. **Raw verify rate**: one process, one core, ``VerifyKey.verify`` on pre-built heartbeat
   messages for ~2 s → Ed25519 verifications per minute (the ceiling a single core can do);
   measured before, between and after the ingestion runs, the median is reported (the
   machine may be shared, so one sample can be off).
2. For SQLite (a WAL file in a temp dir) and PostgreSQL (a throw-away cluster started from the
   installed binaries, like ``tests/conftest.py``): ``--nodes`` nodes are registered
   straight into the store, a coordinator is served on a free localhost port, and a **load
   generator in a separate process** sends ``--nodes × --per-node`` heartbeats, **signed before
   timing**, over ``--streams`` concurrent ``HeartbeatStream`` calls in batches of ``--batch``.
   The coordinator verifies every envelope (signature, replay guard, registered key, manifest
   digest) and persists them in batches (``NodeRepository.record_heartbeats``); the clock stops
   when every stream's summary is back, i.e. after the last batch is committed. The run fails if
   any heartbeat is rejected or a node's ``last_heartbeat`` was not written. The coordinator
   starts cold (empty node cache), so loading the registered nodes is part of the measurement.
   Target (coordinator issue, item 7): with these defaults, each backend ingests at least 60 %
   of the raw verify rate measured in the same run, the load generator sharing the machine.
3. **Dispatch latency** (SQLite coordinator): 8 nodes register over gRPC with stake channels in
   the embedded Lightning ledger and open task streams; ``--tasks`` tasks are submitted one by
   one; latency = SubmitTask call → assignment received on the node's stream (p50/p99).

The last line is machine-readable:
``sqlite_hb_per_min=<n> postgres_hb_per_min=<n> raw_verify_per_min=<n> dispatch_p99_ms=<x>``
(``postgres_hb_per_min=nan`` when PostgreSQL could not be started, with the reason printed).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pickle
import shutil
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

import grpc
from nacl.signing import VerifyKey

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_core.identity import envelopes
from owm_core.identity.envelopes import CapabilityManifest, EnvelopeKind, Heartbeat
from owm_core.identity.keys import Identity
from owm_core.nodes.registry import LnNodeUri, Node
from owm_core.nodes.tiers import Tier

MANIFEST = CapabilityManifest(
    tier=Tier.T1, vram_mb=0, ram_mb=16_000, bandwidth_mbps=100, gpu_vendor="none", gpu_count=0
)
LN_URI = LnNodeUri.parse("02" + "11" * 32 + "@127.0.0.1:9735")


# --------------------------------------------------------------------------- raw rate


def raw_verify_per_min(heartbeats: list[bytes], seconds: float = 2.0) -> float:
    """Ed25519 verifications per minute on this core, on the heartbeats' own signed messages."""
    work = []
    for raw in heartbeats[:5_000]:
        env = envelopes.from_bytes(raw)
        prefix = envelopes.signed_prefix(env.kind, _coordinator().public_key_hex)
        message = prefix + envelopes.canonical_bytes(env.unsigned())
        work.append((VerifyKey(bytes.fromhex(env.signer)), message, bytes.fromhex(env.signature)))
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for key, message, signature in work:
            key.verify(message, signature)
        done += len(work)
    return done / (time.perf_counter() - started) * 60


# --------------------------------------------------------------------------- load generator


def timed_threads(threads: list[threading.Thread], go: object) -> float:
    """Seconds from starting ``threads`` (once ``go`` is set) until the last one ends."""
    go.wait()  # type: ignore[attr-defined]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _generator(
    port: int, pin: str, path: str, streams: int, batch: int, go: object, out: object
) -> None:
    """Child process: send the pre-signed heartbeats over ``streams`` client streams, over
    mTLS like every control-plane client (a relay's certificate, pinning the coordinator's)."""
    from owm_adapters.control_plane.tls import ClientTls, issue_node_certificate, pinned_channel

    with open(path, "rb") as fh:
        heartbeats: list[bytes] = pickle.load(fh)
    shares = [heartbeats[i::streams] for i in range(streams)]
    relay = Identity.from_seed(os.urandom(32))
    tls = ClientTls(issue_node_certificate(relay, int(time.time())), pin)
    channel = pinned_channel(
        f"127.0.0.1:{port}", tls, options=[("grpc.max_send_message_length", 64 << 20)]
    )
    stub = pb_grpc.CoordinatorStub(channel)
    grpc.channel_ready_future(channel).result(timeout=10)
    results: list[tuple[int, int, list[str]]] = []

    def send(share: list[bytes]) -> None:
        batches = (
            pb.HeartbeatBatch(heartbeat_envelopes=share[i : i + batch])
            for i in range(0, len(share), batch)
        )
        summary = stub.HeartbeatStream(batches)
        results.append((summary.accepted, summary.rejected, list(summary.errors)))

    threads = [threading.Thread(target=send, args=(s,)) for s in shares]
    elapsed = timed_threads(threads, go)
    channel.close()
    out.put((elapsed, results))  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- one backend


def _coordinator() -> Identity:
    """The key of every benchmarked coordinator, which the nodes' envelopes are signed for."""
    from tests.server.harness import COORDINATOR_KEY

    return COORDINATOR_KEY


def presign(
    identities: list[Identity], per_node: int, now: int, *, first_seq: int = 1
) -> list[bytes]:
    """Every node's heartbeats (sequence numbers from ``first_seq``), signed now (before any
    timing) for the benchmarked coordinator, interleaved across nodes."""
    audience = _coordinator().public_key_hex
    digest = MANIFEST.digest()
    signed = []
    for seq in range(first_seq, first_seq + per_node):
        for who in identities:
            body = Heartbeat(node_id=who.node_id, seq=seq, manifest_digest=digest)
            env = envelopes.seal(
                who, EnvelopeKind.HEARTBEAT, body, os.urandom(16), now, audience=audience
            )
            signed.append(envelopes.to_bytes(env))
    return signed


def seed_nodes(repositories: object, identities: list[Identity], now: int) -> None:
    """Register the simulated nodes straight into the store (registration is not measured)."""
    repos = repositories  # Repositories
    with repos.atomic():  # type: ignore[attr-defined]
        for who in identities:
            node = Node(
                node_id=who.node_id,
                public_key=who.public_key_hex,
                ln_node_uri=LN_URI,
                tier=Tier.T1,
                vram_mb=0,
                ram_mb=16_000,
                bandwidth_mbps=100,
                registered_at=now - 600,
                last_heartbeat=now - 600,
            )
            repos.nodes.add(node)  # type: ignore[attr-defined]
            manifest = envelopes.seal(
                who, EnvelopeKind.CAPABILITY_MANIFEST, MANIFEST, os.urandom(16), now - 600,
                audience=_coordinator().public_key_hex,
            )
            repos.manifests.put(manifest)  # type: ignore[attr-defined]


def ingest(
    name: str,
    url: str,
    identities: list[Identity],
    heartbeats: list[bytes],
    args: argparse.Namespace,
) -> float:
    """Serve a coordinator over ``url`` and time the load generator's heartbeats; hb/min."""
    from owm_adapters.bootstrap.coordinator import build_coordinator
    from owm_adapters.bootstrap.settings import CoordinatorSection, CoordinatorSettings
    from owm_adapters.control_plane.tls import issue_coordinator_certificate
    from owm_adapters.services.coordinator.service import ServiceConfig
    from owm_adapters.storage.sql import open_repositories
    from owm_server.grpc.server import CoordinatorServer

    class NoLightning:
        def channels_with(self, peer_pubkey: str) -> list[object]:
            return []

    repositories = open_repositories(url)
    now = int(time.time())
    seed_nodes(repositories, identities, now)
    data = Path(tempfile.mkdtemp(prefix="owm-bench-hb-"))
    settings = CoordinatorSettings(coordinator=CoordinatorSection(
        data_dir=str(data), signing_key_path=str(data / "coordinator.key")))
    # What ``owm-coordinator serve`` runs (payouts, slashing, FL rounds), over a treasury that
    # has no channels.
    coordinator = build_coordinator(
        settings,
        store=repositories,
        treasury=NoLightning(),  # type: ignore[arg-type]
        force_closer=NoLightning(),  # type: ignore[arg-type]
        coordinator_key=_coordinator(),
        config=ServiceConfig(heartbeat_flush_s=0.05, heartbeat_batch_max=5_000),
    )
    tls = issue_coordinator_certificate(coordinator.identity, now)
    server = CoordinatorServer(
        coordinator.service, "127.0.0.1:0", tls=tls, max_workers=max(8, args.streams * 2)
    )
    coordinator.workers.start()
    server.start()
    ctx = mp.get_context("spawn")
    with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as fh:
        pickle.dump(heartbeats, fh)
    go, out = ctx.Event(), ctx.Queue()
    child = ctx.Process(
        target=_generator,
        args=(server.port, tls.fingerprint, fh.name, args.streams, args.batch, go, out),
    )
    child.start()
    try:
        time.sleep(1.0)  # let the child import and connect
        go.set()
        elapsed, results = out.get(timeout=600)
        child.join(30)
    finally:
        os.unlink(fh.name)
        server.stop(5)
        coordinator.workers.stop(5)
        shutil.rmtree(data, ignore_errors=True)
    accepted = sum(r[0] for r in results)
    rejected = sum(r[1] for r in results)
    written = sum(1 for n in repositories.nodes.list() if n.last_heartbeat >= now)
    repositories.close()
    rate = accepted / elapsed * 60
    print(
        f"{name:<10} {accepted:>8} heartbeats accepted, {rejected} rejected, in {elapsed:6.2f} s"
        f" over {args.streams} streams → {rate:>12,.0f} hb/min; "
        f"{written}/{len(identities)} nodes' last_heartbeat written"
    )
    if rejected or written != len(identities):
        errors = [e for r in results for e in r[2]][:3]
        raise SystemExit(f"{name}: heartbeats lost or rejected: {errors}")
    return rate


# --------------------------------------------------------------------------- PostgreSQL


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A throw-away PostgreSQL cluster (installed binaries; as root via ``runuser postgres``)."""
    from tests.conftest import _bindir, _free_port

    bindir = _bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found")
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    workdir = Path(tempfile.mkdtemp(prefix="owm-bench-pg-"))
    if as_root:
        shutil.chown(workdir, user="postgres", group="postgres")
    data, log, port = workdir / "data", workdir / "log", _free_port()
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "owm",
             "-E", "UTF8", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1"
        subprocess.run(
            [*pg_ctl, "-o", options, "-l", str(log), "-w", "-t", "30", "start"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        started = True
        yield f"postgresql+psycopg://owm@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- dispatch


def bench_task(task_id: str) -> object:
    """A SubmitTask request for a small inference task, signed (before any timing) by the test
    harness's operator key, which draws on the network budget (funded work only)."""
    from owm_adapters.control_plane.submitter import signed_submit_request
    from owm_core.market.tasks import TaskRequest
    from tests.server.harness import COORDINATOR_KEY, OPERATOR

    return signed_submit_request(OPERATOR, TaskRequest(
        task_id=task_id, task_type="inference", input_schema_id="bench",
        input_schema_version=1, min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0,
        gpu_required=False, max_price_msat=10_000,
    ), coordinator_key=COORDINATOR_KEY.public_key_hex)  # fmt: skip


def wait_assigned(
    feeds: list[Any], replica: str, arrived: dict[str, float], sent: float, timeout_s: float
) -> float:
    """Milliseconds from ``sent`` until ``replica`` arrived on one of the nodes' ``feeds``
    (``arrived`` remembers when each assignment was first seen); SystemExit if it never does."""
    deadline = time.perf_counter() + timeout_s
    while replica not in arrived and time.perf_counter() < deadline:
        for feed in feeds:
            for assignment in feed.received:
                arrived.setdefault(assignment.task_id, time.perf_counter())
        if replica not in arrived:
            time.sleep(0.0002)
    if replica not in arrived:
        raise SystemExit(f"dispatch: {replica} never arrived")
    return (arrived[replica] - sent) * 1000


def dispatch_latency(tmp: Path, tasks: int) -> list[float]:
    """Milliseconds from SubmitTask to the assignment arriving on a node's stream."""
    from owm_adapters.lightning.embedded import SimLedger
    from owm_adapters.services.coordinator.service import ServiceConfig
    from owm_adapters.storage.sql import open_repositories
    from owm_core.market.tasks import VerificationPolicy
    from tests.server.harness import SimNode, start_coordinator

    class Clock:
        def now(self) -> int:
            return int(time.time())

        def monotonic_ms(self) -> int:
            return time.monotonic_ns() // 1_000_000

    ledger = SimLedger(tmp / "lightning.sqlite3")
    config = ServiceConfig(verification=VerificationPolicy(redundancy=1))
    running = start_coordinator(
        open_repositories(f"sqlite:///{tmp / 'dispatch.sqlite3'}"),
        ledger,
        Clock(),
        config,  # type: ignore[arg-type]
    )
    arrived: dict[str, float] = {}
    feeds = []
    try:
        for i in range(8):
            node = SimNode.create()
            node.stake(running)
            node.register(running.stub, int(time.time()))
            feeds.append(node.open_stream(running.stub, ask_msat=1_000 + i))
        time.sleep(0.3)
        latencies = []
        for i in range(tasks):
            task_id = f"bench-{i}"
            # Signed before the clock starts (funded work only: the harness's operator key
            # draws on the network budget); the coordinator's check of it is measured.
            request = bench_task(task_id)
            sent = time.perf_counter()
            running.stub.SubmitTask(request)
            latencies.append(wait_assigned(feeds, f"{task_id}:0", arrived, sent, 5.0))
        return latencies
    finally:
        for feed in feeds:
            feed.close()
        running.stop()
        running.service.repositories.close()


# --------------------------------------------------------------------------- main


def load_parser(doc: str, *, per_node: int, streams: int, batch: int) -> argparse.ArgumentParser:
    """The options every heartbeat-load benchmark takes (its docstring's first paragraph as
    the description): how many nodes, heartbeats each, client streams and batch size."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=2_000)
    parser.add_argument("--per-node", type=int, default=per_node)
    parser.add_argument("--streams", type=int, default=streams)
    parser.add_argument("--batch", type=int, default=batch)
    return parser


def main() -> None:
    parser = load_parser(__doc__ or "", per_node=20, streams=4, batch=500)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    print(f"presigning {args.nodes} nodes × {args.per_node} heartbeats …", flush=True)
    identities = [Identity.from_seed(os.urandom(32)) for _ in range(args.nodes)]
    heartbeats = presign(identities, args.per_node, int(time.time()))
    raws = [raw_verify_per_min(heartbeats)]
    print(f"raw Ed25519 verify, 1 process / 1 core: {raws[0]:>12,.0f} /min")

    tmp = Path(tempfile.mkdtemp(prefix="owm-bench-"))
    try:
        sqlite = ingest("sqlite", f"sqlite:///{tmp / 'hb.sqlite3'}", identities, heartbeats, args)
        raws.append(raw_verify_per_min(heartbeats))
        print(f"raw Ed25519 verify, 1 process / 1 core: {raws[-1]:>12,.0f} /min")
        postgres = float("nan")
        if args.no_postgres:
            print("postgres   skipped (--no-postgres)")
        else:
            try:
                with postgres_cluster() as url:
                    postgres = ingest("postgres", url, identities, heartbeats, args)
            except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
                print(f"postgres   not measured: {exc}")
        raws.append(raw_verify_per_min(heartbeats))
        print(f"raw Ed25519 verify, 1 process / 1 core: {raws[-1]:>12,.0f} /min")
        latencies = sorted(dispatch_latency(tmp, args.tasks))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    raw = statistics.median(raws)
    print(f"raw Ed25519 verify (median of {len(raws)} measurements): {raw:,.0f} /min")
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"dispatch latency over {len(latencies)} tasks: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    for name, rate in (("sqlite", sqlite), ("postgres", postgres)):
        if rate == rate:
            print(
                f"{name}: {rate / raw:.0%} of the raw verify rate, "
                f"{rate / 10_000:.0f}× the SRS-PERF-04 target of 10,000 nodes/min"
            )
    print(
        f"sqlite_hb_per_min={sqlite:.0f} postgres_hb_per_min={postgres:.0f} "
        f"raw_verify_per_min={raw:.0f} dispatch_p99_ms={p99:.2f}"
    )


if __name__ == "__main__":
    main()
