"""The contribution flow of a merged pull request, end to end (seed 000/001, SRS-LN-08):
validate → store → record ownership → analyse → reward → announce.

:class:`ContributionFlow` hears the App's stored webhook events:

* ``issue_comment`` ``created`` with ``/payee <node key>``: GitHub vouches (the signed
  delivery) that the commenter is that login, so the key becomes ``github:<login>``'s payout
  identity (the same payees data contributors use);
* ``pull_request`` ``closed`` and merged, on a repository the App is installed on: the pull
  request is read back from GitHub (merged, really), its archive at the merge commit is kept in
  the content store, analysed, recorded in a :class:`~owm_core.coordination.contributions.
  ContributionRecord` signed by the coordinator and stamped with OpenTimestamps (the signed
  record and its proof are kept in the content store too: the proof link), and — when the
  author linked a payout identity — rewarded through the payout outbox under the pull request's
  own payment id (once). A comment on the pull request gives the amount, the payment hash and
  the proof link.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import Any, ClassVar

import attrs

from owm_adapters.github.tree_analysis import analyse_tarball
from owm_adapters.services.payout_sweeps import EnqueuesPayouts
from owm_core.coordination.contributions import (
    ContributionRecord,
    reward_msat,
    sign_record,
)
from owm_core.errors import DomainError, GitHubUnavailable, NotFound
from owm_core.governance.bounty_rules import check_payee
from owm_core.governance.github_app import WebhookEvent
from owm_core.identity.keys import Identity
from owm_core.knowledge.credit_payouts import DataPayee
from owm_core.ports.clock import Clock
from owm_core.ports.content_store import ContentStore
from owm_core.ports.github import GitHub
from owm_core.ports.repositories import Repositories
from owm_core.ports.timestamping import Timestamping

log = logging.getLogger(__name__)

CONTRIBUTION_TASK_PREFIX = "contribution:"


@attrs.frozen
class ContributionPorts:
    """What the flow works through."""

    github: GitHub
    content: ContentStore
    timestamping: Timestamping
    coordinator: Identity
    payouts: EnqueuesPayouts


@attrs.frozen
class Announced:
    """What a merged pull request came to: the stored proof, and the payout if any."""

    proof_digest: str
    reward_msat: int
    payment_hash: str | None


class ContributionFlow:
    """Merged pull requests → stored, recorded, analysed, rewarded, announced."""

    name: ClassVar[str] = "contributions"
    """The name its retries are stored under."""

    def __init__(
        self, repositories: Repositories, clock: Clock, ports: ContributionPorts,
        base_reward_sat: int = 1_000, public_url: str = "",
    ) -> None:  # fmt: skip
        self._repositories = repositories
        self._clock = clock
        self._ports = ports
        self._base_sat = base_reward_sat
        self._public_url = public_url.rstrip("/")

    def __call__(self, event: WebhookEvent) -> None:
        """Act on one stored webhook event (others are ignored)."""
        if (event.event, event.action) == ("issue_comment", "created"):
            self._payee_command(event, event.body())
        elif (event.event, event.action) == ("pull_request", "closed"):
            pull = event.body().get("pull_request") or {}
            if pull.get("merged") and event.installation_id is not None:
                self.merged(event, pull)

    def _payee_command(self, event: WebhookEvent, body: dict[str, Any]) -> None:
        comment = body.get("comment") or {}
        text = str(comment.get("body") or "").strip()
        if not text.lower().startswith("/payee"):
            return
        login = str((comment.get("user") or {}).get("login") or "")
        number = int((body.get("issue") or {}).get("number") or 0)
        try:
            key = check_payee(text.split(maxsplit=1)[1] if " " in text else "")
            self._repositories.data_payees.put(DataPayee(f"github:{login}", key,
                                                         self._clock.now()))
            self._say(event, number, f"@{login}: your contributions are paid to {key}.")
        except DomainError as refused:
            self._say(event, number, f"/payee refused: {refused.message}")

    def merged(self, event: WebhookEvent, pull: dict[str, Any]) -> Announced | None:
        """The whole flow for one merged pull request (see the module docstring)."""
        assert event.installation_id is not None
        number, repository = int(pull.get("number") or 0), event.repository
        task_id = f"{CONTRIBUTION_TASK_PREFIX}{repository}#{number}"
        if self._repositories.payments.for_task(task_id):
            return None  # rewarded already (a redelivery)
        github = self._ports.github
        pr = github.pull_request(event.installation_id, repository, number)
        if not pr.merged:
            return None
        merge_sha = str(pull.get("merge_commit_sha") or pr.head_sha)
        archive = github.archive(event.installation_id, repository, merge_sha)
        archive_digest = self._ports.content.put(archive)
        changes = github.pull_changes(event.installation_id, repository, number)
        analysis = analyse_tarball(
            archive, [pr.author, *changes.authors], only=changes.measured_paths(),
            changes=changes.files,
        )
        payee = self._repositories.data_payees.get(f"github:{pr.author}")
        amount = reward_msat(analysis.score, self._base_sat) if payee is not None else 0
        record = ContributionRecord(
            repository, number, pr.author, merge_sha, archive_digest, analysis.score, amount,
            self._clock.now(),
        )  # fmt: skip
        signed = sign_record(self._ports.coordinator, record)
        proof = self._ports.timestamping.stamp(bytes.fromhex(record.digest()))
        document = {**signed.as_dict(), "analysis": json.loads(analysis.to_json()),
                    "ots_proof": base64.b64encode(proof).decode()}  # fmt: skip
        proof_digest = self._ports.content.put(json.dumps(document, sort_keys=True).encode())
        payment_hash = None
        if payee is not None and amount > 0:
            payment_id = "ct-" + hashlib.sha256(task_id.encode()).hexdigest()[:40]
            paid = self._ports.payouts.enqueue_to(
                payee.ln_pubkey, payment_id, task_id, amount, f"OWM contribution {task_id}"
            )
            payment_hash = paid.payment_hash
        link = f"{self._public_url}/v1/github/contributions/{proof_digest}"
        paid_text = (
            f"{amount // 1_000} sat to @{pr.author} over Lightning, payment hash "
            f"`{payment_hash}`" if payment_hash else
            f"no reward: @{pr.author} has linked no payout identity (comment `/payee <node key>`)"
        )  # fmt: skip
        self._say(event, number, f"Contribution recorded (score {analysis.score}): {paid_text}. "
                  f"Signed record and OpenTimestamps proof: {link}")
        return Announced(proof_digest, amount, payment_hash)

    def _say(self, event: WebhookEvent, number: int, text: str) -> None:
        log.info("github %s#%d: %s", event.repository, number, text)
        if event.installation_id is None or number < 1:
            return
        try:
            self._ports.github.comment(event.installation_id, event.repository, number, text)
        except (GitHubUnavailable, NotFound) as exc:
            log.warning("github %s#%d: comment not posted: %s", event.repository, number,
                        exc.message)
