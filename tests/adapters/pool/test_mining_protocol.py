"""The pool's mining protocol end to end over real sockets and Noise: registered nodes sign in
with their identity (SRS-POOL-02), mine on templates of the embedded regtest chain, their
blocks extend the chain with a coinbase paying the pool (SRS-POOL-05); stale, duplicate,
above-target and fabricated shares are answered with the spec's error codes, counted and logged
(SRS-SEC-15, SRS-POOL-06)."""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.hashing.cpu import CpuHasher
from owm_adapters.hashing.torch_sha256d import TorchHasher
from owm_adapters.pool.channels import MinerConnection, RegistryNodeKeys
from owm_adapters.pool.miner import StratumMiner
from owm_adapters.pool.mining import MiningPool
from owm_adapters.pool.server import PoolServer
from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.errors import FrameMalformed
from owm_core.identity.keys import Identity
from owm_core.identity.pool_login import user_identity
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.bitcoin import BlockTemplate, double_sha256
from owm_core.ports.chain import Chain
from tests.adapters.pool.support import AUTHORITY, static_key
from tests.core.nodes.test_registry import make_node

POOL_SCRIPT = bytes.fromhex("0014") + b"\x42" * 20
MINER = Identity.from_seed(b"\x31" * 32)
STRANGER = Identity.from_seed(b"\x32" * 32)


class Registry:
    def __init__(self, *identities: Identity) -> None:
        self.keys = {i.node_id: i.public_key_hex for i in identities}

    def public_key_of(self, node_id: str) -> str | None:
        return self.keys.get(node_id)


class FrozenChain:
    """A chain whose tip never moves: accepted blocks are recorded, the template stays."""

    def __init__(self, inner: LocalChain) -> None:
        self.inner = inner
        self.template = inner.block_template()
        self.submitted: list[bytes] = []

    def tip_height(self) -> int:
        return self.inner.tip_height()

    def block_hash(self, height: int) -> str:
        return self.inner.block_hash(height)

    def block_header(self, block_hash: str) -> bytes:
        return self.inner.block_header(block_hash)

    def block_template(self) -> BlockTemplate:
        return self.template

    def submit_block(self, raw_block: bytes) -> None:
        self.submitted.append(raw_block)


@attrs.frozen
class Pool:
    pool: MiningPool
    address: tuple[str, int]
    chain: Chain
    store: MemoryRepositories


def start_pool(chain: Chain) -> tuple[Pool, PoolServer]:
    store = memory_repositories()
    pool = MiningPool(chain, store.shares, lambda: int(time.time()), payout_script=POOL_SCRIPT)
    pool.refresh()
    registry = Registry(MINER)
    server = PoolServer(static_key(), lambda c: MinerConnection(c, pool, registry))
    return Pool(pool, server.start(), chain, store), server


@pytest.fixture
def regtest(tmp_path: Path) -> Iterator[Pool]:
    served, server = start_pool(LocalChain(tmp_path / "chain.db"))
    yield served
    server.stop()


@pytest.fixture
def frozen(tmp_path: Path) -> Iterator[Pool]:
    served, server = start_pool(FrozenChain(LocalChain(tmp_path / "chain.db")))
    yield served
    server.stop()


def error_of(answer: sv2.Message) -> str:
    assert isinstance(answer, sv2.SubmitSharesError), answer
    return answer.error_code


def miner_on(pool: Pool, identity: Identity = MINER, worker: str = "rig1") -> StratumMiner:
    miner = StratumMiner.dial(*pool.address, AUTHORITY, int(time.time()))
    miner.setup("127.0.0.1", pool.address[1])
    miner.open_channel(identity, worker)
    return miner


def test_a_registered_node_mines_blocks_that_extend_the_regtest_chain_and_pay_the_pool(
    regtest: Pool,
) -> None:
    chain = regtest.chain
    assert isinstance(chain, LocalChain)
    start = chain.tip_height()
    miner = miner_on(regtest)
    result = miner.mine(shares=3)
    assert result.accepted == 3 and not result.rejected
    assert chain.tip_height() == start + 3
    tip = chain.raw_block(chain.block_hash(chain.tip_height()))
    assert POOL_SCRIPT in tip and struct.pack("<q", 50 * 10**8) + bytes([len(POOL_SCRIPT)]) in tip
    shares = regtest.store.shares.since(0)
    assert [s.miner_id for _, s in shares] == [MINER.node_id] * 3
    assert regtest.pool.blocks == [chain.block_hash(h) for h in range(start + 1, start + 4)]
    # on regtest a share is capped at the network difficulty: worth the whole subsidy less 20 %
    assert regtest.pool.earned_msat[MINER.node_id] == 3 * 40 * 10**8 * 1000


