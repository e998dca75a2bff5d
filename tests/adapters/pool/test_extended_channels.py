"""Extended channels (SV2 sections 5.2.2, 5.3.4, 5.3.5, 5.3.12, 5.3.16) over real sockets and
Noise: a miner signed in with its node identity (SRS-POOL-02) gets extranonce bytes of its own
and an extended job (the coinbase cut around the extranonce), rolls the extranonce itself and
submits ``SubmitSharesExtended``; the pool rebuilds the coinbase and header from it and judges
the share like any other (SRS-POOL-06), submitting blocks whose coinbase carries the miner's
extranonce (SRS-POOL-05)."""

from __future__ import annotations

import struct
import time

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.hashing.cpu import CpuHasher
from owm_adapters.pool.channels import EXTRANONCE_SIZE
from owm_adapters.pool.miner import StratumMiner
from owm_core.identity.pool_login import user_identity
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.bitcoin import double_sha256
from tests.adapters.pool.support import AUTHORITY
from tests.adapters.pool.test_mining_protocol import MINER, Pool, frozen, regtest

__all__ = ["frozen", "regtest"]  # the fixtures


class ExtendedMiner:
    """A bare SV2 client with one extended channel, rolling its own extranonce."""

    def __init__(self, pool: Pool, min_extranonce_size: int = 4) -> None:
        self.miner = StratumMiner.dial(*pool.address, AUTHORITY, int(time.time()))
        self.miner.setup("127.0.0.1", pool.address[1])
        login = user_identity(MINER, "proxy", self.miner.connection.handshake_hash)
        self.miner.send(sv2.OpenExtendedMiningChannel(
            1, login, 1e9, b"\xff" * 32, min_extranonce_size))  # fmt: skip
        self.opened = self.receive()
        self.job: sv2.NewExtendedMiningJob | None = None
        self.prev: sv2.SetNewPrevHash | None = None
        if isinstance(self.opened, sv2.OpenExtendedMiningChannelSuccess):
            while self.prev is None:
                self.receive()
        self.sequence = 0

    def receive(self) -> sv2.Message:
        message = sv2.decode(self.miner.connection.receive())
        if isinstance(message, sv2.NewExtendedMiningJob):
            self.job = message
        elif isinstance(message, sv2.SetNewPrevHash):
            self.prev = message
        return message

    def coinbase(self, extranonce: bytes) -> bytes:
        assert self.job is not None and isinstance(
            self.opened, sv2.OpenExtendedMiningChannelSuccess
        )
        return (self.job.coinbase_tx_prefix + self.opened.extranonce_prefix + extranonce
                + self.job.coinbase_tx_suffix)  # fmt: skip

    def find(self, extranonce: bytes) -> int:
        """A nonce meeting the channel's target with this extranonce (SV2 5.3.16's root)."""
        assert self.job is not None and self.prev is not None
        assert isinstance(self.opened, sv2.OpenExtendedMiningChannelSuccess)
        root = double_sha256(self.coinbase(extranonce))  # no Merkle path: coinbase-only blocks
        prefix = struct.pack("<I", self.job.version) + self.prev.prev_hash + root
        prefix += struct.pack("<II", self.prev.min_ntime, self.prev.nbits)
        return CpuHasher().search(prefix, 0, 1 << 12, sv2.target_value(self.opened.target))[0]

    def submit(self, extranonce: bytes, nonce: int, *, standard: bool = False) -> sv2.Message:
        assert self.job is not None and self.prev is not None
        self.sequence += 1
        channel = self.opened.channel_id  # type: ignore[attr-defined]
        fields = (channel, self.sequence, self.job.job_id, nonce, self.prev.min_ntime,
                  self.job.version)  # fmt: skip
        self.miner.send(sv2.SubmitSharesStandard(*fields) if standard
                        else sv2.SubmitSharesExtended(*fields, extranonce))  # fmt: skip
        while True:
            answer = self.receive()
            if isinstance(answer, sv2.SubmitSharesSuccess | sv2.SubmitSharesError):
                return answer


