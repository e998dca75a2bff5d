"""``owm gov`` and ``owm treasury psbt``: a treasury proposal taken from submission to a
broadcast transaction with the command line only, against a live coordinator API."""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from embit.psbt import PSBT

from owm_cli import gov as gov_cli
from owm_cli.main import cli
from owm_core.identity.keys import Identity
from owm_server.http.app import create_app
from owm_server.http.serve import ApiServer
from tests.governance_keys import HOLDER_IDS, HOLDER_SECRETS, MAINTAINERS
from tests.server.harness import StepClock
from tests.server.http.governed import PAYEE, governed_services

T0 = 1_800_000_000
DAY = 86_400


def key_file(folder: Path, name: str, secret: bytes) -> str:
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.hex() + "\n")
    return str(path)


def seed_of(identity: Identity) -> bytes:
    return next(bytes([b]) * 32 for b in range(256)
                if Identity.from_seed(bytes([b]) * 32) == identity)  # fmt: skip


class Coordinator:
    def __init__(self, url: str, clock: StepClock, keys: Path, api_key: str) -> None:
        self.url, self.clock, self.keys, self.api_key = url, clock, keys, api_key
        self.maintainer = key_file(keys, "maintainer.key", seed_of(MAINTAINERS[0]))
        self.holders = [key_file(keys, f"holder{i}.key", seed_of(h))
                        for i, h in enumerate(HOLDER_IDS)]  # fmt: skip
        self.multisig = [key_file(keys, f"multisig{i}.key", s)
                         for i, s in enumerate(HOLDER_SECRETS)]  # fmt: skip

    def owm(self, *args: str, ok: bool = True) -> Any:
        result = CliRunner().invoke(cli, [*args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result


@pytest.fixture
def coordinator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Coordinator]:
    clock = StepClock(T0)
    monkeypatch.setattr(gov_cli.time, "time", lambda: float(clock.now()))
    services = governed_services(tmp_path, clock)
    _key, secret = services.access.create_api_key("alice")
    server = ApiServer(create_app(services), "127.0.0.1:0", grace_s=1)  # type: ignore[arg-type]
    server.start()
    keys = tmp_path / "keys"
    keys.mkdir()
    try:
        yield Coordinator(f"http://127.0.0.1:{server.port}", clock, keys, secret)
    finally:
        server.stop(1)


def test_a_treasury_proposal_goes_through_the_whole_flow_on_the_command_line(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    c = coordinator
    api = ["--api", c.url]
    proposed = c.owm("gov", "propose", *api, "--key", c.maintainer, "--title", "Audit",
                     "--description", "An audit of the node daemon.", "--type", "treasury",
                     "--plan", "Pay on delivery.", "--amount-sat", "20000000",
                     "--payout-address", PAYEE, "--json")  # fmt: skip
    pid = json.loads(proposed.output)["proposal"]["proposal_id"]
    c.owm("gov", "comment", pid, *api, "--key", c.holders[0], "--text", "Looks right.")
    for holder in c.holders:
        c.owm("gov", "ack", pid, *api, "--key", holder)
    c.clock.advance(14 * DAY)
    c.owm("gov", "close", pid, *api, "--key", c.maintainer, "--outcome", "accepted")
    unsigned = tmp_path / "audit.psbt"
    c.owm("treasury", "psbt", "create", pid, *api, "--key", c.holders[0], "--out", str(unsigned))
    assert PSBT.from_base64(unsigned.read_text().strip()).tx.vout[0].value == 20_000_000
    signed = []
    for i in (0, 2, 4):
        out = tmp_path / f"audit.signed{i}.psbt"
        c.owm("treasury", "psbt", "sign", str(unsigned), "--key", c.multisig[i], "--out", str(out))
        signed.append(str(out))
    combined = c.owm("treasury", "psbt", "combine", pid, *signed, *api, "--json")
    assert len(json.loads(combined.output)["signers"]) == 3
    sent = c.owm("treasury", "psbt", "broadcast", pid, *api, "--key", c.maintainer)
    assert "broadcast" in sent.output
    shown = c.owm("gov", "show", pid, *api, "--api-key", c.api_key, "--json")
    shown_json = json.loads(shown.output)
    assert shown_json["status"] == "executed" and shown_json["txid"] in sent.output
    listed = c.owm("gov", "list", *api, "--api-key", c.api_key, "--status", "executed")
    assert pid in listed.output
    verified = c.owm("gov", "log", "verify", "--url", c.url, "--json")
    assert json.loads(verified.output)["entries"] == 13


def test_a_refused_statement_is_one_line_naming_the_rule_and_exits_non_zero(
    coordinator: Coordinator,
) -> None:
    c = coordinator
    proposed = c.owm("gov", "propose", "--api", c.url, "--key", c.holders[0], "--title", "t",
                     "--description", "d", "--type", "policy", "--plan", "p")  # fmt: skip
    pid = proposed.output.split()[0]  # holders may propose
    refused = c.owm("gov", "extend", pid, "--api", c.url, "--key", c.holders[0],
                    "--deadline-at", str(T0 + 10 * DAY), ok=False)  # fmt: skip
    assert refused.exit_code != 0
    assert "403" in refused.output and "maintainer" in refused.output
    assert len(refused.output.strip().splitlines()) == 1


def test_log_verify_finds_an_edited_entry_in_an_exported_file(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    c = coordinator
    c.owm("gov", "propose", "--api", c.url, "--key", c.maintainer, "--title", "t",
          "--description", "d", "--type", "policy", "--plan", "p")  # fmt: skip
    with urllib.request.urlopen(f"{c.url}/v1/governance/log") as reply:
        exported = json.loads(reply.read())
    exported["entries"][0]["detail"] = {"forged": True}
    path = tmp_path / "log.json"
    path.write_text(json.dumps(exported))
    bad = c.owm("gov", "log", "verify", "--file", str(path), ok=False)
    assert bad.exit_code == 3 and "BAD entry 0" in bad.output


def test_a_statement_signed_offline_for_the_portals_challenge_is_taken_by_the_portal(
    coordinator: Coordinator,
) -> None:
    """The portal's flow as a user runs it: read the command on the proposal's page, sign
    with `--sign-only --coordinator K --challenge C`, paste the output into the page's form."""
    c = coordinator
    proposed = c.owm("gov", "propose", "--api", c.url, "--key", c.maintainer, "--title", "t",
                     "--description", "d", "--type", "policy", "--plan", "p")  # fmt: skip
    pid = proposed.output.split()[0]
    with urllib.request.urlopen(f"{c.url}/governance/proposals/{pid}") as page:
        found = re.search(r"--coordinator ([0-9a-f]{64}) --challenge ([0-9a-f]{32})",
                          page.read().decode())  # fmt: skip
    assert found is not None
    key, challenge = found.groups()
    unaddressed = c.owm("gov", "comment", pid, "--key", c.maintainer, "--text", "?",
                        "--sign-only", "--challenge", challenge, ok=False)  # fmt: skip
    assert unaddressed.exit_code == 2 and "--coordinator" in unaddressed.output
    signed = c.owm("gov", "comment", pid, "--key", c.maintainer, "--text", "from the portal",
                   "--sign-only", "--coordinator", key, "--challenge", challenge)  # fmt: skip
    assert json.loads(signed.output)["nonce"] == challenge
    assert json.loads(signed.output)["body"]["coordinator"] == key
    form = urllib.parse.urlencode({"proposal_id": pid, "statement": signed.output}).encode()
    with urllib.request.urlopen(f"{c.url}/governance/act", form) as answer:  # follows the 303
        assert "from the portal" in answer.read().decode()
    bad = c.owm("gov", "ack", pid, "--key", c.holders[0], "--sign-only", "--challenge", "xyz",
                ok=False)  # fmt: skip
    assert bad.exit_code != 0 and "32 hex characters" in bad.output