def test_a_share_of_the_previous_block_is_stale(regtest: Pool) -> None:
    miner = miner_on(regtest)
    old = miner.work
    assert old is not None
    nonce, _ = miner.find_nonce(1 << 16)
    assert nonce is not None and isinstance(regtest.chain, LocalChain)
    regtest.chain.mine()
    regtest.pool.refresh()
    answer = miner.submit(old, nonce)
    assert error_of(answer) == "stale-share"
    assert regtest.pool.rejected["stale-share"] == 1


def test_a_duplicate_share_is_refused(frozen: Pool) -> None:
    miner = miner_on(frozen)
    work = miner.work
    assert work is not None
    nonce, _ = miner.find_nonce(1 << 16)
    assert nonce is not None
    assert isinstance(miner.submit(work, nonce), sv2.SubmitSharesSuccess)
    assert error_of(miner.submit(work, nonce)) == "duplicate-share"


def test_a_share_above_the_target_is_refused(frozen: Pool) -> None:
    miner = miner_on(frozen)
    work = miner.work
    assert work is not None
    prefix = struct.pack("<I", work.version) + work.prev_hash + work.merkle_root
    prefix += struct.pack("<II", work.ntime, work.nbits)
    nonce = next(
        n for n in range(1000)
        if int.from_bytes(double_sha256(prefix + struct.pack("<I", n)), "little") > miner.target
    )  # fmt: skip
    assert error_of(miner.submit(work, nonce)) == "difficulty-too-low"
    assert frozen.store.shares.since(0) == []


def test_a_flood_of_bad_shares_is_answered_and_counted_share_by_share_but_logged_once(
    frozen: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="owm_adapters.pool")
    miner = miner_on(frozen)
    work = miner.work
    assert work is not None
    for _ in range(50):
        assert error_of(miner.submit(attrs.evolve(work, job_id=999), 0)) == "invalid-job-id"
    assert frozen.pool.rejected["invalid-job-id"] == 50
    lines = [r.getMessage() for r in caplog.records if "reason=invalid-job-id" in r.getMessage()]
    assert len(lines) == 1 and "1 such since the last line" in lines[0]


def test_fabricated_jobs_channels_and_times_are_refused_and_logged(
    frozen: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="owm_adapters.pool")
    miner = miner_on(frozen)
    work = miner.work
    assert work is not None and miner.channel_id is not None
    assert error_of(miner.submit(attrs.evolve(work, job_id=999), 0)) == "invalid-job-id"
    assert error_of(miner.submit(work, 0, ntime=work.ntime - 1)) == "invalid-timestamp"
    miner.send(
        sv2.SubmitSharesStandard(
            miner.channel_id + 1000, 9, work.job_id, 0, work.ntime, work.version
        )
    )
    assert miner.receive() == sv2.SubmitSharesError(
        miner.channel_id + 1000, 9, "invalid-channel-id"
    )
    assert "reason=invalid-job-id" in caplog.text and "reason=invalid-timestamp" in caplog.text
    assert isinstance(frozen.chain, FrozenChain) and frozen.chain.submitted == []


def test_a_share_may_roll_the_versions_bip320_bits_and_no_other(frozen: Pool) -> None:
    miner = miner_on(frozen)
    work = miner.work
    assert work is not None

    def mined(version: int) -> sv2.Message:
        miner.work = attrs.evolve(work, version=version)
        nonce, _ = miner.find_nonce(1 << 16)
        assert nonce is not None
        return miner.submit(miner.work, nonce)

    assert isinstance(mined(work.version ^ 0x1FFFE000), sv2.SubmitSharesSuccess)
    assert isinstance(mined(work.version ^ 0x00002000), sv2.SubmitSharesSuccess)
    for outside in (0x1, 0x1000, 0x20000000, 0x80000000):
        assert error_of(mined(work.version ^ outside)) == "invalid-version"
    assert frozen.pool.rejections()[MINER.node_id]["invalid-version"] == 4


def test_an_unregistered_node_cannot_open_a_channel(regtest: Pool) -> None:
    with pytest.raises(FrameMalformed, match="unknown-user"):
        miner_on(regtest, identity=STRANGER)


def test_a_login_signed_for_another_session_is_refused(regtest: Pool) -> None:
    first = StratumMiner.dial(*regtest.address, AUTHORITY, int(time.time()))
    overheard = user_identity(MINER, "rig1", first.connection.handshake_hash)
    second = StratumMiner.dial(*regtest.address, AUTHORITY, int(time.time()))
    second.setup("127.0.0.1", regtest.address[1])
    second.send(sv2.OpenStandardMiningChannel(7, overheard, 1.0, b"\xff" * 32))
    assert second.receive() == sv2.OpenMiningChannelError(7, "unknown-user")


