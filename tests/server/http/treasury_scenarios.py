"""The governance-statement and treasury operations' own statuses for
``test_documented_statuses`` (one scenario each).

The governed service has its own clock, so moving it past comment deadlines leaves the rest of
the world (and its open proposal) where it is."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from owm_adapters.chain.local_ledger import LocalLedger
from owm_adapters.services.governance import GovernanceConfig, GovernanceService
from owm_adapters.services.treasury import TreasuryDesk
from owm_adapters.treasury.wallet import MultisigWallet, sign_with_key
from owm_core.access.ratelimit import RateLimit
from owm_core.identity.envelopes import to_bytes
from owm_core.identity.keys import Identity
from tests.governance_keys import (
    COORDINATOR,
    HOLDER_IDS,
    HOLDER_SECRETS,
    HOLDERS,
    MAINTAINERS,
    ROLES,
    STRANGER,
    statement,
)
from tests.server.harness import StepClock

PAYEE = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
_GOVERNED: dict[int, tuple[GovernanceService, StepClock, dict[str, str]]] = {}


def _governed(probe: Any) -> tuple[GovernanceService, StepClock, dict[str, str]]:
    """A governance service with roles and a funded treasury, served from now on."""
    w = probe.world
    if id(w) not in _GOVERNED:
        clock = StepClock(w.clock.now())
        wallet = MultisigWallet(HOLDERS, "regtest")
        ledger = LocalLedger(Path(tempfile.mkdtemp()) / "ledger.sqlite3")
        ledger.fund(wallet.script_pubkey, 100_000_000)
        service = GovernanceService(
            w.repos, clock, COORDINATOR, ROLES,
            TreasuryDesk(wallet, ledger, w.repos),
            GovernanceConfig(statements_per_signer=RateLimit(limit=8, window_s=3_600)),
        )  # fmt: skip
        _GOVERNED[id(w)] = (service, clock, {})
    service = _GOVERNED[id(w)][0]
    w.serve(statements=service)
    return _GOVERNED[id(w)]


def _body(who: Identity, action: str, pid: str, clock: StepClock, **args: Any) -> Any:
    return json.loads(to_bytes(statement(who, action, pid, clock.now(), **args)))


def _policy(who: Identity, clock: StepClock) -> Any:
    return _body(who, "propose", "", clock, title="t", description="d", type="policy",
                 implementation_plan="p")  # fmt: skip


def _spend(probe: Any) -> str:
    """A treasury proposal with its PSBT prepared (made once per world)."""
    service, clock, made = _governed(probe)
    if "spend" not in made:
        proposal = service.submit(statement(
            MAINTAINERS[0], "propose", "", clock.now(), title="t", description="d",
            type="treasury", implementation_plan="p", requested_sat=20_000_000,
            payout_address=PAYEE,
        )).proposal  # fmt: skip
        pid = proposal.proposal_id
        for holder in HOLDER_IDS:
            service.submit(statement(holder, "ack", pid, clock.now()))
        clock.advance(14 * 86_400)
        service.submit(statement(MAINTAINERS[0], "close", pid, clock.now(), outcome="accepted"))
        service.submit(statement(HOLDER_IDS[0], "psbt_create", pid, clock.now()))
        made["spend"] = pid
    return made["spend"]


def submit_statement(probe: Any) -> None:
    """503 without governance; 201, 400 addressed to another coordinator, 401 forged, 403 no
    role, 404, 409 too early, 429."""
    w = probe.world
    w.serve(statements=None)
    _service, clock, _ = _governed(probe)
    good = _policy(MAINTAINERS[0], clock)
    w.serve(statements=None)
    probe.send(body=good)
    _governed(probe)
    created = probe.send(body=good)
    pid = created.json()["proposal"]["proposal_id"]
    elsewhere = _body(MAINTAINERS[0], "comment", pid, clock, text="?", to=STRANGER.public_key_hex)
    assert probe.send(body=elsewhere).json()["field"] == "body.coordinator"
    forged = {**_policy(MAINTAINERS[0], clock), "signer": MAINTAINERS[1].public_key_hex}
    probe.send(body=forged)
    probe.send(body=_policy(STRANGER, clock))
    probe.send(body=_body(MAINTAINERS[0], "comment", "prop_nobody", clock, text="?"))
    probe.send(body=_body(MAINTAINERS[0], "close", pid, clock, outcome="accepted"))
    for i in range(10):  # the limit counts a key's statements before its role is looked at
        if probe.send(body=_body(STRANGER, "comment", pid, clock, text=str(i))).status_code == 429:
            break


def show_proposal(probe: Any) -> None:
    """200 for a known proposal (the generic probes make the rest)."""
    pid = _spend(probe)
    probe.send(url=probe.url(id=pid), headers=probe.world.api_key())


def treasury_wallet(probe: Any) -> None:
    """503 without a treasury, 200 with one."""
    w = probe.world
    w.serve(statements=GovernanceService(w.repos, w.clock, Identity.from_seed(b"\x3d" * 32)))
    probe.send(headers=w.api_key())
    _governed(probe)
    probe.send(headers=w.api_key())


def export_psbt(probe: Any) -> None:
    """200 for a prepared PSBT."""
    pid = _spend(probe)
    probe.send(url=probe.url(id=pid), headers=probe.world.api_key())


def import_signatures(probe: Any) -> None:
    """201 merged, 404 no PSBT, 409 once broadcast."""
    pid = _spend(probe)
    service, clock, _ = _governed(probe)
    psbt = service.spend(pid).psbt  # type: ignore[union-attr]
    copies = [{"psbt": sign_with_key(psbt, secret)} for secret in HOLDER_SECRETS[:3]]
    for copy in copies:
        probe.send(url=probe.url(id=pid), body=copy)
    probe.send(url=probe.url(id="prop_nobody"), body=copies[0])
    service.submit(statement(MAINTAINERS[1], "execute", pid, clock.now()))
    probe.send(url=probe.url(id=pid), body=copies[0])


TREASURY_SCENARIOS: dict[str, Callable[[Any], None]] = {
    "submitGovernanceStatement": submit_statement,
    "showProposal": show_proposal,
    "treasuryWallet": treasury_wallet,
    "exportPsbt": export_psbt,
    "importSignedPsbt": import_signatures,
}
