"""``owm ots``: verifying, inspecting, stamping and upgrading proofs from the command line.

Every behaviour is checked on proofs made here: stamped by a devnet calendar, committed in a
block of the embedded local chain and served over bitcoind's JSON-RPC by the fake node, or
built by hand with the reference library. Only the real-world hello-world proof (LGPL test data
outside this repository, see tests/ots_vectors.py) needs the vectors.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from opentimestamps.core.notary import UnknownAttestation

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.provenance.calendar_http import DEFAULT_CALENDARS, HttpCalendar
from owm_adapters.provenance.ots import OpenTimestamps, parse_proof, serialise_proof
from owm_adapters.provenance.ots_calendar import Calendar
from owm_cli.ots import EXIT_NOT_VERIFIED, EXIT_PENDING, ots
from owm_core.errors import CalendarUnavailable
from owm_core.pool.bitcoin import BlockHeader
from owm_core.provenance.versions import Network
from tests.adapters.provenance.calendar_world import served_calendar
from tests.fakes.bitcoind_server import FakeBitcoind, HeaderChain
from tests.ots_vectors import VECTORS, header_358391, requires_vectors

URL = "http://127.0.0.1:8080/calendar"
ALICE = "http://127.0.0.1:8081/alice"
BOB = "http://127.0.0.1:8082/bob"


class Devnet:
    """A model file, its proof stamped and confirmed at block 1 of a local chain, and a
    second proof left pending (stamped by the same calendar, never upgraded)."""

    def __init__(self, base: Path) -> None:
        self.model = base / "model.safetensors"
        self.model.write_bytes(b"weights of owm-v0.4.2")
        self.digest = hashlib.sha256(self.model.read_bytes()).digest()
        self.chain_file = base / "chain.db"
        self.chain = LocalChain(self.chain_file)
        calendar = Calendar(base / "calendar.db", self.chain, url=URL)
        adapter = OpenTimestamps(self.chain, Network.REGTEST, [calendar])
        self.pending = base / "pending.ots"
        self.pending.write_bytes(adapter.stamp(self.digest))
        committed = calendar.flush()
        assert committed is not None and committed.height == 1
        self.proof = base / "model.safetensors.ots"
        self.proof.write_bytes(adapter.upgrade(self.pending.read_bytes()))
        self.block_hash = self.chain.block_hash(1)
        self.header = BlockHeader.parse(self.chain.block_header(self.block_hash))

    def headers(self) -> HeaderChain:
        """The local chain's headers, as a node would serve them."""
        return HeaderChain({h: self.chain.block_header(self.chain.block_hash(h))
                            for h in range(self.chain.tip_height() + 1)})


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def devnet(tmp_path: Path) -> Devnet:
    return Devnet(tmp_path)


@pytest.fixture
def regtest_node(devnet: Devnet) -> Iterator[FakeBitcoind]:
    with FakeBitcoind(devnet.headers(), chain_name="regtest") as server:
        yield server


def _rpc_args(server: FakeBitcoind) -> list[str]:
    return ["--bitcoin-rpc", server.url, "--rpc-user", server.user]


def _iso(posix: int) -> str:
    return datetime.datetime.fromtimestamp(posix, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(output: str) -> bool:
    return len(output.strip().splitlines()) == 1


# --------------------------------------------------------------------------- verify: confirmed


def test_a_devnet_proof_verifies_against_a_node_over_json_rpc(
    runner: CliRunner, devnet: Devnet, regtest_node: FakeBitcoind
) -> None:
    result = runner.invoke(
        ots, ["verify", str(devnet.proof), "--file", str(devnet.model), *_rpc_args(regtest_node)],
        env={"OWM_BITCOIN_RPC_PASSWORD": regtest_node.password},
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"Success! Bitcoin block 1 ({devnet.block_hash}) "
        f"attests existence as of {_iso(devnet.header.time)}"
    )
    assert {"getblockchaininfo", "getblockhash", "getblockheader"} <= set(regtest_node.calls)


def test_the_verdict_as_json_names_height_time_and_block(
    runner: CliRunner, devnet: Devnet, regtest_node: FakeBitcoind
) -> None:
    result = runner.invoke(
        ots, ["verify", str(devnet.proof), "--digest", devnet.digest.hex(),
              *_rpc_args(regtest_node), "--rpc-password", regtest_node.password, "--json"],
    )
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.output)
    assert verdict["status"] == "confirmed" and verdict["failure"] is None
    assert (verdict["digest"], verdict["height"], verdict["block_time"], verdict["block_hash"]) \
        == (devnet.digest.hex(), 1, devnet.header.time, devnet.block_hash)