def test_an_extended_channel_gets_its_own_extranonce_space_and_a_coinbase_cut_around_it(
    frozen: Pool,
) -> None:
    client = ExtendedMiner(frozen, min_extranonce_size=4)
    opened = client.opened
    assert isinstance(opened, sv2.OpenExtendedMiningChannelSuccess)
    assert opened.extranonce_size == EXTRANONCE_SIZE and len(opened.extranonce_prefix) == 8
    assert client.job is not None and client.job.merkle_path == ()
    assert client.job.min_ntime is None and client.prev is not None
    assert client.prev.job_id == client.job.job_id
    bigger = ExtendedMiner(frozen, min_extranonce_size=20).opened
    assert isinstance(bigger, sv2.OpenExtendedMiningChannelSuccess)
    assert bigger.extranonce_size == 20  # a bigger request is granted exactly


def test_extended_shares_with_different_extranonces_are_distinct_and_submitted_as_blocks(
    frozen: Pool,
) -> None:
    client = ExtendedMiner(frozen)
    first, second = b"\x01" * EXTRANONCE_SIZE, b"\x02" * EXTRANONCE_SIZE
    nonce_a, nonce_b = client.find(first), client.find(second)
    assert isinstance(client.submit(first, nonce_a), sv2.SubmitSharesSuccess)
    assert isinstance(client.submit(second, nonce_b), sv2.SubmitSharesSuccess)
    assert [s.miner_id for _, s in frozen.store.shares.since(0)] == [MINER.node_id] * 2
    # every regtest share is a block: its coinbase is the one the miner hashed, extranonce and all
    chain = frozen.chain
    submitted = chain.submitted  # type: ignore[attr-defined]
    assert len(submitted) == 2
    coinbase = client.coinbase(first)
    assert submitted[0][80:] == b"\x01" + coinbase
    assert submitted[0][36:68] == double_sha256(coinbase)  # the header's Merkle root


def test_a_resent_extended_share_is_a_duplicate_and_a_wrong_extranonce_is_refused(
    frozen: Pool,
) -> None:
    client = ExtendedMiner(frozen)
    extranonce = b"\x07" * EXTRANONCE_SIZE
    nonce = client.find(extranonce)
    assert isinstance(client.submit(extranonce, nonce), sv2.SubmitSharesSuccess)
    refusals = [
        client.submit(extranonce, nonce),  # the same share again
        client.submit(extranonce[:-1], nonce),  # an extranonce of the wrong size
        client.submit(b"", nonce, standard=True),  # a standard share on an extended channel
        client.submit(b"\x08" * EXTRANONCE_SIZE, nonce),  # the nonce of another extranonce
    ]
    codes = [a.error_code for a in refusals[:3] if isinstance(a, sv2.SubmitSharesError)]
    assert codes == ["duplicate-share", "invalid-extranonce", "invalid-extranonce"]
    # another extranonce is another header: judged on its own hash (on regtest half pass)
    other = refusals[3]
    assert isinstance(other, sv2.SubmitSharesSuccess) or (
        isinstance(other, sv2.SubmitSharesError) and other.error_code == "difficulty-too-low"
    )
    assert frozen.pool.rejections()[MINER.node_id]["invalid-extranonce"] == 2


def test_an_extended_share_on_regtest_extends_the_chain_with_the_miners_coinbase(
    regtest: Pool,
) -> None:
    chain = regtest.chain
    assert isinstance(chain, LocalChain)
    start = chain.tip_height()
    client = ExtendedMiner(regtest)
    extranonce = b"\xab" * EXTRANONCE_SIZE
    coinbase = client.coinbase(extranonce)  # (the block brings a new job with the answer)
    assert isinstance(client.submit(extranonce, client.find(extranonce)), sv2.SubmitSharesSuccess)
    assert chain.tip_height() == start + 1
    assert chain.raw_block(chain.block_hash(start + 1))[81:] == coinbase


def test_an_extranonce_larger_than_the_pool_can_give_is_refused_at_opening(frozen: Pool) -> None:
    client = ExtendedMiner(frozen, min_extranonce_size=25)
    assert client.opened == sv2.OpenMiningChannelError(1, "extranonce-size-too-large")
