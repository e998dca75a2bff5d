"""A merged pull request, end to end (seed 000/001, SRS-LN-08): validated, its archive kept in
the content store, analysed, recorded in a coordinator-signed contribution record stamped with
OpenTimestamps, rewarded over Lightning through the outbox once, and announced on the pull
request with the amount, the payment hash and the proof link — against the local GitHub
stand-in, the embedded ledger and the embedded OTS calendar."""

from __future__ import annotations

import base64
import copy
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from owm_adapters.github.rest import GitHubRest
from owm_adapters.github.standin import GitHubStandIn
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.provenance.embedded import EmbeddedProvenance
from owm_adapters.services.github_app import GitHubApp
from owm_adapters.services.github_contributions import ContributionFlow, ContributionPorts
from owm_adapters.services.payouts import LedgerInvoiceSource, PayoutDispatcher
from owm_adapters.storage.content import FilesystemContentStore
from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.coordination.contributions import (
    ContributionRecord,
    SignedContribution,
    verify_contribution,
)
from owm_core.errors import GitHubUnavailable, SignatureInvalid
from owm_core.governance.github_app import WebhookEvent
from owm_core.identity.keys import Identity
from tests.adapters.github.test_tree_analysis import tarball
from tests.github_app_support import SECRET, credentials, delivery, standin
from tests.github_examples import example
from tests.server.harness import StepClock

T0 = 1_800_000_000
REPO = "Codertocat/Hello-World"
MERGE_SHA = "c" * 40
COORDINATOR = Identity.from_seed(b"\x44" * 32)
pytestmark = pytest.mark.timeout(120)


@attrs.define
class Stage:
    repos: MemoryRepositories
    ledger: SimLedger
    app: GitHubApp
    flow: ContributionFlow
    dispatcher: PayoutDispatcher
    github: GitHubStandIn
    content: FilesystemContentStore
    alice_ln: str
    clock: StepClock

    def post(self, event: str, payload: dict[str, Any]) -> None:
        headers, raw = delivery(event, payload)
        self.app.receive(headers["X-Hub-Signature-256"], headers["X-GitHub-Delivery"], event, raw)

    def held_msat(self) -> int:
        with sqlite3.connect(self.ledger.path) as db:
            row = db.execute("SELECT COALESCE(SUM(balance_b_msat), 0) FROM sim_ln_channels"
                             " WHERE node_b = ?", (self.alice_ln,)).fetchone()
        return int(row[0])


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[Stage]:
    clock = StepClock(T0)
    repos = memory_repositories()
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    treasury_key, alice_ln = ledger.add_node("treasury"), ledger.add_node("alice")
    ledger.open_channel(treasury_key, alice_ln, 10_000_000)
    dispatcher = PayoutDispatcher(repos, ledger.lightning("treasury"), LedgerInvoiceSource(ledger),
                                  clock)  # fmt: skip
    stamping = EmbeddedProvenance(tmp_path / "ots", interval_s=1)
    content = FilesystemContentStore(tmp_path / "content")
    with standin(clock.now) as github:
        github.add_repository(REPO, installation_id=1)
        pull = copy.deepcopy(example("pull_request", "closed")["pull_request"])
        pull.update(merged=True, merge_commit_sha=MERGE_SHA, number=2)
        pull["user"]["login"] = "alice"
        github.repositories[REPO].archives[MERGE_SHA] = tarball({
            "hello/a.py": b"def f(x):\n    return x\n",
            "tests/test_a.py": b"def test_f():\n    assert True\n",
        })  # fmt: skip
        github.add_pull(REPO, pull, files=[  # what the pull request changed
            {"filename": "tests/test_a.py", "status": "added", "additions": 2, "deletions": 0},
            {"filename": "hello/gone.py", "status": "removed", "additions": 0, "deletions": 5},
        ], commits=[{"author": {"login": "alice"}}, {"author": {"login": "bob"}}])
        port = GitHubRest(github.url, credentials(), clock)
        ports = ContributionPorts(port, content, stamping, COORDINATOR, dispatcher)
        flow = ContributionFlow(repos, clock, ports, 1_000, "https://coordinator.example")
        app = GitHubApp(repos, clock, SECRET, port, [flow], content=content)
        yield Stage(repos, ledger, app, flow, dispatcher, github, content, alice_ln, clock)
    dispatcher.stop()
    stamping.stop()


def merged_event(merged: bool = True) -> dict[str, Any]:
    payload = copy.deepcopy(example("pull_request", "closed"))
    payload["installation"] = {"id": 1}
    payload["pull_request"].update(merged=merged, merge_commit_sha=MERGE_SHA, number=2)
    payload["pull_request"]["user"]["login"] = "alice"
    return payload


