"""Load test of the public HTTP API at 1,000 concurrent connections (SRS-PERF-01/02/08).

Usage:  .venv/bin/python bench/api_load.py [--concurrency 1000] [--duration 8] [--warmup 2]
        [--rounds 3]

What it does, in one run:

1. **Ceiling**: a bare Starlette app with one endpoint returning a constant JSON body is served
   by uvicorn in its own process, with exactly the settings the API uses
   (``owm_server.http.serve.api_config``: one worker, httptools, backlog 4096, no access log).
2. **OWM**: the real application — ``build_coordinator`` over a SQLite store (WAL file in a
   temp dir, seeded with nodes, stakes, a model release, proposals, bounties, shares, payouts
   and a slashing log) and the embedded Lightning ledger, ``build_api``,
   ``create_app`` — served the same way in its own process. Every request is authenticated
   with an API key and passes the rate-limit step, the request validation and the
   SRS-API-01 headers.
3. Both servers run side by side; they are measured **alternately** (``--rounds`` times each:
   bare, OWM, bare, OWM, …), throughput is the median round and latency percentiles pool every
   request, so a machine shared with other work skews both alike. Each round is a **load
   generator in a separate process** (asyncio + uvloop, raw HTTP/1.1 with
   keep-alive) opens ``--concurrency`` connections over loopback, each looping requests back to
   back for ``--duration`` seconds after ``--warmup`` seconds (so exactly ``--concurrency``
   requests are in flight at all times). OWM requests cycle through a mix of read endpoints
   (stake requirements, network stats and nodes, slashing log, mining stats and payouts,
   governance proposals, bounties, model versions). Any status other than 200, or a
   connection error, counts as an error.

Targets for non-model endpoints: zero errors, p99 < 2 s, throughput ≥ 50 % of the bare
ceiling. The last line is machine-readable:
``concurrency=<n> rps=<x> bare_rps=<x> p50_ms=<x> p95_ms=<x> p99_ms=<x> errors=<n>``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

READ_MIX = [
    "/v1/stake/requirements",
    "/v1/network/stats",
    "/v1/network/nodes?limit=20",
    "/v1/network/slashing-log?limit=20",
    "/v1/mining/stats",
    "/v1/mining/payouts?limit=20",
    "/v1/governance/proposals",
    "/v1/github/bounties",
    "/v1/model/versions",
]
BARE_PATH = "/bare"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65_536)), hard))


# --------------------------------------------------------------------------- servers


def _seed(repos: Any, services: Any, ledger: Any, treasury: str, now: int) -> None:
    """A small, realistic store: 50 nodes with stakes, releases, proposals, shares, payouts."""
    from owm_core.governance.contributions import open_bounty
    from owm_core.governance.proposals import ProposalType, submit_proposal
    from owm_core.identity.keys import Identity
    from owm_core.nodes.registry import LnNodeUri, Node
    from owm_core.nodes.tiers import Tier
    from owm_core.pool.bitcoin import AcceptedShare
    from owm_core.pool.stats import MiningPayout
    from owm_core.provenance.releases import ModelRelease
    from owm_core.provenance.versions import ModelVersion, ProofStatus
    from owm_core.stake.slashing import SlashingDecision, SlashingReason, append_to_log

    coordinator_key = Identity.from_seed(b"\x09" * 32)
    for i in range(50):
        identity = Identity.from_seed(i.to_bytes(32, "big"))
        repos.nodes.add(Node(
            node_id=identity.node_id, public_key=identity.public_key_hex,
            ln_node_uri=LnNodeUri("02" + f"{i:064x}", "127.0.0.1", 9735), tier=Tier.T1,
            vram_mb=8_192, ram_mb=16_000, bandwidth_mbps=100, registered_at=now - 3_600,
            last_heartbeat=now - (i % 4) * 100,
        ))  # fmt: skip
    for i in range(5):
        digest = f"{i + 1:064x}"
        services.releases.publish_release(ModelRelease(
            ModelVersion(f"owm-v0.{i}.0", "owm-geo", digest, now - 1_000 + i),
            ProofStatus.CONFIRMED, now, b"\x00OpenTimestamps\x00" + bytes.fromhex(digest),
        ))  # fmt: skip
    for i in range(10):
        repos.proposals.add(submit_proposal(
            proposal_id=f"prop-{i}", author="bench", title=f"proposal {i}", description="d",
            proposal_type=ProposalType.TECHNICAL, implementation_plan="p", now=now - i,
        ))  # fmt: skip
        repos.bounties.add(open_bounty(
            bounty_id=f"bnt-{i}", repository="owm-network/owm", issue_number=i + 1,
            title="fix", amount_sat=1_000, created_by="bench", now=now - i,
        ))  # fmt: skip
    for i in range(500):
        share = AcceptedShare(f"miner-{i % 20}", 1_000, Fraction(1_000), f"{i:064x}", i == 7)
        repos.shares.add(share, now - i * 5)
    for i in range(30):
        repos.mining_payouts.add(MiningPayout(now - i * 60, 10_000, f"{i + 99:064x}", "miner-1"))
    previous = None
    for i in range(5):
        decision = SlashingDecision(
            node_id=f"n{i:040x}", channel_id="800000x1x0", tier=Tier.T1,
            reason=SlashingReason.FAKE_PROOF, evidence_hash="ab" * 32, decided_at=now - 100 + i,
            supporters=("a", "b", "c"),
        )  # fmt: skip
        previous = append_to_log(coordinator_key, previous, decision)
        repos.slashing_log.append(previous)


def serve_owm(port: int, workdir: str, key_file: str) -> None:
    """The real API over a SQLite store, served like ``owm-coordinator serve`` serves it."""
    _raise_fd_limit()
    import uvicorn

    from owm_adapters.bootstrap.api import build_api
    from owm_adapters.bootstrap.coordinator import build_coordinator
    from owm_adapters.bootstrap.settings import CoordinatorSection, CoordinatorSettings
    from owm_adapters.clock import SystemClock
    from owm_adapters.lightning.embedded import SimLedger
    from owm_adapters.services.api import ApiConfig
    from owm_adapters.storage.sql import open_repositories, sqlite_url
    from owm_core.access.api_keys import Plan
    from owm_server.http.app import create_app
    from owm_server.http.serve import api_config

    data = Path(workdir)
    repos = open_repositories(sqlite_url(data))
    ledger = SimLedger(data / "lightning.sqlite3")
    treasury = ledger.add_node("treasury")
    clock = SystemClock()
    settings = CoordinatorSettings(coordinator=CoordinatorSection(
        data_dir=str(data), signing_key_path=str(data / "coordinator.key")))
    coordinator = build_coordinator(
        settings, store=repos, treasury=ledger.lightning("treasury"),
        force_closer=ledger.lightning("treasury", force_close_allowed=True), clock=clock,
    )  # fmt: skip
    # The load test's one commercial key makes millions of requests: lift its daily quota.
    services = build_api(
        coordinator, data_dir=data, config=ApiConfig(paid_requests_per_day=10**9)
    ).services
    _seed(repos, services, ledger, treasury, clock.now())
    _key, secret = services.access.create_api_key("bench", Plan.COMMERCIAL)
    Path(key_file).write_text(secret)
    with coordinator.running(2):
        uvicorn.Server(
            api_config(create_app(services), "127.0.0.1", port, limits=_one_address_limits())
        ).run()


def _one_address_limits() -> Any:
    """The served limits, except that every client of the bench dials from loopback: one
    address may hold as many connections as the server (a real one keeps 64 per address)."""
    from owm_server.http.serve import HttpLimits

    return HttpLimits(max_connections_per_ip=HttpLimits().max_connections)


def serve_bare(port: int) -> None:
    """The framework's ceiling: a constant JSON body, same uvicorn settings."""
    _raise_fd_limit()
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from owm_server.http.serve import api_config

    async def bare(_request: Request) -> JSONResponse:
        return JSONResponse({"currency": "sat", "tiers": {"t1": 100000, "t2": 500000}})

    app = Starlette(routes=[Route(BARE_PATH, bare)])
    uvicorn.Server(api_config(app, "127.0.0.1", port, limits=_one_address_limits())).run()


