"""The Merkle-aggregating calendar: immediate acknowledgement, one tree per interval, one block
per tree, nothing lost across a restart."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentimestamps.core.notary import BitcoinBlockHeaderAttestation, PendingAttestation

from owm_adapters.chain.local_chain import LocalChain, mine_commitment
from owm_adapters.provenance.ots_calendar import Calendar, IntervalFlusher
from owm_core.errors import BlockRejected
from owm_core.pool.bitcoin import BlockHeader
from owm_core.provenance.versions import Network, check_block_attestation


class FixedClock:
    def __init__(self, t: int = 1_700_000_000) -> None:
        self.t = t

    def now(self) -> int:
        return self.t

    def monotonic_ms(self) -> int:
        return self.t * 1000


def counter_randomness(label: bytes = b"") -> Callable[[int], bytes]:
    state = {"i": 0}

    def randomness(n: int) -> bytes:
        state["i"] += 1
        return hashlib.sha256(label + state["i"].to_bytes(8, "big")).digest()[:n]

    return randomness


def _digest(i: int) -> bytes:
    return hashlib.sha256(f"model-{i}".encode()).digest()


def _commitment_of(timestamp) -> bytes:
    ((msg, attestation),) = list(timestamp.all_attestations())
    assert isinstance(attestation, PendingAttestation)
    return bytes(msg)


def _verify_leaf(chain: LocalChain, calendar: Calendar, commitment: bytes) -> int:
    path = calendar.get_timestamp(commitment)
    ((msg, attestation),) = [
        (m, a) for m, a in path.all_attestations() if isinstance(a, BitcoinBlockHeaderAttestation)
    ]
    block_hash = chain.block_hash(attestation.height)
    check = check_block_attestation(attestation.height, bytes(msg), block_hash,
                                    chain.block_header(block_hash), Network.REGTEST)
    assert check.failure is None, check.detail
    return attestation.height


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def chain(tmp_path: Path, clock: FixedClock) -> LocalChain:
    return LocalChain(tmp_path / "chain.db", clock=clock)


def _calendar(tmp_path: Path, chain: LocalChain, clock: FixedClock, **kw) -> Calendar:
    return Calendar(tmp_path / "calendar.db", chain, url="http://127.0.0.1:8080/calendar",
                    randomness=kw.pop("randomness", counter_randomness()), clock=clock, **kw)


def test_a_submission_is_acknowledged_at_once_with_a_pending_attestation(tmp_path, chain, clock):
    calendar = _calendar(tmp_path, chain, clock)
    acks, latencies = [], []
    for i in range(50):
        started = time.monotonic()
        acks.append(calendar.submit(_digest(i)))
        latencies.append(time.monotonic() - started)
    assert max(latencies) < 1.0, "SRS-PERF-10 allows 30 s; the ack is one SQLite insert"
    for ack in acks:
        ((_msg, attestation),) = list(ack.all_attestations())
        assert attestation == PendingAttestation("http://127.0.0.1:8080/calendar")
    assert calendar.pending_count() == 50
    assert chain.tip_height() == 0, "nothing is committed before the interval"


def test_each_leaf_gets_its_own_nonce_so_equal_digests_get_different_commitments(
    tmp_path, chain, clock
):
    calendar = _calendar(tmp_path, chain, clock)
    first = _commitment_of(calendar.submit(_digest(1)))
    second = _commitment_of(calendar.submit(_digest(1)))
    assert first != second


def test_one_flush_commits_every_pending_digest_in_one_block(tmp_path, chain, clock):
    calendar = _calendar(tmp_path, chain, clock)
    commitments = [_commitment_of(calendar.submit(_digest(i))) for i in range(7)]
    committed = calendar.flush()
    assert committed is not None
    assert (committed.leaves, committed.height, chain.tip_height()) == (7, 1, 1)
    coinbase = chain.raw_block(committed.block_hash)[80:]
    assert committed.root in coinbase
    assert {_verify_leaf(chain, calendar, c) for c in commitments} == {1}
    assert calendar.pending_count() == 0
    assert calendar.flush() is None, "an empty interval mines nothing"
    assert chain.tip_height() == 1


def test_a_pending_commitment_is_not_yet_known_like_a_404_from_a_remote_calendar(
    tmp_path, chain, clock
):
    calendar = _calendar(tmp_path, chain, clock)
    commitment = _commitment_of(calendar.submit(_digest(1)))
    with pytest.raises(KeyError):
        calendar.get_timestamp(commitment)


def test_tick_flushes_only_once_the_interval_has_passed(tmp_path, chain, clock):
    calendar = _calendar(tmp_path, chain, clock, interval_s=600)
    calendar.submit(_digest(1))
    clock.t += 599
    assert calendar.tick() is None
    clock.t += 1
    committed = calendar.tick()
    assert committed is not None and committed.leaves == 1
    calendar.submit(_digest(2))
    assert calendar.tick() is None


def test_pending_submissions_survive_a_restart(tmp_path, chain, clock):
    before = _calendar(tmp_path, chain, clock)
    commitments = [_commitment_of(before.submit(_digest(i))) for i in range(3)]
    after = _calendar(tmp_path, chain, clock)
    assert after.pending_count() == 3
    after.flush()
    assert all(_verify_leaf(chain, after, c) == 1 for c in commitments)
    assert len(after.rounds()) == 1


def test_a_refused_block_leaves_the_submissions_pending(tmp_path, chain, clock):
    def refuse(_root: bytes):
        raise BlockRejected("high-hash", "no luck")

    calendar = _calendar(tmp_path, chain, clock, commit_root=refuse)
    calendar.submit(_digest(1))
    with pytest.raises(BlockRejected):
        calendar.flush()
    assert calendar.pending_count() == 1


def test_the_background_flusher_commits_without_being_asked(tmp_path, chain, clock):
    calendar = _calendar(tmp_path, chain, clock, interval_s=1)
    commitment = _commitment_of(calendar.submit(_digest(1)))
    clock.t += 1
    flusher = IntervalFlusher(calendar, poll_s=0.01).start()
    try:
        deadline = time.monotonic() + 5
        while calendar.pending_count() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        flusher.stop()
    assert _verify_leaf(chain, calendar, commitment) == 1


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(digests=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=20))
def test_every_digest_of_a_round_has_a_path_to_the_same_block(tmp_path_factory, digests):
    base = tmp_path_factory.mktemp("round")
    clock = FixedClock()
    chain = LocalChain(base / "chain.db", clock=clock)
    calendar = _calendar(base, chain, clock)
    commitments = [_commitment_of(calendar.submit(d)) for d in digests]
    committed = calendar.flush()
    assert committed is not None
    heights = {_verify_leaf(chain, calendar, c) for c in commitments}
    assert heights == {committed.height}
    root = BlockHeader.parse(chain.block_header(committed.block_hash)).merkle_root
    assert len(root) == 32


def test_submissions_are_acknowledged_while_a_round_is_being_mined(tmp_path, chain, clock):
    mining, release = threading.Event(), threading.Event()

    def slow_commit(root: bytes):
        mining.set()
        release.wait(5)
        return mine_commitment(chain, root)

    calendar = _calendar(tmp_path, chain, clock, commit_root=slow_commit)
    calendar.submit(_digest(1))
    flushing = threading.Thread(target=calendar.flush)
    flushing.start()
    assert mining.wait(5)
    started = time.monotonic()
    late = _commitment_of(calendar.submit(_digest(2)))
    assert time.monotonic() - started < 1.0
    release.set()
    flushing.join(5)
    assert calendar.pending_count() == 1, "the late digest waits for the next round"
    calendar.flush()
    assert _verify_leaf(chain, calendar, late) == 2