def test_a_local_chain_file_is_judged_by_regtest_rules_unless_told_otherwise(
    runner: CliRunner, devnet: Devnet
) -> None:
    args = ["verify", str(devnet.proof), "--file", str(devnet.model),
            "--local-chain", str(devnet.chain_file)]
    verified = runner.invoke(ots, args)
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith(f"Success! Bitcoin block 1 ({devnet.block_hash}) ")
    judged_as_mainnet = runner.invoke(ots, [*args, "--network", "main"])
    assert judged_as_mainnet.exit_code == EXIT_NOT_VERIFIED
    assert judged_as_mainnet.output.startswith("not verified: bad_pow: ")


# --------------------------------------------------------------------------- verify: not verified


def test_a_wrong_digest_is_a_one_line_digest_mismatch_with_exit_3(
    runner: CliRunner, devnet: Devnet, regtest_node: FakeBitcoind
) -> None:
    result = runner.invoke(
        ots, ["verify", str(devnet.proof), "--digest", "00" * 32, *_rpc_args(regtest_node),
              "--rpc-password", regtest_node.password],
    )
    assert result.exit_code == EXIT_NOT_VERIFIED
    assert result.output.startswith("not verified: digest_mismatch: ")
    assert _one_line(result.output)


def test_a_tampered_file_fails_verification(runner: CliRunner, devnet: Devnet) -> None:
    devnet.model.write_bytes(b"weights of owm-v0.4.2?")
    result = runner.invoke(ots, ["verify", str(devnet.proof), "--file", str(devnet.model),
                                 "--local-chain", str(devnet.chain_file)])
    assert result.exit_code == EXIT_NOT_VERIFIED
    assert result.output.startswith("not verified: digest_mismatch: ")


def test_a_proof_from_another_chain_names_a_block_this_chain_does_not_have(
    runner: CliRunner, devnet: Devnet, tmp_path: Path
) -> None:
    LocalChain(tmp_path / "other.db")
    result = runner.invoke(ots, ["verify", str(devnet.proof), "--file", str(devnet.model),
                                 "--local-chain", str(tmp_path / "other.db")])
    assert result.exit_code == EXIT_NOT_VERIFIED
    assert result.output.startswith("not verified: unknown_block: block 1 ")


def test_a_malformed_proof_is_a_one_line_malformed_verdict(
    runner: CliRunner, devnet: Devnet, tmp_path: Path
) -> None:
    raw = bytearray(devnet.proof.read_bytes())
    raw[31] = 2  # the major version byte after the 31-byte magic
    bad = tmp_path / "bad-major-version.ots"
    bad.write_bytes(bytes(raw))
    result = runner.invoke(ots, ["verify", str(bad), "--digest", devnet.digest.hex()])
    assert result.exit_code == EXIT_NOT_VERIFIED
    assert result.output.startswith("not verified: malformed: ")
    assert _one_line(result.output)


def test_a_truncated_proof_checked_against_a_file_is_malformed(
    runner: CliRunner, devnet: Devnet, tmp_path: Path
) -> None:
    truncated = tmp_path / "truncated.ots"
    truncated.write_bytes(devnet.proof.read_bytes()[:-3])
    result = runner.invoke(ots, ["verify", str(truncated), "--file", str(devnet.model),
                                 "--local-chain", str(devnet.chain_file)])
    assert result.exit_code == EXIT_NOT_VERIFIED
    assert result.output.startswith("not verified: malformed: ")


# --------------------------------------------------------------------------- verify: pending


def test_a_pending_proof_exits_4_and_names_its_calendars(
    runner: CliRunner, devnet: Devnet, tmp_path: Path
) -> None:
    chain = LocalChain(tmp_path / "two.db")
    calendars = [Calendar(tmp_path / f"{i}.db", chain, url=url)
                 for i, url in enumerate((BOB, ALICE))]
    proof = tmp_path / "two-calendars.ots"
    proof.write_bytes(OpenTimestamps(chain, Network.REGTEST, calendars).stamp(devnet.digest))
    result = runner.invoke(ots, ["verify", str(proof), "--file", str(devnet.model)])
    assert result.exit_code == EXIT_PENDING
    assert result.output.startswith("not verified: pending_only: ")
    assert ALICE in result.output and BOB in result.output


def test_a_pending_verdict_as_json_lists_the_calendars_that_owe_an_upgrade(
    runner: CliRunner, devnet: Devnet
) -> None:
    result = runner.invoke(ots, ["verify", str(devnet.pending), "--digest", devnet.digest.hex(),
                                 "--json"])
    assert result.exit_code == EXIT_PENDING
    verdict = json.loads(result.output)
    assert (verdict["status"], verdict["failure"], verdict["height"]) == (
        "pending", "pending_only", None)
    assert verdict["pending_calendars"] == [URL]


