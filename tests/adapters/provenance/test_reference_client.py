"""Byte-compatible with the reference tools both ways: ``opentimestamps-client``'s ``ots``
(a [dev] dependency) stamps at OWM's embedded calendar over HTTP, upgrades from it and verifies
against the embedded chain through its Bitcoin-Core-style JSON-RPC; and a proof OWM produced
verifies with ``ots verify``. Everything runs on loopback: no public calendar is reached."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from owm_adapters.chain.bitcoin_rpc import BitcoinRpc
from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.provenance.ots import OpenTimestamps, describe
from owm_core.provenance.versions import Network
from tests.adapters.provenance.calendar_world import ServedCalendar, served_calendar

OTS = Path(sys.executable).with_name("ots")


def ots(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    """The reference client, its cache kept out of the real home."""
    assert OTS.exists(), "opentimestamps-client is a [dev] dependency: pip install -e '.[dev]'"
    return subprocess.run(
        [str(OTS), "--no-cache", *map(str, args)], capture_output=True, text=True, timeout=60,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, check=False,
    )


def _rpc_url(served: ServedCalendar) -> str:
    # python-bitcoinlib's Proxy sends the URL's credentials; the chain accepts any.
    return served.url.replace("http://", "http://owm:devnet@") + "/"


def owm_proof(served: ServedCalendar, digest: bytes, path: Path) -> Path:
    """A confirmed proof for ``digest`` made by OWM (stamp, the calendar's round, upgrade)."""
    pending = served.provenance.stamp(digest)
    served.provenance.flush()
    path.write_bytes(served.provenance.upgrade(pending))
    return path


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    with served_calendar(tmp_path / "cal") as calendar:
        yield calendar


def test_the_reference_client_stamps_upgrades_and_verifies_against_owms_calendar_and_chain(
    served: ServedCalendar, tmp_path: Path,
) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"owm weights, stamped by the reference client")
    stamped = ots("stamp", "-c", served.url, "-m", "1", target, home=tmp_path)
    assert stamped.returncode == 0, stamped.stderr
    proof = target.with_name("weights.bin.ots")
    assert describe(proof.read_bytes()).pending_uris == (served.url,)

    served.provenance.flush()  # the calendar commits its round in a block of the chain
    upgraded = ots("--no-default-whitelist", "--whitelist", served.url, "upgrade", proof,
                   home=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "Success! Timestamp complete" in upgraded.stderr
    assert describe(proof.read_bytes()).bitcoin_heights == (1,)

    verified = ots("--btc-regtest", "--bitcoin-node", _rpc_url(served), "verify", proof,
                   home=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert "Success! Bitcoin block 1 attests existence as of" in verified.stderr
    # And OWM's own verifier agrees, through the same JSON-RPC.
    rpc = BitcoinRpc(served.url + "/", user="owm", password="devnet")
    digest = hashlib.sha256(target.read_bytes()).digest()
    assert OpenTimestamps(rpc, rpc.network()).verify(proof.read_bytes(), digest).height == 1


def test_a_proof_owm_produced_verifies_with_the_reference_client(
    served: ServedCalendar, tmp_path: Path,
) -> None:
    digest = hashlib.sha256(b"owm-geo@owm-v0.5.0 model digest").digest()
    proof = owm_proof(served, digest, tmp_path / "owm-geo@owm-v0.5.0.ots")
    assert served.provenance.verify(proof.read_bytes(), digest).ok

    info = ots("info", proof, home=tmp_path)
    assert info.returncode == 0 and digest.hex() in info.stdout
    verified = ots("--btc-regtest", "--bitcoin-node", _rpc_url(served), "verify", "-d",
                   digest.hex(), proof, home=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert "Success! Bitcoin block 1 attests existence" in verified.stderr


def test_the_reference_client_refuses_a_proof_whose_block_the_chain_does_not_commit_to(
    served: ServedCalendar, tmp_path: Path,
) -> None:
    proof = owm_proof(served, hashlib.sha256(b"a version").digest(), tmp_path / "v.ots")
    LocalChain(served.provenance.chain_path).mine()  # an unrelated block on top
    other = hashlib.sha256(b"another version").digest()
    verified = ots("--btc-regtest", "--bitcoin-node", _rpc_url(served), "verify", "-d",
                   other.hex(), proof, home=tmp_path)
    assert verified.returncode != 0
    assert "Success!" not in verified.stderr


def test_the_json_rpc_answers_unknown_heights_and_methods_as_bitcoin_core_does(
    served: ServedCalendar,
) -> None:
    endpoints = served.provenance.endpoints()
    rpc = BitcoinRpc(served.url + "/")
    assert rpc.tip_height() == endpoints.chain.tip_height()
    assert rpc.network() is Network.REGTEST
    from owm_core.errors import ChainUnavailable, UnknownBlock

    with pytest.raises(UnknownBlock, match="Block height out of range"):
        rpc.block_hash(99)
    with pytest.raises(UnknownBlock, match="Block not found"):
        rpc.block_header("00" * 32)
    with pytest.raises(ChainUnavailable, match="-32601"):
        rpc.call("submitblock", "00")