def test_a_node_id_claimed_with_another_key_is_refused(regtest: Pool) -> None:
    miner = StratumMiner.dial(*regtest.address, AUTHORITY, int(time.time()))
    miner.setup("127.0.0.1", regtest.address[1])
    forged = user_identity(STRANGER, "x", miner.connection.handshake_hash).replace(
        STRANGER.node_id, MINER.node_id
    )
    miner.send(sv2.OpenStandardMiningChannel(3, forged, 1.0, b"\xff" * 32))
    assert miner.receive() == sv2.OpenMiningChannelError(3, "unknown-user")


def test_a_flood_of_refused_logins_and_of_channel_opens_is_answered_each_time_but_logged_once(
    regtest: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="owm_adapters.pool")
    miner = StratumMiner.dial(*regtest.address, AUTHORITY, int(time.time()))
    miner.setup("127.0.0.1", regtest.address[1])
    stranger = user_identity(STRANGER, "x", miner.connection.handshake_hash)
    for request in range(40):
        miner.send(sv2.OpenStandardMiningChannel(request, stranger, 1.0, b"\xff" * 32))
        assert miner.receive() == sv2.OpenMiningChannelError(request, "unknown-user")
    login = user_identity(MINER, "rig1", miner.connection.handshake_hash)
    for request in range(40):
        miner.send(sv2.OpenStandardMiningChannel(request, login, 1.0, b"\xff" * 32))
        opened = miner.receive()
        while not isinstance(opened, sv2.OpenStandardMiningChannelSuccess):
            opened = miner.receive()
        miner.send(sv2.CloseChannel(opened.channel_id, "again"))
    lines = [r.getMessage() for r in caplog.records if "mining channel" in r.getMessage()]
    refused = [line for line in lines if line.startswith("mining channel refused")]
    opens = [line for line in lines if line.startswith(f"mining channel for {MINER.node_id}")]
    assert len(refused) == 1 and len(opens) == 1, lines


@pytest.mark.parametrize(
    ("protocol", "version", "flags", "refusal"),
    [
        (1, 2, 0, (0, "unsupported-protocol")),
        (0, 3, 0, (0, "protocol-version-mismatch")),
        (0, 2, 0b111, (0b10, "unsupported-feature-flags")),  # work selection: not built
    ],
)
def test_setup_for_another_protocol_version_or_work_selection_is_refused(
    regtest: Pool, protocol: int, version: int, flags: int, refusal: tuple[int, str]
) -> None:
    miner = StratumMiner.dial(*regtest.address, AUTHORITY, int(time.time()))
    miner.send(sv2.SetupConnection(protocol, version, version, flags, "h", 1, "v", "", "", ""))
    assert miner.receive() == sv2.SetupConnectionError(*refusal)


def test_setup_asking_for_standard_jobs_and_version_rolling_is_accepted(regtest: Pool) -> None:
    miner = StratumMiner.dial(*regtest.address, AUTHORITY, int(time.time()))
    miner.send(sv2.SetupConnection(0, 2, 2, 0b101, "h", 1, "v", "", "", ""))
    assert miner.receive() == sv2.SetupConnectionSuccess(2, 0)  # no REQUIRES_FIXED_VERSION


def test_a_channel_whose_max_target_is_below_the_pools_target_is_refused(regtest: Pool) -> None:
    miner = StratumMiner.dial(*regtest.address, AUTHORITY, int(time.time()))
    miner.setup("127.0.0.1", regtest.address[1])
    login = user_identity(MINER, "w", miner.connection.handshake_hash)
    miner.send(sv2.OpenStandardMiningChannel(4, login, 1.0, b"\x00" * 32))
    assert miner.receive() == sv2.OpenMiningChannelError(4, "max-target-out-of-range")


def test_a_new_difficulty_reaches_open_channels_as_set_target(frozen: Pool) -> None:
    miner = miner_on(frozen)
    frozen.pool.set_share_difficulty(2)
    while not isinstance(miner.receive(), sv2.SetTarget):
        pass
    assert miner.target == frozen.pool.channel_target()


def test_a_block_found_elsewhere_reaches_miners_as_new_work_through_the_poller(
    regtest: Pool,
) -> None:
    miner = miner_on(regtest)
    before = miner.work
    stop = threading.Event()
    poller = threading.Thread(target=regtest.pool.poll, args=(stop, 0.05), daemon=True)
    poller.start()
    try:
        assert isinstance(regtest.chain, LocalChain)
        regtest.chain.mine()
        while miner.work == before:
            miner.receive()
    finally:
        stop.set()
    assert miner.work is not None and before is not None
    assert miner.work.prev_hash != before.prev_hash