# --------------------------------------------------------------------------- verify: usage, errors


def test_verify_needs_exactly_one_of_digest_and_file(runner: CliRunner, devnet: Devnet) -> None:
    neither = runner.invoke(ots, ["verify", str(devnet.proof)])
    both = runner.invoke(ots, ["verify", str(devnet.proof), "--file", str(devnet.model),
                               "--digest", devnet.digest.hex()])
    for result in (neither, both):
        assert result.exit_code == 2
        assert "exactly one of --digest" in result.output


def test_verify_asks_for_a_chain_when_the_proof_has_bitcoin_attestations(
    runner: CliRunner, devnet: Devnet
) -> None:
    result = runner.invoke(ots, ["verify", str(devnet.proof), "--file", str(devnet.model)])
    assert result.exit_code == 2
    assert "--bitcoin-rpc" in result.output and "--local-chain" in result.output


def test_verify_takes_a_node_or_a_local_chain_not_both(
    runner: CliRunner, devnet: Devnet, regtest_node: FakeBitcoind
) -> None:
    result = runner.invoke(ots, ["verify", str(devnet.proof), "--file", str(devnet.model),
                                 *_rpc_args(regtest_node), "--local-chain",
                                 str(devnet.chain_file)])
    assert result.exit_code == 2
    assert "not both" in result.output


