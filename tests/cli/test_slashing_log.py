"""``owm slashing-log verify`` finds every kind of tampering; ``owm slashing ack`` and
``owm slashing reverse`` sign maintainers' statements."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import attrs
import pytest
from click.testing import CliRunner

from owm_adapters.storage.keystore import create_identity
from owm_adapters.storage.sql import open_repositories
from owm_adapters.storage.sql.engine import sqlite_url
from owm_cli.main import cli
from owm_core.errors import SignatureInvalid
from owm_core.identity import envelopes
from owm_core.identity.chained_log import chain_position
from owm_core.identity.envelopes import MaintainerAcknowledgement, SlashingReversal, open_body
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier
from owm_core.stake.reversals import statements_hash
from owm_core.stake.slashing import (
    SlashingDecision,
    SlashingLogEntry,
    SlashingLogRecord,
    SlashingReason,
    SlashingReversalEntry,
    append_to_log,
)

COORDINATOR = Identity.from_seed(bytes(range(32)))
KEY = COORDINATOR.public_key_hex


def build_log(count: int) -> list[SlashingLogEntry]:
    entries: list[SlashingLogEntry] = []
    for i in range(count):
        node = Identity.from_seed(hashlib.sha256(bytes([i])).digest()).node_id
        decision = SlashingDecision(
            node_id=node,
            channel_id=f"{hashlib.sha256(bytes([i, 1])).hexdigest()}:0",
            tier=Tier.T1,
            reason=SlashingReason.POISONED_UPDATE,
            evidence_hash=hashlib.sha256(bytes([i, 2])).hexdigest(),
            decided_at=1_800_000_000 + i,
            supporters=("a", "b", "c"),
        )
        entries.append(append_to_log(COORDINATOR, entries[-1] if entries else None, decision))
    return entries


def run_verify(tmp_path: Path, dicts: list[dict[str, Any]], *extra: str) -> tuple[int, str]:
    export = tmp_path / "log.json"
    export.write_text(json.dumps({"entries": dicts}))
    result = CliRunner().invoke(
        cli, ["slashing-log", "verify", "--file", str(export), "--coordinator-key", KEY, *extra]
    )
    return result.exit_code, result.output


def test_an_intact_log_verifies_with_count_and_head(tmp_path: Path) -> None:
    log = build_log(4)
    code, out = run_verify(tmp_path, [e.to_dict() for e in log])
    assert code == 0 and out.strip() == f"OK 4 entries, head {log[-1].entry_hash()}"
    code, _ = run_verify(tmp_path, [e.to_dict() for e in log], "--expected-head",
                         log[-1].entry_hash())
    assert code == 0


def test_an_edited_entry_is_found(tmp_path: Path) -> None:
    dicts = [e.to_dict() for e in build_log(4)]
    dicts[2]["reason"] = "fake_proof"
    code, out = run_verify(tmp_path, dicts)
    assert code == 3 and out.startswith("BAD entry 2: signature")


def test_a_removed_entry_is_found(tmp_path: Path) -> None:
    dicts = [e.to_dict() for e in build_log(4)]
    del dicts[1]
    code, out = run_verify(tmp_path, dicts)
    assert code == 3 and out.startswith("BAD entry 1: index")


def test_an_inserted_entry_is_found(tmp_path: Path) -> None:
    log = build_log(4)
    forged = attrs.evolve(log[1], evidence_hash="ab" * 32)
    forged = append_to_log(Identity.from_seed(os.urandom(32)), log[0], SlashingDecision(
        node_id=forged.node_id, channel_id=forged.channel_id, tier=Tier.T1,
        reason=forged.reason, evidence_hash=forged.evidence_hash, decided_at=forged.at,
        supporters=("x",),
    ))
    dicts = [e.to_dict() for e in log]
    dicts.insert(1, forged.to_dict())
    code, out = run_verify(tmp_path, dicts)
    assert code == 3 and out.startswith("BAD entry 1:")


def test_reordered_entries_are_found(tmp_path: Path) -> None:
    dicts = [e.to_dict() for e in build_log(4)]
    dicts[1], dicts[2] = dicts[2], dicts[1]
    code, out = run_verify(tmp_path, dicts)
    assert code == 3 and out.startswith("BAD entry 1: index")


def test_a_truncated_log_is_found_against_the_expected_head(tmp_path: Path) -> None:
    log = build_log(4)
    dicts = [e.to_dict() for e in log[:3]]
    assert run_verify(tmp_path, dicts)[0] == 0  # invisible without a published head
    code, out = run_verify(tmp_path, dicts, "--expected-head", log[-1].entry_hash())
    assert code == 3 and "truncated" in out


def test_a_wrong_coordinator_key_fails_at_the_first_entry(tmp_path: Path) -> None:
    export = tmp_path / "log.json"
    export.write_text(json.dumps({"entries": [e.to_dict() for e in build_log(2)]}))
    other = Identity.from_seed(os.urandom(32)).public_key_hex
    result = CliRunner().invoke(
        cli, ["slashing-log", "verify", "--file", str(export), "--coordinator-key", other]
    )
    assert result.exit_code == 3 and result.output.startswith("BAD entry 0")


def test_the_log_is_read_from_the_coordinator_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'coordinator.sqlite3'}"
    repositories = open_repositories(url)
    for entry in build_log(3):
        repositories.slashing_log.append(entry)
    result = CliRunner().invoke(
        cli, ["slashing-log", "verify", "--database-url", url, "--coordinator-key", KEY]
    )
    assert result.exit_code == 0 and result.output.startswith("OK 3 entries")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    served: list[dict[str, Any]] = [e.to_dict() for e in build_log(150)]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            start, limit = int(query["start"][0]), min(int(query["limit"][0]), 100)
            body = json.dumps({"entries": served[start:start + limit]}).encode()
            self.send_response(200 if url.path == "/v1/network/slashing-log" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", served
    server.shutdown()
    server.server_close()


def test_the_log_is_read_page_by_page_from_the_public_api(
    api: tuple[str, list[dict[str, Any]]],
) -> None:
    base, served = api
    result = CliRunner().invoke(
        cli, ["slashing-log", "verify", "--url", base, "--coordinator-key", KEY]
    )
    assert result.exit_code == 0 and result.output.startswith("OK 150 entries")
    served[120]["channel_id"] = served[121]["channel_id"]
    result = CliRunner().invoke(
        cli, ["slashing-log", "verify", "--url", base, "--coordinator-key", KEY]
    )
    assert result.exit_code == 3 and result.output.startswith("BAD entry 120")


def test_a_maintainer_ack_is_signed_with_the_key_file(tmp_path: Path) -> None:
    maintainer = create_identity(tmp_path / "maintainer.key")
    node = Identity.from_seed(os.urandom(32)).node_id
    evidence = "cd" * 32
    out = tmp_path / "ack.json"
    result = CliRunner().invoke(cli, [
        "slashing", "ack", "--key", str(tmp_path / "maintainer.key"), "--node-id", node,
        "--evidence-hash", evidence, "--reason", "fake_proof", "--out", str(out),
        "--coordinator", KEY,
    ])
    assert result.exit_code == 0, result.output
    envelope = envelopes.from_bytes(out.read_bytes())
    envelopes.verify(envelope, audience=KEY)
    body = open_body(envelope)
    assert envelope.signer == maintainer.public_key_hex
    assert isinstance(body, MaintainerAcknowledgement)
    assert (body.node_id, body.evidence_hash, body.reason) == (node, evidence, "fake_proof")


def test_with_a_config_the_coordinator_key_is_read_from_signing_key_path(tmp_path: Path) -> None:
    coordinator = create_identity(tmp_path / "coordinator.key")
    data = tmp_path / "data"
    config = tmp_path / "coordinator.toml"
    config.write_text(
        f'[coordinator]\ndata_dir = "{data}"\nsigning_key_path = "{tmp_path / "coordinator.key"}"\n'
    )
    repositories = open_repositories(sqlite_url(data))
    entries: list[SlashingLogEntry] = []
    for entry in build_log(2):  # re-sign the same decisions with this coordinator's key
        decision = SlashingDecision(
            node_id=entry.node_id, channel_id=entry.channel_id, tier=Tier.T1,
            reason=entry.reason, evidence_hash=entry.evidence_hash, decided_at=entry.at,
            supporters=("a", "b", "c"),
        )
        entries.append(append_to_log(coordinator, entries[-1] if entries else None, decision))
        repositories.slashing_log.append(entries[-1])
    result = CliRunner().invoke(cli, ["slashing-log", "verify", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"OK 2 entries, head {entries[-1].entry_hash()}"


def test_verify_with_json_gives_the_same_verdict_as_the_text_and_the_same_exit_code(
    tmp_path: Path,
) -> None:
    log = build_log(3)
    code, out = run_verify(tmp_path, [e.to_dict() for e in log], "--json")
    assert code == 0
    assert json.loads(out) == {
        "ok": True, "entries": 3, "head": log[-1].entry_hash(), "reversals": 0,
        "maintainers_checked": False,
    }  # fmt: skip
    dicts = [e.to_dict() for e in log]
    dicts[1]["reason"] = "fake_proof"
    code, text = run_verify(tmp_path, dicts)
    json_code, out = run_verify(tmp_path, dicts, "--json")
    verdict = json.loads(out)
    assert code == json_code == 3 and (verdict["ok"], verdict["index"]) == (False, 1)
    assert text.strip() == f"BAD entry {verdict['index']}: {verdict['problem']}"


REVIEWERS = [Identity.from_seed(bytes([s]) * 32) for s in (7, 8)]


def statements_of(index: int, node_id: str) -> list[envelopes.Envelope]:
    """The two reviewers' statements reversing entry ``index`` of ``node_id`` (deterministic)."""
    body = SlashingReversal(log_index=index, node_id=node_id)
    return sorted(
        (envelopes.seal(m, envelopes.EnvelopeKind.SLASHING_REVERSAL, body, b"\x05" * 16,
                        1_800_000_500, audience=KEY) for m in REVIEWERS),
        key=lambda e: e.signer,
    )  # fmt: skip


