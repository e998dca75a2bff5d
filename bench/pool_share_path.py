"""The pool's share path alone, in one thread: CPU time per share (SRS-PERF-11).

Usage:  PYTHONPATH=. .venv/bin/python bench/pool_share_path.py [--shares 20000] [--batch 64]
        [--every-share-a-block] [--profile]

A miner and the pool talk over a socket pair with Noise, as over TCP; the miner's shares are
found and encrypted before the clock starts, then fed to the pool ``--batch`` at a time through
the real :class:`~owm_adapters.pool.connection.NoiseSocket` and
:class:`~owm_adapters.pool.channels.MinerConnection` (decrypt, decode, judge, store, credit,
answer encrypted and written as the pool writes: non-blocking, through a
:class:`~owm_adapters.pool.writer.PoolWriter`). Only the pool's side is timed
(``time.process_time``), so the figure is what one share costs the pool's CPU, without the
miners' hashing or the scheduling of ``bench/pool.py``. The template and targets are those of
``bench/pool.py``: a network target harder than the share target, so shares are shares, not
blocks (``--every-share-a-block``: the regtest template as it is). ``--profile`` prints the pool
side's ``cProfile`` top entries.

The **interpreter floor** is measured in the same process on the same shares: the least Python
work any pool must do per share (:func:`interpreter_floor`) — decrypt the frame's two
ChaCha20-Poly1305 pieces (header and payload, each with its Noise nonce), unpack the
``SubmitSharesStandard`` fields, pack the 80-byte header, double SHA-256 it, check and add it to
the duplicate set, compare it to the target and keep a record of it — on pre-encrypted frames,
with no pool objects, no sockets, answers, storage or credits. Its ratio to the raw sha256d rate
says how far an interpreter can get towards SRS-PERF-11's quarter of that rate at all.

The last line is machine-readable ``key=value`` figures: ``shares``, ``accepted``,
``pool_us_per_share``, ``floor_us_per_share``, ``raw_sha256d_per_s``, ``pool_ratio`` and
``floor_ratio`` (shares per CPU second over the raw rate).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pstats
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from bench.pool import (
    EVERY_SHARE_A_BLOCK,
    HeldChain,
    Registry,
    identity,
    make_pool,
    raw_sha256d_per_s,
)
from owm_adapters.pool.channels import MinerConnection
from owm_adapters.pool.connection import NoiseSocket, accept, connect
from owm_adapters.pool.miner import StratumMiner, Work
from owm_adapters.pool.writer import PoolWriter
from owm_core.identity.pool_login import user_identity
from owm_core.pool import noise, secp256k1, sv2_frames
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.bitcoin import HEADER_STRUCT
from owm_core.pool.sv2_frames import ENCRYPTED_HEADER_BYTES, Frame


def connected_pair(
    static: noise.StaticKey, authority: bytes, writer: PoolWriter
) -> tuple[NoiseSocket, NoiseSocket]:
    """The pool's and the miner's ends of one Noise session over a socket pair; the pool's end
    writes through ``writer``, as the pool's listener does."""
    pool_sock, miner_sock = socket.socketpair()
    ends: list[NoiseSocket] = []

    def respond() -> None:
        ends.append(accept(
            pool_sock, static, os.urandom, timeout_s=10, max_payload=65_535, writer=writer
        ))  # fmt: skip

    responder = threading.Thread(target=respond)
    responder.start()
    now = int(time.time())
    miner_end, _ = connect(miner_sock, authority, os.urandom, now, max_payload=1 << 20)
    responder.join()
    return ends[0], miner_end


def signed_in(
    pool_end: NoiseSocket, miner_end: NoiseSocket, handler: MinerConnection
) -> StratumMiner:
    """The miner with its connection set up and a standard channel open, its work received."""
    miner = StratumMiner(miner_end)

    def exchange(message: sv2.Message) -> sv2.Message:
        miner.send(message)
        handler.on_frames(pool_end.receive_batch())
        return miner.receive()

    exchange(sv2.SetupConnection(0, 2, 2, 0, "bench", 1, "owm", "cpu", "", ""))
    login = user_identity(identity(0), "w", miner_end.handshake_hash)
    opened = exchange(sv2.OpenStandardMiningChannel(1, login, 1e6, b"\xff" * 32))
    assert isinstance(opened, sv2.OpenStandardMiningChannelSuccess), opened
    miner.channel_id, miner.target = opened.channel_id, sv2.target_value(opened.target)
    while miner.work is None:
        miner.receive()
    return miner


def share_frames(miner: StratumMiner, count: int) -> list[Frame]:
    """``count`` shares of the miner's work, found and encoded (sequence numbers 1, 2, …)."""
    work, channel = miner.work, miner.channel_id
    assert work is not None and channel is not None
    frames: list[Frame] = []
    nonce = 0
    while len(frames) < count:
        found, _ = miner.find_nonce(1 << 16, nonce)
        if found is None:
            nonce += 1 << 16
            continue
        nonce = found + 1
        share = sv2.SubmitSharesStandard(
            channel, len(frames) + 1, work.job_id, found, work.ntime, work.version
        )
        frames.append(sv2.encode(share))
    return frames


