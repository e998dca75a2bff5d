"""The OpenTimestamps adapter end to end on a devnet: stamp → pending → calendar flush →
upgrade → confirmed at a real regtest block, directly and through bitcoind's RPC wire format."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from owm_adapters.chain.bitcoin_rpc import BitcoinRpc
from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.provenance.ots import OpenTimestamps, describe
from owm_adapters.provenance.ots_calendar import Calendar
from owm_core.errors import CalendarUnavailable, ChainUnavailable
from owm_core.provenance.verification import verify_model_version
from owm_core.provenance.versions import FailureReason, Network, ProofStatus, new_model_version
from tests.fakes.bitcoind_server import FakeBitcoind

URL = "http://127.0.0.1:8080/calendar"


def seeded(label: bytes) -> Callable[[int], bytes]:
    state = {"i": 0}

    def randomness(n: int) -> bytes:
        state["i"] += 1
        return hashlib.sha256(label + bytes([state["i"]])).digest()[:n]

    return randomness


class Devnet:
    def __init__(self, base: Path) -> None:
        self.chain = LocalChain(base / "chain.db")
        self.calendar = Calendar(base / "calendar.db", self.chain, url=URL,
                                 randomness=seeded(b"cal"))
        self.ots = OpenTimestamps(self.chain, Network.REGTEST, [self.calendar],
                                  randomness=seeded(b"cli"))


@pytest.fixture
def devnet(tmp_path: Path) -> Devnet:
    return Devnet(tmp_path)


DIGEST = hashlib.sha256(b"owm-v0.4.2").digest()


def test_a_fresh_stamp_is_pending_at_the_calendar(devnet: Devnet):
    proof = devnet.ots.stamp(DIGEST)
    verdict = devnet.ots.verify(proof, DIGEST)
    assert verdict.failure is FailureReason.PENDING_ONLY
    assert verdict.status is ProofStatus.PENDING
    assert verdict.pending_uris == (URL,)


def test_an_upgrade_before_the_flush_changes_nothing(devnet: Devnet):
    proof = devnet.ots.stamp(DIGEST)
    assert devnet.ots.upgrade(proof) == proof


def test_after_the_flush_an_upgrade_confirms_at_the_block_and_its_header_time(devnet: Devnet):
    proof = devnet.ots.stamp(DIGEST)
    committed = devnet.calendar.flush()
    assert committed is not None
    upgraded = devnet.ots.upgrade(proof)
    verdict = devnet.ots.verify(upgraded, DIGEST)
    assert verdict.ok and verdict.status is ProofStatus.CONFIRMED
    assert verdict.height == committed.height == 1
    assert verdict.block_hash == devnet.chain.block_hash(1)
    header_time = int.from_bytes(devnet.chain.block_header(verdict.block_hash)[68:72], "little")
    assert verdict.block_time == header_time
    assert describe(upgraded).bitcoin_heights == (1,)


def test_the_same_proof_verifies_through_bitcoind_json_rpc(devnet: Devnet):
    proof = devnet.ots.stamp(DIGEST)
    devnet.calendar.flush()
    upgraded = devnet.ots.upgrade(proof)
    with FakeBitcoind(devnet.chain) as server:
        rpc = BitcoinRpc(server.url, user=server.user, password=server.password)
        verdict = OpenTimestamps(rpc, rpc.network()).verify(upgraded, DIGEST)
        assert {"getblockhash", "getblockheader"} <= set(server.calls)
    assert verdict.ok and verdict.height == 1


def test_a_regtest_proof_is_bad_pow_when_judged_by_mainnet_rules(devnet: Devnet):
    proof = devnet.ots.stamp(DIGEST)
    devnet.calendar.flush()
    verdict = OpenTimestamps(devnet.chain, Network.MAIN).verify(devnet.ots.upgrade(proof), DIGEST)
    assert verdict.failure is FailureReason.BAD_POW
    assert "proof-of-work limit" in verdict.detail


def test_a_proof_from_another_devnet_names_a_block_this_chain_does_not_have(
    devnet: Devnet, tmp_path: Path
):
    devnet.chain.mine()
    devnet.chain.mine()
    proof = devnet.ots.stamp(DIGEST)
    devnet.calendar.flush()
    upgraded = devnet.ots.upgrade(proof)
    other = LocalChain(tmp_path / "other.db")
    verdict = OpenTimestamps(other, Network.REGTEST).verify(upgraded, DIGEST)
    assert verdict.failure is FailureReason.UNKNOWN_BLOCK
    other.mine()
    other.mine()
    other.mine()
    verdict = OpenTimestamps(other, Network.REGTEST).verify(upgraded, DIGEST)
    assert verdict.failure is FailureReason.BAD_HEADER, "block 3 exists but is another block"


def test_verifying_needs_a_chain_for_bitcoin_attestations(devnet: Devnet):
    proof = devnet.ots.stamp(DIGEST)
    devnet.calendar.flush()
    with pytest.raises(ChainUnavailable):
        OpenTimestamps(None).verify(devnet.ots.upgrade(proof), DIGEST)


def test_stamping_fails_when_no_calendar_accepts(devnet: Devnet):
    class Down:
        url = "http://127.0.0.1:9/down"

        def submit(self, digest: bytes):
            raise OSError("connection refused")

        def get_timestamp(self, commitment: bytes):
            raise KeyError(commitment)

    with pytest.raises(CalendarUnavailable, match="0 of 1"):
        OpenTimestamps(devnet.chain, Network.REGTEST, [Down()]).stamp(DIGEST)
    two = OpenTimestamps(devnet.chain, Network.REGTEST, [Down(), devnet.calendar])
    assert describe(two.stamp(DIGEST)).pending_uris == (URL,)


def test_a_model_version_is_verified_from_its_weights_before_use(devnet: Devnet):
    weights = {"layer.weight": torch.ones(2, 2), "layer.bias": torch.zeros(2)}
    version = new_model_version("owm-v0.4.2", "owm-geo", weights, created_at=1_700_000_000)
    proof = devnet.ots.stamp(version.digest_bytes)
    devnet.calendar.flush()
    proof = devnet.ots.upgrade(proof)
    assert verify_model_version(version, proof, devnet.ots, weights).ok
    tampered = {**weights, "layer.bias": torch.tensor([0.0, 1e-7])}
    verdict = verify_model_version(version, proof, devnet.ots, tampered)
    assert verdict.failure is FailureReason.DIGEST_MISMATCH