def reversal_of(log: list[SlashingLogRecord], index: int, **changes: Any) -> SlashingReversalEntry:
    """A coordinator-signed reversal of ``log[index]`` appended to ``log``, on the reviewers'
    statements (``changes``: what a rogue coordinator would write instead)."""
    slashed = log[index]
    assert isinstance(slashed, SlashingLogEntry)
    fields: dict[str, Any] = {
        "reverses": index, "node_id": slashed.node_id, "channel_id": slashed.channel_id,
        "reason": slashed.reason, "at": log[-1].at,
        "statement_hash": statements_hash(statements_of(index, slashed.node_id)),
        "maintainers": tuple(sorted(m.public_key_hex for m in REVIEWERS)),
        **changes,
    }  # fmt: skip
    return SlashingReversalEntry(**chain_position(log[-1]), **fields).signed(COORDINATOR)


def answer_for(entry: SlashingReversalEntry, statements: list[Any] | None = None) -> Any:
    """What GET /v1/slashing/reversals/{log_index} answers for ``entry``."""
    if statements is None:
        statements = [json.loads(envelopes.to_bytes(e))
                      for e in statements_of(entry.reverses, entry.node_id)]  # fmt: skip
    return {"log_index": entry.reverses, "reversed_by": entry.index, "node_id": entry.node_id,
            "statements": statements, "log_entry": entry.to_dict()}  # fmt: skip


