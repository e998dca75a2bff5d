"""Load test of the Stratum V2 pool: many miners over real sockets with Noise (SRS-PERF-11).

Usage:  PYTHONPATH=. .venv/bin/python bench/pool.py [--concurrency 50] [--duration 5]

What it does, in one run:

1. **Raw rate**: double SHA-256 of 80-byte headers on one core for one second
   (``hashlib``, as the pool and owm-mine hash): ``raw_sha256d_per_s``.
2. **Pool**: a pool in its own process — the real listener, Noise, mining protocol and share
   judge over an in-memory share store — on a template of the embedded regtest chain whose tip
   is held still (blocks are recorded, not appended), so shares keep coming on one template.
   The regtest target is the easiest there is, so on it every share would also be a block and
   go through ``submitblock`` and a template refresh, and end its batch — unlike any real
   network. The held template therefore carries a network target of difficulty 1
   (``nBits`` 0x1d00ffff, a block in about 2**32 hashes) and the pool a share target far easier
   than that (``MiningPool(share_target=…)``, a share in about two hashes): shares are shares,
   none is a block, and every one is judged in full (job, ``ntime``, version, previous hash,
   ``nBits``, duplicate, target) as on a real network. ``--every-share-a-block`` runs on the
   regtest template as it is, for comparison with the figures measured that way before.
3. **Miners**: ``--concurrency`` threads spread over ``--processes`` processes (default 2,
   so the miners' own Python — hashing, encrypting, decoding answers — is not held to one
   GIL and the pool, not the miners, is what runs out first), each its own TCP connection, Noise
   session and standard channel signed in with its own registered identity, hashing until a
   share and submitting it, back to back, for ``--duration`` seconds. Each submit's round trip
   (submit sent → SubmitShares answer read) is a validation latency; it includes the loopback
   and both sides' encryption, so it overstates the pool's own judging time.

With ``--pipeline N`` each miner sends N shares in one write before reading the answers (as
a miner with shares queued does; the pool judges them as one batch and answers the accepted
ones with one aggregated ``SubmitShares.Success``). The pool process's CPU time is measured
too, so the run also says how many shares one CPU second of the pool judges (the miners'
threads share the machine).

Targets: p99 < 100 ms (SRS-PERF-11) and accepted shares per second ≥ a quarter of
``raw_sha256d_per_s``. The last two lines are machine-readable:
``concurrency shares_per_s raw_sha256d_per_s validate_p50_ms validate_p99_ms errors`` and the
values.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import attrs

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.pool.channels import MinerConnection
from owm_adapters.pool.miner import StratumMiner
from owm_adapters.pool.mining import MiningPool
from owm_adapters.pool.server import DEFAULT_MAX_CONNECTIONS, PoolServer
from owm_adapters.storage.memory import memory_repositories
from owm_core.identity.keys import Identity
from owm_core.pool import noise, secp256k1, sv2_messages
from owm_core.pool.bitcoin import BlockTemplate


def identity(number: int) -> Identity:
    return Identity.from_seed(hashlib.sha256(b"bench-miner-%d" % number).digest())


def raw_sha256d_per_s(seconds: float = 1.0) -> float:
    header = bytearray(os.urandom(80))
    count, started = 0, time.perf_counter()
    sha = hashlib.sha256
    while time.perf_counter() - started < seconds:
        for nonce in range(1000):
            header[76:80] = nonce.to_bytes(4, "little")
            sha(sha(header).digest()).digest()
        count += 1000
    return count / (time.perf_counter() - started)


NETWORK_BITS = 0x1D00FFFF
"""The held template's ``nBits``: difficulty 1, a block in about 2**32 hashes (Bitcoin's
genesis difficulty), so in a run of a few seconds no share is a block, as on a real network."""
SHARE_TARGET = (1 << 255) - 1
"""The pool's share target: a share in about two hashes, so the miners' threads spend little
of the machine on hashing and the pool is what is measured."""


EVERY_SHARE_A_BLOCK = "the regtest template as it is: every share is also a block"


class HeldChain:
    """The embedded chain's next template, held still (blocks are counted, not appended), with
    its ``nBits`` replaced by :data:`NETWORK_BITS` unless ``every_share_a_block``."""

    def __init__(self, path: Path, every_share_a_block: bool = False) -> None:
        self.inner = inner = LocalChain(path)
        self.template = inner.block_template()
        if not every_share_a_block:
            self.template = attrs.evolve(self.template, bits=NETWORK_BITS)
        self.every_share_a_block = every_share_a_block
        self.blocks = 0

    def tip_height(self) -> int:
        return self.inner.tip_height()

    def block_hash(self, height: int) -> str:
        return self.inner.block_hash(height)

    def block_header(self, block_hash: str) -> bytes:
        return self.inner.block_header(block_hash)

    def block_template(self) -> BlockTemplate:
        return self.template

    def submit_block(self, raw_block: bytes) -> None:
        self.blocks += 1


def make_pool(chain: HeldChain) -> MiningPool:
    """The pool under test: the held chain, an in-memory share store, its first template, and
    :data:`SHARE_TARGET` (on the regtest target the share target is the network's)."""
    target = {} if chain.every_share_a_block else {"share_target": SHARE_TARGET}
    pool = MiningPool(chain, memory_repositories().shares, lambda: int(time.time()),
                      payout_script=b"\x51", **target)  # type: ignore[arg-type]  # fmt: skip
    pool.refresh()
    return pool


class Registry:
    def __init__(self, count: int) -> None:
        self.keys = {identity(n).node_id: identity(n).public_key_hex for n in range(count)}

    def public_key_of(self, node_id: str) -> str | None:
        return self.keys.get(node_id)


def serve(count: int, ready: Any, stop: Any, every_share_a_block: bool) -> None:
    authority = os.urandom(32)
    secret = os.urandom(32)
    ellswift = secp256k1.ellswift_create(secret, os.urandom(32))
    now = int(time.time())
    certificate = noise.sign_certificate(authority, ellswift, now - 60, now + 3600, os.urandom(32))
    with tempfile.TemporaryDirectory() as tmp:
        pool = make_pool(HeldChain(Path(tmp) / "chain.db", every_share_a_block))
        registry = Registry(count)
        # Every miner dials from 127.0.0.1: the caps must admit them all.
        server = PoolServer(noise.StaticKey(secret, ellswift, certificate),
                            lambda c: MinerConnection(c, pool, registry),
                            max_connections=max(count, DEFAULT_MAX_CONNECTIONS),
                            max_connections_per_ip=count)  # fmt: skip
        host, port = server.start()
        ready.put((host, port, secp256k1.xonly_public_key(authority)))
        cpu = time.process_time()
        stop.wait()
        ready.put(time.process_time() - cpu)  # the pool process's CPU time under load
        server.stop()


def mine(
    number: int, address: tuple[str, int, bytes], until: float, out: list[object], pipeline: int
) -> None:
    latencies: list[float] = []
    accepted = errors = 0
    try:
        miner = StratumMiner.dial(address[0], address[1], address[2], int(time.time()))
        miner.setup(address[0], address[1])
        miner.open_channel(identity(number), f"bench{number}")
        nonce = sequence = 0
        while time.time() < until:
            sent, nonce, sequence = submit_batch(miner, nonce, sequence, pipeline)
            done, failed = await_answers(miner, sent, latencies)
            accepted, errors = accepted + done, errors + failed
        miner.close()
    except Exception as error:  # a failed miner is an error of the run, not a crash of it
        print(f"miner {number}: {error!r}", file=sys.stderr)
        errors += 1
    out.append((accepted, errors, latencies))


def submit_batch(
    miner: StratumMiner, nonce: int, sequence: int, count: int
) -> tuple[dict[int, float], int, int]:
    """Find ``count`` shares and send them back to back (SV2 miners need not wait for each
    answer); when each sequence number was sent, the next nonce and the last sequence."""
    work = miner.work
    assert work is not None and miner.channel_id is not None
    sent: dict[int, float] = {}
    frames = []
    while len(sent) < count:
        found, _ = miner.find_nonce(1 << 16, nonce)
        if found is None:
            nonce += 1 << 16
            continue
        nonce, sequence = found + 1, sequence + 1
        frames.append(sv2_messages.encode(sv2_messages.SubmitSharesStandard(
            miner.channel_id, sequence, work.job_id, found, work.ntime, work.version)))  # fmt: skip
        sent[sequence] = 0.0
    at = time.perf_counter()
    miner.connection.send_batch(frames)  # one write, as a miner with shares queued would
    return dict.fromkeys(sent, at), nonce, sequence


def await_answers(
    miner: StratumMiner, sent: dict[int, float], latencies: list[float]
) -> tuple[int, int]:
    """Read answers until every share sent is accounted for (a Success may cover several:
    all unanswered ones up to its last sequence number); accepted and rejected counts."""
    accepted = errors = 0
    while sent:
        answer = miner.receive()
        now = time.perf_counter()
        if isinstance(answer, sv2_messages.SubmitSharesError):
            sent.pop(answer.sequence_number, None)
            errors += 1
        elif isinstance(answer, sv2_messages.SubmitSharesSuccess):
            covered = [s for s in sent if s <= answer.last_sequence_number]
            covered = covered[: answer.new_submits_accepted_count]
            for sequence in covered:
                latencies.append((now - sent.pop(sequence)) * 1000)
            accepted += len(covered)
    return accepted, errors


def mine_in_process(
    numbers: list[int], address: tuple[str, int, bytes], until: float, pipeline: int, out: Any
) -> None:
    """Miners ``numbers`` as threads of this process until ``until`` (wall clock); their
    results, one list, on ``out``."""
    results: list[object] = []
    threads = [
        threading.Thread(target=mine, args=(n, address, until, results, pipeline))
        for n in numbers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--pipeline", type=int, default=1,
                        help="shares each miner sends before reading the answers")  # fmt: skip
    parser.add_argument("--processes", type=int, default=2,
                        help="processes the miners' threads are spread over (each its own GIL)")
    parser.add_argument("--every-share-a-block", action="store_true", help=EVERY_SHARE_A_BLOCK)
    args = parser.parse_args()
    raw = raw_sha256d_per_s()
    ready: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    stop = mp.Event()
    serving = (args.concurrency, ready, stop, args.every_share_a_block)
    server = mp.Process(target=serve, args=serving, daemon=True)
    server.start()
    address = ready.get(timeout=30)
    until = time.time() + args.duration
    processes = max(1, min(args.processes, args.concurrency))
    numbers = [list(range(args.concurrency))[p::processes] for p in range(processes)]
    answers: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    miners = [
        mp.Process(target=mine_in_process, args=(chunk, address, until, args.pipeline, answers))
        for chunk in numbers
    ]
    started = time.monotonic()
    for process in miners:
        process.start()
    results: list[object] = [r for _ in miners for r in answers.get(timeout=args.duration + 60)]
    for process in miners:
        process.join(10)
    elapsed = time.monotonic() - started
    stop.set()
    pool_cpu_s = ready.get(timeout=30)
    server.join(10)
    accepted = sum(r[0] for r in results)  # type: ignore[index]
    errors = sum(r[1] for r in results)  # type: ignore[index]
    latencies = sorted(x for r in results for x in r[2])  # type: ignore[index]
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else p50
    per_cpu_s = accepted / pool_cpu_s if pool_cpu_s else float("nan")
    print(f"pipeline {args.pipeline} share(s) in flight per miner; {accepted} accepted in "
          f"{elapsed:.1f} s: {accepted / elapsed / raw:.2%} of one core's raw sha256d rate; "
          f"the pool process used {pool_cpu_s:.1f} CPU s: {per_cpu_s:.0f} shares per CPU "
          f"second = {per_cpu_s / raw:.2%} of the raw rate")
    print("concurrency shares_per_s raw_sha256d_per_s validate_p50_ms validate_p99_ms errors")
    print(f"{args.concurrency} {accepted / elapsed:.0f} {raw:.0f} {p50:.2f} {p99:.2f} {errors}")


if __name__ == "__main__":
    main()