def _wait_listening(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


# --------------------------------------------------------------------------- load generator


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:].strip())
    if length:
        await reader.readexactly(length)
    return status


async def _connection(
    port: int, requests: list[bytes], offset: int, start: float, stop: float,
    latencies: list[float], errors: list[int], counts: list[int],
) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    except OSError:
        errors[0] += 1
        return
    i = offset
    try:
        while True:
            now = loop.time()
            if now >= stop:
                break
            writer.write(requests[i % len(requests)])
            i += 1
            status = await _read_response(reader)
            done = loop.time()
            if done >= start and done < stop:
                latencies.append(done - now)
                counts[0] += 1
                if status != 200:
                    errors[0] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        errors[0] += 1
    finally:
        writer.close()


def load(port: int, paths: list[str], headers: dict[str, str], concurrency: int,
         warmup_s: float, duration_s: float, out: Any) -> None:  # fmt: skip
    """The load generator process: ``concurrency`` keep-alive connections, back-to-back."""
    _raise_fd_limit()
    import uvloop

    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    requests = [f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode() for p in paths]

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        start, stop = begin + warmup_s, begin + warmup_s + duration_s
        latencies: list[float] = []
        errors, counts = [0], [0]
        await asyncio.gather(*(
            _connection(port, requests, i, start, stop, latencies, errors, counts)
            for i in range(concurrency)
        ))  # fmt: skip
        return {"latencies": latencies, "errors": errors[0], "count": counts[0],
                "seconds": duration_s}  # fmt: skip

    out.put(uvloop.run(main()))