def reversed_log() -> tuple[list[SlashingLogRecord], SlashingReversalEntry]:
    log: list[SlashingLogRecord] = list(build_log(3))
    reversal = reversal_of(log, 1)
    return [*log, reversal], reversal


def run_with_statements(
    tmp_path: Path, log: list[SlashingLogRecord], answers: list[Any], *extra: str
) -> tuple[int, str]:
    path = tmp_path / "statements.json"
    path.write_text(json.dumps(answers))
    return run_verify(tmp_path, [e.to_dict() for e in log], "--statements", str(path), *extra)


def test_a_log_with_a_reversal_verifies_and_a_reversal_of_a_later_entry_is_found(
    tmp_path: Path,
) -> None:
    log, reversal = reversed_log()
    code, out = run_with_statements(tmp_path, log, [answer_for(reversal)])
    assert code == 0 and out.splitlines()[0] == f"OK 4 entries, head {log[-1].entry_hash()}"
    assert "note: reversal signers were not checked against the maintainer keys" in out
    forged = [*log[:3], reversal_of(log[:3], 1, reverses=5)]
    code, out = run_verify(tmp_path, [e.to_dict() for e in forged])
    assert code == 3 and "BAD entry 3: reversal references entry 5" in out
    twice = [*log, reversal_of(log, 1)]
    code, out = run_verify(tmp_path, [e.to_dict() for e in twice])
    assert code == 3 and "BAD entry 4: slashing entry 1 is reversed twice" in out


