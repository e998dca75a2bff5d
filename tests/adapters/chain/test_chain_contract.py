"""One contract for the chain port, run against the embedded local chain and against the
Bitcoin JSON-RPC adapter talking to a local server that speaks bitcoind's wire format
(JSON-RPC 1.0 and 2.0 envelopes), plus the RPC adapter's own failure modes."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from bitcoin.core import CBlock, b2lx

from owm_adapters.chain.bitcoin_rpc import BitcoinRpc
from owm_adapters.chain.local_chain import (
    REGTEST_BITS,
    LocalChain,
    build_block,
    grind,
    mine_commitment,
)
from owm_core.errors import BlockRejected, ChainUnavailable, UnknownBlock
from owm_core.pool.bitcoin import BlockHeader, compact_to_target, double_sha256
from owm_core.ports.chain import Chain
from owm_core.provenance.versions import Network, check_block_attestation
from tests.fakes.bitcoind_server import FakeBitcoind


class SteppingClock:
    def __init__(self, start: int = 1_700_000_000) -> None:
        self.t = start

    def now(self) -> int:
        self.t += 1
        return self.t

    def monotonic_ms(self) -> int:
        return self.t * 1000


@pytest.fixture(params=["local", "rpc-json-1.0", "rpc-json-2.0"])
def chain(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Chain]:
    local = LocalChain(tmp_path / "chain.db", clock=SteppingClock())
    if request.param == "local":
        yield local
        return
    with FakeBitcoind(local) as server:
        yield BitcoinRpc(server.url, user=server.user, password=server.password,
                         jsonrpc=request.param.removeprefix("rpc-json-"))


def _failing_nonce(block: CBlock) -> CBlock:
    """The same block with a nonce whose hash is above the regtest target."""
    target = compact_to_target(block.nBits)
    prefix = block.get_header().serialize()[:76]
    for nonce in range(1000):
        if int.from_bytes(double_sha256(prefix + struct.pack("<I", nonce)), "little") > target:
            return CBlock(nVersion=block.nVersion, hashPrevBlock=block.hashPrevBlock,
                          hashMerkleRoot=block.hashMerkleRoot, nTime=block.nTime,
                          nBits=block.nBits, nNonce=nonce, vtx=block.vtx)
    raise AssertionError("no failing nonce in 1000")


def test_a_new_chain_starts_at_a_genesis_block_whose_header_hashes_to_its_hash(chain: Chain):
    assert chain.tip_height() == 0
    genesis_hash = chain.block_hash(0)
    header = chain.block_header(genesis_hash)
    assert len(header) == 80
    assert double_sha256(header)[::-1].hex() == genesis_hash


def test_heights_beyond_the_tip_and_unknown_hashes_are_unknown_blocks(chain: Chain):
    with pytest.raises(UnknownBlock):
        chain.block_hash(chain.tip_height() + 1)
    with pytest.raises(UnknownBlock):
        chain.block_header("ab" * 32)


def test_the_template_builds_on_the_tip_at_regtest_difficulty(chain: Chain):
    template = chain.block_template()
    assert template.height == chain.tip_height() + 1
    assert template.previous_block_hash == chain.block_hash(chain.tip_height())
    assert template.bits == REGTEST_BITS
    assert template.coinbase_value_sat == 50 * 100_000_000
    assert template.curtime >= template.mintime


def test_a_mined_commitment_extends_the_chain_with_a_header_that_proves_its_work(chain: Chain):
    root = bytes(range(32))
    height, block = mine_commitment(chain, root)
    assert chain.tip_height() == height == 1
    block_hash = chain.block_hash(height)
    assert block_hash == b2lx(block.GetHash())
    header = chain.block_header(block_hash)
    assert BlockHeader.parse(header).merkle_root == block.hashMerkleRoot
    assert root in block.vtx[0].serialize()
    check = check_block_attestation(height, block.hashMerkleRoot, block_hash, header,
                                    Network.REGTEST)
    assert check.failure is None
    assert check.block_time == block.nTime


def test_a_block_submitted_twice_is_a_duplicate(chain: Chain):
    _height, block = mine_commitment(chain, b"\x01" * 32)
    with pytest.raises(BlockRejected) as rejected:
        chain.submit_block(block.serialize())
    assert rejected.value.reason == "duplicate"
    assert chain.tip_height() == 1


def test_a_block_whose_hash_is_above_its_target_is_rejected_as_high_hash(chain: Chain):
    block = _failing_nonce(build_block(chain.block_template(), b"\x02" * 32))
    with pytest.raises(BlockRejected) as rejected:
        chain.submit_block(block.serialize())
    assert rejected.value.reason == "high-hash"
    assert chain.tip_height() == 0


def test_a_block_with_a_tampered_merkle_root_is_rejected(chain: Chain):
    block = grind(build_block(chain.block_template(), b"\x03" * 32))
    header = BlockHeader.parse(block.get_header().serialize())
    target = compact_to_target(header.bits)
    tampered = next(
        candidate for nonce in range(1000)
        if (candidate := attrs.evolve(header, merkle_root=b"\x07" * 32, nonce=nonce))
        .meets_target(target)
    )
    raw = tampered.serialize() + block.serialize()[80:]
    with pytest.raises(BlockRejected) as rejected:
        chain.submit_block(raw)
    assert rejected.value.reason == "bad-txnmrklroot"


def test_a_block_on_an_unknown_parent_is_rejected(chain: Chain):
    template = chain.block_template()
    orphan_template = type(template)(
        height=template.height, previous_block_hash="cd" * 32, bits=template.bits,
        curtime=template.curtime, version=template.version,
        coinbase_value_sat=template.coinbase_value_sat,
    )
    with pytest.raises(BlockRejected) as rejected:
        chain.submit_block(grind(build_block(orphan_template, None)).serialize())
    assert rejected.value.reason == "prev-blk-not-found"


def test_undecodable_bytes_are_rejected_as_a_decode_failure(chain: Chain):
    with pytest.raises(BlockRejected) as rejected:
        chain.submit_block(b"\x00\x01 not a block")
    assert rejected.value.reason == "block-decode-failed"


# --------------------------------------------------------------------------- local chain only


def test_the_local_chain_keeps_its_blocks_across_a_restart(tmp_path: Path):
    first = LocalChain(tmp_path / "chain.db", clock=SteppingClock())
    mined = [first.mine(bytes([i]) * 32) for i in range(3)]
    again = LocalChain(tmp_path / "chain.db", clock=SteppingClock())
    assert again.tip_height() == 3
    assert [again.block_hash(h) for h in (1, 2, 3)] == mined


def test_mining_a_commitment_at_mainnet_difficulty_is_refused_at_once(tmp_path: Path):
    local = LocalChain(tmp_path / "chain.db", clock=SteppingClock())

    class MainnetTemplates:
        def block_template(self):
            return attrs.evolve(local.block_template(), bits=0x1D00FFFF)

        def submit_block(self, raw_block: bytes) -> None:
            raise AssertionError("nothing can have been mined")

    with pytest.raises(BlockRejected, match="miner"):
        mine_commitment(MainnetTemplates(), b"\x01" * 32)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- RPC adapter only


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeBitcoind]:
    with FakeBitcoind(LocalChain(tmp_path / "chain.db", clock=SteppingClock())) as fake:
        yield fake


def test_a_wrong_password_is_a_one_line_401_error_that_never_shows_the_password(
    server: FakeBitcoind,
):
    rpc = BitcoinRpc(server.url, user=server.user, password="wrong-and-secret")
    with pytest.raises(ChainUnavailable) as failed:
        rpc.tip_height()
    assert "401" in failed.value.message
    assert "wrong-and-secret" not in failed.value.message
    assert "wrong-and-secret" not in repr(rpc)


def test_credentials_in_the_url_work_and_stay_out_of_the_endpoint(server: FakeBitcoind):
    url = server.url.replace("http://", f"http://{server.user}:{server.password}@")
    rpc = BitcoinRpc(url)
    assert rpc.tip_height() == 0
    assert server.password not in rpc.endpoint


def test_the_cookie_file_authenticates(server: FakeBitcoind, tmp_path: Path):
    cookie = tmp_path / ".cookie"
    cookie.write_text(f"{server.user}:{server.password}")
    assert BitcoinRpc(server.url, cookie_file=cookie).tip_height() == 0


def test_an_unreachable_node_is_chain_unavailable(server: FakeBitcoind):
    url = server.url
    server.__exit__(None, None, None)
    with pytest.raises(ChainUnavailable, match="cannot reach bitcoind"):
        BitcoinRpc(url, user="u", password="p", timeout_s=2).tip_height()


def test_the_node_reports_its_network(server: FakeBitcoind):
    rpc = BitcoinRpc(server.url, user=server.user, password=server.password)
    assert rpc.network() is Network.REGTEST


def test_an_unknown_method_is_chain_unavailable_with_its_rpc_code(server: FakeBitcoind):
    rpc = BitcoinRpc(server.url, user=server.user, password=server.password)
    with pytest.raises(ChainUnavailable, match="-32601"):
        rpc.call("getnothing")