def _measure(port: int, paths: list[str], headers: dict[str, str], args: Any) -> dict[str, Any]:
    """One round: a fresh load-generator process against the server on ``port``."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=load,
        args=(port, paths, headers, args.concurrency, args.warmup, args.duration, queue),
    )
    proc.start()
    result: dict[str, Any] = queue.get(timeout=args.warmup + args.duration + 300)
    proc.join(30)
    return result


def _run_server(target: Any, args: tuple[Any, ...]) -> Any:
    proc = mp.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _pooled(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median throughput over the rounds; latency percentiles over every request measured."""
    lat = sorted(x for r in rounds for x in r["latencies"])

    def pct(q: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    return {
        "rps": statistics.median(r["count"] / r["seconds"] for r in rounds),
        "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
        "errors": sum(r["errors"] for r in rounds),
        "requests": sum(r["count"] for r in rounds),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=1_000)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per round")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="bare and OWM are measured alternately this many times each, so a "
                        "machine shared with other work affects both alike")  # fmt: skip
    args = parser.parse_args()
    _raise_fd_limit()

    with tempfile.TemporaryDirectory(prefix="owm-api-load-") as workdir:
        bare_port, port = _free_port(), _free_port()
        key_file = os.path.join(workdir, "api.key")
        bare = _run_server(serve_bare, (bare_port,))
        owm = _run_server(serve_owm, (port, workdir, key_file))
        try:
            _wait_listening(bare_port)
            _wait_listening(port)
            auth = {"Authorization": f"Bearer {Path(key_file).read_text()}"}
            bare_rounds, owm_rounds = [], []
            for i in range(args.rounds):
                bare_rounds.append(_measure(bare_port, [BARE_PATH], {}, args))
                owm_rounds.append(_measure(port, READ_MIX, auth, args))
                print(
                    f"round {i + 1}: bare {bare_rounds[-1]['count'] / args.duration:.0f} rps, "
                    f"owm {owm_rounds[-1]['count'] / args.duration:.0f} rps "
                    f"(errors {bare_rounds[-1]['errors']}/{owm_rounds[-1]['errors']})",
                    flush=True,
                )
        finally:
            for proc in (bare, owm):
                proc.terminate()
                proc.join(10)
    ceiling, measured = _pooled(bare_rounds), _pooled(owm_rounds)
    print(f"bare starlette ceiling: {json.dumps({k: round(v, 1) for k, v in ceiling.items()})}")
    print(f"owm read mix:           {json.dumps({k: round(v, 1) for k, v in measured.items()})}")
    ratio = measured["rps"] / ceiling["rps"] if ceiling["rps"] else float("nan")
    ok = measured["errors"] == 0 and measured["p99_ms"] < 2_000 and ratio >= 0.5
    print(f"owm/bare throughput: {ratio:.2f} (target ≥ 0.50); p99 target < 2000 ms; "
          f"errors target 0 → {'PASS' if ok else 'FAIL'}")  # fmt: skip
    print(
        f"concurrency={args.concurrency} rps={measured['rps']:.0f} bare_rps={ceiling['rps']:.0f} "
        f"p50_ms={measured['p50_ms']:.1f} p95_ms={measured['p95_ms']:.1f} "
        f"p99_ms={measured['p99_ms']:.1f} errors={measured['errors']}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