def test_a_reversal_is_checked_against_the_given_maintainer_keys(tmp_path: Path) -> None:
    log, reversal = reversed_log()
    keys = tmp_path / "maintainers.txt"
    keys.write_text("# core maintainers\n" + "\n".join(m.public_key_hex for m in REVIEWERS))
    code, out = run_with_statements(tmp_path, log, [answer_for(reversal)], "--maintainers",
                                    str(keys))  # fmt: skip
    assert code == 0 and out.strip() == f"OK 4 entries, head {log[-1].entry_hash()}"
    only_one = ["--maintainer", REVIEWERS[0].public_key_hex]
    code, out = run_with_statements(tmp_path, log, [answer_for(reversal)], *only_one)
    assert code == 3
    assert out.strip() == (
        f"BAD entry 3: statement signer {REVIEWERS[1].public_key_hex} is not a maintainer key"
    )


def test_a_reversal_whose_statements_are_missing_tampered_or_dropped_fails(
    tmp_path: Path,
) -> None:
    log, reversal = reversed_log()
    code, out = run_verify(tmp_path, [e.to_dict() for e in log])
    assert (code, out.strip()) == (3, "BAD entry 3: its statements are not available")
    good = answer_for(reversal)["statements"]
    tampered = [{**good[0], "body": {**good[0]["body"], "log_index": 0}}, good[1]]
    code, out = run_with_statements(tmp_path, log, [answer_for(reversal, tampered)])
    assert code == 3 and out.startswith("BAD entry 3: statement by ")
    assert out.strip().endswith("signature does not verify")
    code, out = run_with_statements(tmp_path, log, [answer_for(reversal, good[:1])])
    assert code == 3 and "signers are not the entry's maintainers" in out
    malformed = [{**good[0], "nonce": "zz"}, good[1]]
    code, out = run_with_statements(tmp_path, log, [answer_for(reversal, malformed)])
    assert code == 3 and out.startswith("BAD entry 3: malformed statement: nonce")
    assert len(out.strip().splitlines()) == 1


def test_a_reversal_whose_entry_hash_does_not_match_its_statements_fails(
    tmp_path: Path,
) -> None:
    log: list[SlashingLogRecord] = list(build_log(3))
    rogue = reversal_of(log, 1, statement_hash="ee" * 32)
    code, out = run_with_statements(tmp_path, [*log, rogue], [answer_for(rogue)])
    assert (code, out.strip()) == (
        3, "BAD entry 3: the statements do not hash to the entry's statement_hash",
    )


def store_counted(repositories: Any, reversal: SlashingReversalEntry) -> None:
    """Store the reviewers' statements and record them as the ones ``reversal`` counted, as
    the coordinator does when it appends the entry."""
    statements = statements_of(reversal.reverses, reversal.node_id)
    for statement in statements:
        repositories.slashing_evidence.add_reversal_statement(
            reversal.reverses, statement, 1_800_000_600
        )
    repositories.slashing_evidence.count_reversal_statements(
        [s.signature for s in statements], reversal.index
    )


def later_statement(counted: envelopes.Envelope) -> envelopes.Envelope:
    """Another statement by ``counted``'s signer about the same entry and node, whose signature
    sorts before ``counted``'s (what re-picking the smallest signature would have taken)."""
    signer = next(m for m in REVIEWERS if m.public_key_hex == counted.signer)
    body = open_body(counted)
    for nonce in range(256):
        other = envelopes.seal(signer, envelopes.EnvelopeKind.SLASHING_REVERSAL, body,
                               bytes([nonce]) * 16, 1_800_000_700, audience=KEY)  # fmt: skip
        if other.signature < counted.signature:
            return other
    raise AssertionError("no smaller signature in 256 nonces")


def test_the_statements_are_read_from_the_coordinator_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'coordinator.sqlite3'}"
    repositories = open_repositories(url)
    log, reversal = reversed_log()
    for entry in log:
        repositories.slashing_log.append(entry)
    args = ["slashing-log", "verify", "--database-url", url, "--coordinator-key", KEY,
            "--maintainer", REVIEWERS[0].public_key_hex,
            "--maintainer", REVIEWERS[1].public_key_hex]  # fmt: skip
    missing = CliRunner().invoke(cli, args)
    assert missing.exit_code == 3
    assert missing.output.strip() == "BAD entry 3: its statements are not available"
    store_counted(repositories, reversal)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0 and result.output.startswith("OK 4 entries"), result.output


