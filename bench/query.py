"""End-to-end query latency through the public API on a local network (SRS-PERF-01/02).

Usage:  .venv/bin/python bench/query.py [--concurrency 8] [--requests 160] [--nodes 3]
        [--warmup 6] [--max-concurrent-tasks 8] [--spot-rate-ppm 100000]

What runs, all on 127.0.0.1:

1. **Coordinator** (its own process, like ``owm-coordinator serve``): ``build_coordinator`` over a
   SQLite store in a temp dir and the embedded Lightning ledger, the gRPC control plane, and
   the public API (``build_api`` + ``create_app`` under uvicorn) with the
   conglomerate's query path: the demo knowledge base (three sub-models, their CC0 datasets)
   with the real MiniLM encoder and Qdrant in embedded (in-memory) mode. Verification of
   query tasks: spot checks at the default 10 % rate (``--spot-rate-ppm``; a drawn task is
   re-run on another node before it is verified, and its query waits for that).
2. **Nodes**: ``--nodes`` real ``owm-node start`` daemons, each with its own identity, stake
   channel in the coordinator's ledger and task log; every task runs in an isolated worker
   subprocess (``--max-concurrent-tasks`` at a time per node).
3. **Load**: ``--concurrency`` clients (one asyncio loop, httpx, keep-alive) each send
   ``POST /v1/query`` back to back, cycling through the demo questions (three quarters
   answerable, one quarter that the data cannot answer), until ``--requests`` answers came
   back; the first ``--warmup`` (sequential) are not counted. Latency is measured at the client
   from request start to the full JSON answer; any status other than 200 or a connection error
   is an error.

With ``--readers DIR`` the coordinator has those sub-model reader versions installed
(``<data_dir>/readers``), so every answer is also read by the sub-model's transformer (MiniLM +
LoRA adapter, docs/models.md) beside the nodes' BM25 reading.

Targets: p95 < 2 s, p99 < 5 s on this 2-core machine. The last line is machine-readable:
``concurrency=<n> p50_ms=<x> p95_ms=<x> p99_ms=<x> errors=<n>``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BIN = Path(sys.executable).parent
STAKE_SAT = 100_000
ANSWERABLE = [
    "What is the capital of France?",
    "When did the Western Roman Empire fall?",
    "Why is the sky blue?",
    "How high is Mount Everest?",
    "Who founded the Mongol Empire?",
    "What is photosynthesis?",
    "When was the Berlin Wall opened?",
    "How many planets are in the Solar System?",
    "What is the largest hot desert in the world?",
]
UNANSWERABLE = [
    "What is the best pizza recipe?",
    "What is the capital of Mongolia?",
    "Who invented the telephone?",
]


def questions() -> list[str]:
    """Three answerable questions, then one the data cannot answer, repeated."""
    out = []
    for i, question in enumerate(ANSWERABLE):
        out.append(question)
        if i % 3 == 2:
            out.append(UNANSWERABLE[i // 3 % len(UNANSWERABLE)])
    return out


# --------------------------------------------------------------------------- the coordinator


def serve_coordinator(workdir: str, info_file: str, spot_rate_ppm: int) -> None:
    """Coordinator + gRPC + API with the query path, in this (spawned) process."""
    import torch

    from owm_adapters.bootstrap.api import build_api
    from owm_adapters.bootstrap.coordinator import build_coordinator
    from owm_adapters.bootstrap.settings import CoordinatorSection, CoordinatorSettings
    from owm_adapters.clock import SystemClock
    from owm_adapters.control_plane.tls import issue_coordinator_certificate
    from owm_adapters.knowledge.minilm import MiniLmEmbedder
    from owm_adapters.knowledge.qdrant import QdrantVectorStore
    from owm_adapters.lightning.embedded import SimLedger
    from owm_adapters.services.api import ApiConfig
    from owm_adapters.services.coordinator.service import ServiceConfig
    from owm_adapters.services.knowledge import KnowledgeBase
    from owm_adapters.storage.sql import open_repositories, sqlite_url
    from owm_cli.signals import stopped_by_signals
    from owm_core.access.api_keys import Plan
    from owm_core.market.tasks import VerificationMode, VerificationPolicy
    from owm_server.grpc.server import CoordinatorServer
    from owm_server.http.app import create_app
    from owm_server.http.serve import ApiServer

    # One intra-op thread: on two shared cores torch's thread pool spins and costs ~8x the CPU
    # of one embedding (measured 207 ms vs 27 ms per query embedding under load).
    torch.set_num_threads(1)
    data = Path(workdir)
    repos = open_repositories(sqlite_url(data))
    ledger = SimLedger(data / "lightning.sqlite3")
    clock = SystemClock()
    config = ServiceConfig(
        verification=VerificationPolicy(VerificationMode.SPOT_CHECK,
                                        spot_check_rate_ppm=spot_rate_ppm),
        assignment_timeout_s=30,
    )
    settings = CoordinatorSettings(coordinator=CoordinatorSection(
        data_dir=str(data), signing_key_path=str(data / "coordinator.key")))
    coordinator = build_coordinator(
        settings, store=repos, treasury=ledger.lightning("treasury"),
        force_closer=ledger.lightning("treasury", force_close_allowed=True),
        clock=clock, config=config,
    )
    coordinator.workers.start()
    tls = issue_coordinator_certificate(coordinator.identity, clock.now())
    grpc_server = CoordinatorServer(coordinator.service, "127.0.0.1:0", tls=tls, max_workers=64)
    grpc_server.start()
    embedder = MiniLmEmbedder()
    embedder.embed(["warm up"])
    knowledge = KnowledgeBase(repos, embedder, QdrantVectorStore(location=":memory:"))
    knowledge.load_demo_data(clock.now())
    # The benchmark's one key asks many queries: lift the daily quotas (SRS-API-03).
    lifted = ApiConfig(paid_requests_per_day=10**9, writes_per_day=10**9)
    services = build_api(coordinator, data_dir=data, knowledge=knowledge, config=lifted).services
    _key, secret = services.access.create_api_key("bench", Plan.COMMERCIAL)
    api = ApiServer(create_app(services), "127.0.0.1:0")
    api.start()
    Path(info_file).write_text(json.dumps(
        {"grpc_port": grpc_server.port, "api_port": api.port, "key": secret,
         "tls_fingerprint": tls.fingerprint, "coordinator_key": coordinator.identity.public_key_hex}
    ))
    with stopped_by_signals((signal.SIGTERM,)) as stop:
        stop.wait()
    api.stop(2)
    grpc_server.stop(1)
    coordinator.workers.stop(2)


# --------------------------------------------------------------------------- the nodes


class Node:
    """One ``owm-node start`` daemon and its output."""

    def __init__(self, name: str, tmp: Path, info: dict[str, Any], ledger: Any, treasury: str,
                 max_concurrent: int) -> None:  # fmt: skip
        grpc_port = info["grpc_port"]
        node_dir = tmp / f"node-{name}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OWM_")}
        env["PYTHONUNBUFFERED"] = "1"
        subprocess.run(
            [str(BIN / "owm-node"), "init", "--config", str(tmp / f"init-{name}.toml"),
             "--data-dir", str(node_dir)],
            env=env, cwd=tmp, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        ln_pubkey = ledger.add_node(f"node-{name}")
        ledger.open_channel(treasury, ln_pubkey, 2 * STAKE_SAT, push_sat=STAKE_SAT)
        config = tmp / f"node-{name}.toml"
        config.write_text(
            "[node]\n"
            f'data_dir = "{node_dir}"\n'
            f'identity_key = "{node_dir / "identity.key"}"\n'
            "health_port = 0\n"
            "heartbeat_interval_s = 5\n"
            "[coordinator]\n"
            f'url = "127.0.0.1:{grpc_port}"\n'
            f'tls_fingerprint = "{info["tls_fingerprint"]}"\n'
            f'public_key = "{info["coordinator_key"]}"\n'
            "[lightning]\n"
            f'node_uri = "{ln_pubkey}@127.0.0.1:9735"\n'
            f'treasury_uri = "{treasury}@127.0.0.1:9735"\n'
            'backend = "embedded"\n'  # the node's LN node signs its registration
            f'ledger_path = "{tmp / "coordinator" / "lightning.sqlite3"}"\n'
            f'ledger_alias = "node-{name}"\n'
            "[tasks]\n"
            "ask_msat = 1000\n"
            'types = ["inference"]\n'
            f"max_concurrent = {max_concurrent}\n"
            "timeout_s = 30\n"
        )
        self.log = (tmp / f"node-{name}.log").open("w")
        self.proc = subprocess.Popen(
            [str(BIN / "owm-node"), "start", "--config", str(config)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=tmp,
        )
        self.log_path = tmp / f"node-{name}.log"

    def wait_registered(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "registered" in self.log_path.read_text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("node did not register:\n" + self.log_path.read_text()[-2000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


# --------------------------------------------------------------------------- the load


async def _client(client: Any, key: str, items: list[str], offset: int, results: list[Any],
                  remaining: list[int]) -> None:  # fmt: skip
    i = offset
    while remaining[0] > 0:
        remaining[0] -= 1
        question = items[i % len(items)]
        i += 1
        started = time.perf_counter()
        try:
            reply = await client.post(
                "/v1/query", json={"query": question},
                headers={"Authorization": f"Bearer {key}"},
            )
            ok = reply.status_code == 200
            body = reply.json() if ok else {}
        except Exception as exc:  # a connection error is an error, not a crash of the bench
            ok, body = False, {"error": repr(exc)}
        results.append((time.perf_counter() - started, ok, question, body))


async def run_load(port: int, key: str, concurrency: int, requests: int) -> list[Any]:
    import httpx

    items = questions()
    results: list[Any] = []
    remaining = [requests]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                 limits=limits) as client:  # fmt: skip
        await asyncio.gather(*(
            _client(client, key, items, n * 5, results, remaining) for n in range(concurrency)
        ))  # fmt: skip
    return results


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / ticks
    children = (int(fields[13]) + int(fields[14])) / ticks
    return own, children


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=160)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--max-concurrent-tasks", type=int, default=8)
    parser.add_argument("--spot-rate-ppm", type=int, default=100_000,
                        help="share of query tasks re-run on another node before they count")
    parser.add_argument("--readers", type=Path,
                        help="install these reader versions (<sub_model>.owmr, from "
                             "bench/query_quality.py --save) so the transformer reads too")
    args = parser.parse_args()

    from owm_adapters.lightning.embedded import SimLedger

    with tempfile.TemporaryDirectory(prefix="owm-bench-query-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "coordinator"
        data.mkdir()
        if args.readers:
            (data / "readers").mkdir()
            for version in sorted(args.readers.glob("*.owmr")):
                (data / "readers" / version.name).write_bytes(version.read_bytes())
        ledger = SimLedger(data / "lightning.sqlite3")
        treasury = ledger.add_node("treasury")
        info_file = tmp / "coordinator.json"
        ctx = mp.get_context("spawn")
        coordinator = ctx.Process(
            target=serve_coordinator, args=(str(data), str(info_file), args.spot_rate_ppm),
            daemon=True,
        )
        coordinator.start()
        nodes: list[Node] = []
        try:
            deadline = time.monotonic() + 300
            while not info_file.exists():
                if not coordinator.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the coordinator did not start")
                time.sleep(0.2)
            time.sleep(0.2)
            info = json.loads(info_file.read_text())
            print(f"coordinator: grpc :{info['grpc_port']}  api :{info['api_port']}", flush=True)
            for n in range(args.nodes):
                nodes.append(Node(chr(ord("a") + n), tmp, info, ledger, treasury,
                                  args.max_concurrent_tasks))  # fmt: skip
            for node in nodes:
                node.wait_registered()
            time.sleep(2.0)  # task streams open after registration
            warm = asyncio.run(run_load(info["api_port"], info["key"], 1, args.warmup))
            print(f"warm-up: {len(warm)} queries, "
                  f"{sum(1 for r in warm if r[1])} ok, last {warm[-1][0] * 1000:.0f} ms",
                  flush=True)  # fmt: skip
            pids = {"coordinator": coordinator.pid or 0,
                    **{f"node-{i}": n.proc.pid for i, n in enumerate(nodes)}}  # fmt: skip
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            started = time.perf_counter()
            results = asyncio.run(
                run_load(info["api_port"], info["key"], args.concurrency, args.requests)
            )
            wall = time.perf_counter() - started
            after = {name: cpu_seconds(pid) for name, pid in pids.items()}
            cpu = {
                name: (after[name][0] - before[name][0], after[name][1] - before[name][1])
                for name in pids
            }
        finally:
            for node in nodes:
                node.stop()
            if coordinator.pid is not None and coordinator.is_alive():
                os.kill(coordinator.pid, signal.SIGTERM)
            coordinator.join(15)
            if coordinator.is_alive():
                coordinator.kill()

    latencies = [r[0] * 1000 for r in results]
    errors = sum(1 for r in results if not r[1])
    bodies = [r[3] for r in results if r[1]]
    answered = [b for b in bodies if b.get("answered")]
    missing = sum(1 for b in bodies if b.get("missing_sub_models"))
    print(f"requests={len(results)} wall_s={wall:.1f} qps={len(results) / wall:.2f} "
          f"answered={len(answered)} abstained={len(bodies) - len(answered)} "
          f"with_missing_sub_models={missing}")
    if bodies:
        print(f"mean_confidence_answered="
              f"{statistics.mean(b['confidence'] for b in answered) if answered else 0:.3f} "
              f"mean_cost_sats={statistics.mean(b['cost_sats'] for b in bodies):.1f} "
              f"server_latency_p50_ms={percentile([b['latency_ms'] for b in bodies], 0.5):.0f}")
    n = max(1, len(results))
    nodes_own = sum(own for name, (own, _) in cpu.items() if name != "coordinator")
    workers = sum(kids for name, (_, kids) in cpu.items() if name != "coordinator")
    print(f"cpu_ms_per_query coordinator={sum(cpu['coordinator']) * 1000 / n:.0f} "
          f"node_daemons={nodes_own * 1000 / n:.0f} task_workers={workers * 1000 / n:.0f}; "
          f"load average {os.getloadavg()[0]:.1f}")
    for r in results:
        if not r[1]:
            print("error:", r[2], str(r[3])[:200])
            break
    print(f"concurrency={args.concurrency} p50_ms={percentile(latencies, 0.50):.1f} "
          f"p95_ms={percentile(latencies, 0.95):.1f} p99_ms={percentile(latencies, 0.99):.1f} "
          f"errors={errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