def feed(
    frames: list[Frame], batch: int, pool_end: NoiseSocket, handler: MinerConnection,
    miner: StratumMiner, profile: cProfile.Profile | None,
) -> tuple[int, float]:  # fmt: skip
    """Send the shares ``batch`` at a time and have the pool handle each batch; the shares
    accepted and the pool side's CPU seconds."""
    spent, accepted = 0.0, 0
    for start in range(0, len(frames), batch):
        chunk = frames[start : start + batch]
        miner.connection.send_batch(chunk)
        began = time.process_time()
        if profile:
            profile.enable()
        handled = 0
        while handled < len(chunk):
            received = pool_end.receive_batch()
            handler.on_frames(received)
            handled += len(received)
        if profile:
            profile.disable()
        spent += time.process_time() - began
        last = start + len(chunk)
        while True:
            answer = miner.receive()
            if isinstance(answer, sv2.SubmitSharesError):
                print("rejected:", answer, file=sys.stderr)
                if answer.sequence_number == last:
                    break
            elif isinstance(answer, sv2.SubmitSharesSuccess):
                accepted += answer.new_submits_accepted_count
                if answer.last_sequence_number == last:
                    break
    return accepted, spent


_NOISE_NONCE = struct.Struct("<4xQ")
_SUBMIT_STANDARD = struct.Struct("<6I")
_FLOOR_ROUNDS = 3


def interpreter_floor(frames: list[Frame], miner: StratumMiner, target: int) -> float:
    """CPU seconds per share of the least Python work any pool does per share (see the module
    docstring), the median of :data:`_FLOOR_ROUNDS` rounds over ``frames``."""
    key = os.urandom(32)
    sender = noise.CipherState(key)
    wire = b"".join(sv2_frames.encrypt_frame(sender, frame) for frame in frames)
    work = miner.work
    assert work is not None
    rounds = [_floor_round(wire, len(frames), key, work, target) for _ in range(_FLOOR_ROUNDS)]
    return statistics.median(rounds) / len(frames)


def _floor_round(wire: bytes, count: int, key: bytes, work: Work, target: int) -> float:
    """One pass of the floor over ``count`` encrypted share frames: its CPU seconds."""
    aead, nonce, pack = ChaCha20Poly1305(key), _NOISE_NONCE.pack, HEADER_STRUCT.pack
    unpack, sha256 = _SUBMIT_STANDARD.unpack, hashlib.sha256
    prev, root, bits = work.prev_hash, work.merkle_root, work.nbits
    seen: set[bytes] = set()
    records = []
    frame_bytes = len(wire) // count
    began = time.process_time()
    n = at = 0
    for _ in range(count):
        header = aead.decrypt(nonce(n), wire[at : at + ENCRYPTED_HEADER_BYTES], b"")
        payload = aead.decrypt(nonce(n + 1), wire[at + ENCRYPTED_HEADER_BYTES : at + frame_bytes],
                               b"")  # fmt: skip
        n, at = n + 2, at + frame_bytes
        if header[2] != sv2.SubmitSharesStandard.MSG_TYPE:
            raise AssertionError("not a share")
        channel, sequence, _job, found, ntime, version = unpack(payload)
        digest = sha256(sha256(pack(version, prev, root, ntime, bits, found)).digest()).digest()
        if digest in seen:
            continue
        seen.add(digest)
        if int.from_bytes(digest, "little") <= target:
            records.append((channel, sequence, digest))
    spent = time.process_time() - began
    assert len(records) == count, "every share is a valid share"
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--every-share-a-block", action="store_true", help=EVERY_SHARE_A_BLOCK)
    args = parser.parse_args()
    authority, secret = os.urandom(32), os.urandom(32)
    ellswift = secp256k1.ellswift_create(secret, os.urandom(32))
    now = int(time.time())
    certificate = noise.sign_certificate(authority, ellswift, now - 60, now + 3600, os.urandom(32))
    static = noise.StaticKey(secret, ellswift, certificate)
    with tempfile.TemporaryDirectory() as tmp:
        chain = HeldChain(Path(tmp) / "chain.db", args.every_share_a_block)
        pool = make_pool(chain)
        writer = PoolWriter(lambda peer, detail: print("slow reader:", detail, file=sys.stderr))
        writer.start()
        pool_end, miner_end = connected_pair(static, secp256k1.xonly_public_key(authority), writer)
        handler = MinerConnection(pool_end, pool, Registry(1))
        miner = signed_in(pool_end, miner_end, handler)
        frames = share_frames(miner, args.shares)
        profile = cProfile.Profile() if args.profile else None
        accepted, spent = feed(frames, args.batch, pool_end, handler, miner, profile)
        writer.stop()
        floor = interpreter_floor(frames, miner, pool.channel_target())
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    report(len(frames), accepted, chain.blocks, spent / len(frames), floor, raw_sha256d_per_s())


def report(shares: int, accepted: int, blocks: int, pool_s: float, floor_s: float,
           raw: float) -> None:  # fmt: skip
    """The figures in words, then as one machine-readable ``key=value`` line."""
    pool_ratio, floor_ratio = 1 / pool_s / raw, 1 / floor_s / raw
    print(f"{accepted} of {shares} shares accepted, {blocks} blocks; pool CPU "
          f"{pool_s * 1e6:.1f} us a share = {1 / pool_s:.0f} shares per CPU second "
          f"= {pool_ratio:.2%} of one core's raw sha256d rate ({raw:.0f}/s)")  # fmt: skip
    print(f"interpreter floor (decrypt, unpack, pack, sha256d, duplicate set, target, record; "
          f"no sockets, answers, storage or credits): {floor_s * 1e6:.2f} us a share = "
          f"{1 / floor_s:.0f} shares per CPU second = {floor_ratio:.2%} of the raw rate; "
          f"SRS-PERF-11 asks 25 % with all of the rest included")  # fmt: skip
    print(f"shares={shares} accepted={accepted} pool_us_per_share={pool_s * 1e6:.2f} "
          f"floor_us_per_share={floor_s * 1e6:.2f} raw_sha256d_per_s={raw:.0f} "
          f"pool_ratio={pool_ratio:.4f} floor_ratio={floor_ratio:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