def payee_comment(stage: Stage, login: str = "alice") -> dict[str, Any]:
    payload = copy.deepcopy(example("issue_comment", "created"))
    payload["installation"] = {"id": 1}
    payload["comment"]["body"] = f"/payee {stage.alice_ln}"
    payload["comment"]["user"]["login"] = login
    return payload


def test_a_merged_pull_request_is_stored_recorded_stamped_rewarded_once_and_announced(
    stage: Stage,
) -> None:
    stage.post("issue_comment", payee_comment(stage))
    assert stage.repos.data_payees.get("github:alice") is not None
    stage.post("pull_request", merged_event())
    stage.post("pull_request", merged_event())  # redelivered: nothing twice
    stage.dispatcher.sweep()
    (payment,) = stage.repos.payments.for_task(f"contribution:{REPO}#2")
    assert payment.settled and stage.held_msat() == payment.amount_msat > 0
    announced = [c for c in stage.github.comments if c.number == 2]
    assert len(announced) == 1
    text = announced[0].body
    assert payment.payment_hash in text and f"{payment.amount_msat // 1_000} sat" in text
    link = text.rsplit("/v1/github/contributions/", 1)[1].split()[0].rstrip(".")
    document = json.loads(stage.content.get(link))
    signed = SignedContribution(
        ContributionRecord(**document["record"]), document["coordinator_key"],
        document["signature"],
    )  # fmt: skip
    verify_contribution(signed, COORDINATOR.public_key_hex)
    assert signed.record.reward_msat == payment.amount_msat and signed.record.author == "alice"
    assert stage.content.has(signed.record.archive_sha256)  # the archive is kept, by digest
    assert base64.b64decode(document["ots_proof"]).startswith(b"\x00OpenTimestamps")
    analysis = document["analysis"]  # of what the pull request changed, not the whole tree
    assert analysis["tests_touched"] == 1 and analysis["files"] == 1
    assert (analysis["files_changed"], analysis["lines_added"], analysis["lines_deleted"]) == (
        2, 2, 5)  # fmt: skip
    assert analysis["authors"] == ["alice", "bob"]


def test_a_tampered_record_does_not_verify_under_the_coordinator_key(stage: Stage) -> None:
    stage.post("issue_comment", payee_comment(stage))
    announced = stage.flow.merged(
        WebhookEvent("d-x", "pull_request", "closed", REPO, 1, T0, "0" * 64,
                     json.dumps(merged_event())),
        merged_event()["pull_request"],
    )
    assert announced is not None
    document = json.loads(stage.content.get(announced.proof_digest))
    document["record"]["reward_msat"] *= 10
    forged = SignedContribution(ContributionRecord(**document["record"]),
                                document["coordinator_key"], document["signature"])
    with pytest.raises(SignatureInvalid):
        verify_contribution(forged, COORDINATOR.public_key_hex)


def test_without_a_payout_identity_the_contribution_is_recorded_but_not_paid(
    stage: Stage,
) -> None:
    stage.post("pull_request", merged_event())
    assert stage.repos.payments.for_task(f"contribution:{REPO}#2") == []
    assert "has linked no payout identity" in stage.github.comments[-1].body


def test_an_unmerged_pull_request_or_a_bad_payee_key_does_nothing_but_say_why(
    stage: Stage,
) -> None:
    stage.post("pull_request", merged_event(merged=False))
    assert stage.github.comments == []
    bad = payee_comment(stage)
    bad["comment"]["body"] = "/payee lnbc1"
    stage.post("issue_comment", bad)
    assert "refused" in stage.github.comments[-1].body
    assert stage.repos.data_payees.get("github:alice") is None


def test_a_merge_seen_while_github_is_unreachable_is_recorded_and_paid_when_it_answers(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage.post("issue_comment", payee_comment(stage))
    github = stage.app.github
    assert github is not None
    real = github.archive

    def down(*_args: object) -> bytes:
        raise GitHubUnavailable("cannot reach GitHub")

    monkeypatch.setattr(github, "archive", down)
    stage.post("pull_request", merged_event())
    assert stage.repos.payments.for_task(f"contribution:{REPO}#2") == []
    monkeypatch.setattr(github, "archive", real)
    stage.clock.advance(5)
    assert stage.app.retry_due() == 1 and stage.app.waiting() == 0
    stage.dispatcher.sweep()
    (payment,) = stage.repos.payments.for_task(f"contribution:{REPO}#2")
    assert payment.settled and stage.held_msat() == payment.amount_msat