def test_the_registry_adapter_knows_registered_nodes_only() -> None:
    store = memory_repositories()
    keys = RegistryNodeKeys(store.nodes)
    assert keys.public_key_of(MINER.node_id) is None
    store.nodes.add(make_node(node_id=MINER.node_id, public_key=MINER.public_key_hex))
    assert keys.public_key_of(MINER.node_id) == MINER.public_key_hex


def test_two_writers_on_one_chain_file_racing_for_a_height_the_loser_is_refused_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from owm_adapters.chain.local_chain import build_block, grind
    from owm_core.errors import BlockRejected

    path = tmp_path / "chain.db"
    first, second = LocalChain(path), LocalChain(path)  # e.g. the calendar's and the pool's
    template = first.block_template()
    old_tip = (template.height - 1, template.previous_block_hash)
    block_a = grind(build_block(template, b"a" * 32))
    block_b = grind(build_block(attrs.evolve(template, curtime=template.curtime + 60), b"b" * 32))
    first.submit_block(block_a.serialize())
    # the second writer checked its block against the old tip before the first one's insert
    monkeypatch.setattr(second, "_tip", lambda: old_tip)
    with pytest.raises(BlockRejected, match="taken meanwhile"):
        second.submit_block(block_b.serialize())
    assert first.tip_height() == template.height


def test_shares_sent_together_are_answered_together_errors_one_by_one(frozen: Pool) -> None:
    miner = miner_on(frozen)
    work = miner.work
    assert work is not None and miner.channel_id is not None
    nonces: list[int] = []
    start = 0
    while len(nonces) < 3:
        nonce, _ = miner.find_nonce(1 << 16, start)
        assert nonce is not None
        nonces.append(nonce)
        start = nonce + 1
    sent = [(1, work.job_id, nonces[0]), (2, work.job_id, nonces[1]),
            (3, work.job_id, nonces[0]),  # the first one again
            (4, work.job_id, nonces[2]), (5, 999, nonces[2])]  # fmt: skip
    miner.connection.send_batch([sv2.encode(sv2.SubmitSharesStandard(
        miner.channel_id, seq, job, nonce, work.ntime, work.version)) for seq, job, nonce in sent
    ])  # one write, as a miner with queued shares sends them  # fmt: skip
    answers = [miner.receive() for _ in range(3)]
    errors = {a.sequence_number: a.error_code for a in answers
              if isinstance(a, sv2.SubmitSharesError)}  # fmt: skip
    assert errors == {3: "duplicate-share", 5: "invalid-job-id"}
    (success,) = [a for a in answers if isinstance(a, sv2.SubmitSharesSuccess)]
    assert (success.last_sequence_number, success.new_submits_accepted_count) == (4, 3)
    assert len(frozen.store.shares.since(0)) == 3


def test_a_miner_hashing_with_torch_gets_its_shares_accepted_as_blocks(regtest: Pool) -> None:
    # SRS-POOL-03: the GPU port's tensor hasher (on the CPU here; on CUDA where torch sees one)
    chain = regtest.chain
    assert isinstance(chain, LocalChain)
    start = chain.tip_height()
    miner = StratumMiner.dial(*regtest.address, AUTHORITY, int(time.time()), hasher=TorchHasher())
    miner.setup("127.0.0.1", regtest.address[1])
    miner.open_channel(MINER, "gpu0")
    result = miner.mine(shares=3)
    assert result.accepted == 3 and not result.rejected
    assert chain.tip_height() == start + 3
    assert [s.miner_id for _, s in regtest.store.shares.since(0)] == [MINER.node_id] * 3


class CountingHasher(CpuHasher):
    def __init__(self) -> None:
        self.searches: list[tuple[int, int]] = []

    def search(self, prefix: bytes, start: int, count: int, target: int) -> list[int]:
        self.searches.append((start, count))
        return super().search(prefix, start, count, target)


def test_a_search_that_finds_several_shares_submits_them_all_without_hashing_again(
    frozen: Pool,
) -> None:
    hasher = CountingHasher()
    miner = StratumMiner.dial(*frozen.address, AUTHORITY, int(time.time()), hasher=hasher)
    miner.setup("127.0.0.1", frozen.address[1])
    miner.open_channel(MINER, "rig1")
    result = miner.mine(shares=5)
    assert result.accepted == 5 and not result.rejected
    # a regtest share needs ~2 hashes, so one search of at least 64 nonces holds all five
    assert len(hasher.searches) == 1 and hasher.searches[0][1] >= 64
    assert len({share.hash_hex for _, share in frozen.store.shares.since(0)}) == 5