def test_a_wrong_rpc_password_is_a_one_line_error_without_the_password(
    runner: CliRunner, devnet: Devnet, regtest_node: FakeBitcoind
) -> None:
    result = runner.invoke(
        ots, ["verify", str(devnet.proof), "--file", str(devnet.model), *_rpc_args(regtest_node),
              "--rpc-password", "hunter2-secret"],
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "401" in result.output
    assert "hunter2-secret" not in result.output
    assert _one_line(result.output)


@pytest.mark.parametrize("network", [[], ["--network", "regtest"]], ids=["asked", "given"])
def test_an_unreachable_node_is_a_one_line_error(
    runner: CliRunner, devnet: Devnet, network: list[str]
) -> None:
    with FakeBitcoind(devnet.headers()) as server:
        url = server.url
    result = runner.invoke(ots, ["verify", str(devnet.proof), "--file", str(devnet.model),
                                 "--bitcoin-rpc", url, "--rpc-user", "owm", "--rpc-password",
                                 "x", *network])
    assert result.exit_code == 2
    assert result.output.startswith("error: cannot reach bitcoind")
    assert _one_line(result.output)


def test_a_file_that_is_not_a_local_chain_is_a_one_line_error(
    runner: CliRunner, devnet: Devnet, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    result = runner.invoke(ots, ["verify", str(devnet.proof), "--file", str(devnet.model),
                                 "--local-chain", str(bogus)])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "is not a local chain file" in result.output
    assert _one_line(result.output)


# --------------------------------------------------------------------------- info


def test_info_lists_the_attestations_like_ots_info(runner: CliRunner, devnet: Devnet) -> None:
    result = runner.invoke(ots, ["info", str(devnet.proof)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"File sha256 hash: {devnet.digest.hex()}"
    assert lines[1:3] == [
        f"Attestation: Bitcoin block 1, merkle root {devnet.header.merkle_root[::-1].hex()}",
        f"Attestation: pending at {URL}",
    ]
    assert lines[3] == "Timestamp:"


def test_info_names_an_unknown_notary_as_not_checked(
    runner: CliRunner, devnet: Devnet, tmp_path: Path
) -> None:
    detached = parse_proof(devnet.pending.read_bytes())
    detached.timestamp.attestations.add(UnknownAttestation(b"\x01" * 8, b"other chain"))
    proof = tmp_path / "unknown-notary.ots"
    proof.write_bytes(serialise_proof(detached))
    result = runner.invoke(ots, ["info", str(proof)])
    assert result.exit_code == 0, result.output
    assert "Attestation: UnknownAttestation (not checked)" in result.output.splitlines()


def test_info_on_a_malformed_proof_is_a_one_line_error(
    runner: CliRunner, devnet: Devnet, tmp_path: Path
) -> None:
    truncated = tmp_path / "truncated.ots"
    truncated.write_bytes(devnet.proof.read_bytes()[:40])
    result = runner.invoke(ots, ["info", str(truncated)])
    assert result.exit_code == 2
    assert result.output.startswith("error: not an OpenTimestamps proof")
    assert _one_line(result.output)


# --------------------------------------------------------------------------- stamp, upgrade


def test_a_devnet_stamp_upgrade_verify_round_trip(runner: CliRunner, tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights of owm-v0.4.2")
    chain = str(tmp_path / "chain.db")
    devnet = ["--calendar", str(tmp_path / "cal.db"), "--local-chain", chain]
    stamped = runner.invoke(ots, ["stamp", "--file", str(model), *devnet])
    assert stamped.exit_code == 0, stamped.output
    proof = tmp_path / "model.safetensors.ots"
    verify = ["verify", str(proof), "--file", str(model), "--local-chain", chain]
    assert runner.invoke(ots, verify).exit_code == EXIT_PENDING
    too_early = runner.invoke(ots, ["upgrade", str(proof), *devnet])
    assert too_early.exit_code == EXIT_PENDING
    assert "Still pending" in too_early.output
    upgraded = runner.invoke(ots, ["upgrade", str(proof), *devnet, "--flush"])
    assert upgraded.exit_code == 0, upgraded.output
    assert "Complete: Bitcoin block 1" in upgraded.output
    verified = runner.invoke(ots, verify)
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith("Success! Bitcoin block 1 ")


def test_stamping_a_digest_needs_an_output_file(runner: CliRunner, tmp_path: Path) -> None:
    devnet = ["--calendar", str(tmp_path / "cal.db"), "--local-chain", str(tmp_path / "c.db")]
    refused = runner.invoke(ots, ["stamp", "--digest", "ab" * 32, *devnet])
    assert refused.exit_code == 2
    assert "--digest needs -o/--output" in refused.output
    written = runner.invoke(ots, ["stamp", "--digest", "ab" * 32, "-o",
                                  str(tmp_path / "d.ots"), *devnet])
    assert written.exit_code == 0, written.output
    assert parse_proof((tmp_path / "d.ots").read_bytes()).file_digest == bytes.fromhex("ab" * 32)


def test_stamp_and_upgrade_work_with_remote_calendars_over_http(
    runner: CliRunner, tmp_path: Path
) -> None:
    """A calendar served over the OpenTimestamps HTTP protocol (OWM's own, on loopback: the
    public ones cannot be reached from the tests), then verified through its chain's RPC."""
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights of owm-v0.6.0")
    proof = tmp_path / "model.bin.ots"
    with served_calendar(tmp_path / "cal") as served:
        remote = ["--calendar-url", served.url, "--allow-private-calendars"]
        stamped = runner.invoke(ots, ["stamp", "--file", str(model), *remote])
        assert stamped.exit_code == 0, stamped.output
        assert f"to {served.url}; wrote" in stamped.output
        pending = runner.invoke(ots, ["upgrade", str(proof), *remote])
        assert pending.exit_code == EXIT_PENDING, pending.output
        served.provenance.flush()
        upgraded = runner.invoke(ots, ["upgrade", str(proof), *remote])
        assert upgraded.exit_code == 0, upgraded.output
        assert "Complete: Bitcoin block 1" in upgraded.output
        verified = runner.invoke(ots, ["verify", str(proof), "--file", str(model),
                                       "--bitcoin-rpc", served.url + "/"])
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith("Success! Bitcoin block 1 ")


def test_stamp_without_calendars_goes_to_the_public_ones_and_refuses_loopback_by_default(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def offline(self: HttpCalendar, digest: bytes) -> None:
        asked.append(self.url)
        raise CalendarUnavailable(f"calendar {self.url} is unreachable: offline")

    monkeypatch.setattr(HttpCalendar, "submit", offline)
    model = tmp_path / "m.bin"
    model.write_bytes(b"x")
    refused = runner.invoke(ots, ["stamp", "--file", str(model)])
    assert refused.exit_code == 2, refused.output  # like an unreachable node
    assert sorted(asked) == sorted(DEFAULT_CALENDARS)
    assert "0 of 4 calendars accepted the digest, 2 needed" in refused.output
    monkeypatch.undo()
    loopback = runner.invoke(ots, ["stamp", "--file", str(model), "--calendar-url",
                                   "http://127.0.0.1:9", "-m", "1"])
    assert loopback.exit_code == 2 and "loopback" in loopback.output
    assert not (tmp_path / "m.bin.ots").exists()


# --------------------------------------------------------------------------- real world


@requires_vectors
def test_hello_world_verifies_against_a_mainnet_node_over_json_rpc(runner: CliRunner) -> None:
    with FakeBitcoind(HeaderChain({358391: header_358391()}), chain_name="main") as node:
        result = runner.invoke(
            ots, ["verify", str(VECTORS / "hello-world.txt.ots"),
                  "--file", str(VECTORS / "hello-world.txt"), *_rpc_args(node)],
            env={"OWM_BITCOIN_RPC_PASSWORD": node.password},
        )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "Success! Bitcoin block 358391 "
        "(000000000000000003e892881a8cdcdc117c06d444057c98b6f04a9ee75a2319) "
        "attests existence as of 2015-05-28T15:41:18Z"
    )