def test_a_statement_stored_after_the_reversal_does_not_replace_the_one_it_counted(
    tmp_path: Path,
) -> None:
    """A counted maintainer's second, different statement stored after the reversal (a second
    coordinator on the same database that had passed its pre-check): the database still gives
    the statements the entry counted, and the reversal verifies."""
    url = f"sqlite:///{tmp_path / 'coordinator.sqlite3'}"
    repositories = open_repositories(url)
    log, reversal = reversed_log()
    for entry in log:
        repositories.slashing_log.append(entry)
    store_counted(repositories, reversal)
    counted = statements_of(reversal.reverses, reversal.node_id)
    later = later_statement(counted[0])
    assert repositories.slashing_evidence.add_reversal_statement(
        reversal.reverses, later, 1_800_000_800
    )
    args = ["slashing-log", "verify", "--database-url", url, "--coordinator-key", KEY,
            "--maintainer", REVIEWERS[0].public_key_hex,
            "--maintainer", REVIEWERS[1].public_key_hex]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"OK 4 entries, head {reversal.entry_hash()}"


def test_a_maintainer_reversal_is_signed_with_the_key_file(tmp_path: Path) -> None:
    maintainer = create_identity(tmp_path / "maintainer.key")
    node = Identity.from_seed(os.urandom(32)).node_id
    result = CliRunner().invoke(cli, [
        "slashing", "reverse", "--key", str(tmp_path / "maintainer.key"), "--log-index", "4",
        "--node-id", node, "--coordinator", KEY,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    envelope = envelopes.from_bytes(result.stdout.strip().encode())
    envelopes.verify(envelope, audience=KEY)
    body = open_body(envelope)
    assert envelope.signer == maintainer.public_key_hex
    assert body == SlashingReversal(log_index=4, node_id=node)


def test_a_maintainer_statement_is_signed_only_for_a_named_coordinator(tmp_path: Path) -> None:
    """SRS-SEC-03: an acknowledgement or reversal is signed for one coordinator, --coordinator
    (or the one --api answers); another coordinator does not take it, and without either the
    command says which option is missing."""
    create_identity(tmp_path / "maintainer.key")
    node = Identity.from_seed(os.urandom(32)).node_id
    args = ["slashing", "reverse", "--key", str(tmp_path / "maintainer.key"), "--log-index", "4",
            "--node-id", node]  # fmt: skip
    missing = CliRunner().invoke(cli, args)
    assert missing.exit_code == 2 and "--coordinator" in missing.output
    other = Identity.from_seed(b"\x09" * 32).public_key_hex
    signed = CliRunner().invoke(cli, [*args, "--coordinator", other])
    envelope = envelopes.from_bytes(signed.stdout.strip().encode())
    envelopes.verify(envelope, audience=other)
    with pytest.raises(SignatureInvalid):
        envelopes.verify(envelope, audience=KEY)
    bad = CliRunner().invoke(cli, [*args, "--coordinator", "mainnet"])
    assert bad.exit_code == 2 and "--coordinator" in bad.output


def test_a_reversal_naming_no_node_is_refused_on_one_line(tmp_path: Path) -> None:
    create_identity(tmp_path / "maintainer.key")
    result = CliRunner().invoke(cli, [
        "slashing", "reverse", "--key", str(tmp_path / "maintainer.key"), "--log-index", "0",
        "--node-id", "not-a-node",
    ])  # fmt: skip
    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1 and "node_id" in result.output
    negative = CliRunner().invoke(cli, [
        "slashing", "reverse", "--key", str(tmp_path / "maintainer.key"), "--log-index", "-1",
        "--node-id", Identity.from_seed(os.urandom(32)).node_id,
    ])  # fmt: skip
    assert negative.exit_code == 2 and "--log-index" in negative.output


def test_with_a_config_the_signers_are_checked_against_its_maintainer_keys(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    repositories = open_repositories(sqlite_url(data))
    log, reversal = reversed_log()
    for entry in log:
        repositories.slashing_log.append(entry)
    store_counted(repositories, reversal)
    config = tmp_path / "coordinator.toml"
    args = ["slashing-log", "verify", "--config", str(config), "--coordinator-key", KEY]

    def configured(*maintainers: Identity) -> Any:
        keys = ", ".join(f'"{m.public_key_hex}"' for m in maintainers)
        config.write_text(
            f'[coordinator]\ndata_dir = "{data}"\n\n[stake]\nmaintainer_keys = [{keys}]\n'
        )
        return CliRunner().invoke(cli, args)

    both = configured(*REVIEWERS)
    assert both.exit_code == 0, both.output
    assert both.output.strip() == f"OK 4 entries, head {reversal.entry_hash()}"  # no note
    one = configured(REVIEWERS[1])
    assert one.exit_code == 3 and one.output.strip() == (
        f"BAD entry 3: statement signer {REVIEWERS[0].public_key_hex} is not a maintainer key"
    )
