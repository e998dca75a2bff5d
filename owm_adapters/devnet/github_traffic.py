"""The devnet's GitHub: a local stand-in speaking GitHub's REST shapes, and sample activity on
a sample repository that goes through the coordinator's GitHub App like real deliveries do.

Every round (:meth:`GitHubTraffic.round`) plays one contribution in GitHub's webhook shapes,
signed with the devnet's webhook secret and posted to ``POST /v1/github/webhook``: the
contributor links a payout identity (``/payee``, first round only), a maintainer opens a
bounty on a new issue (``/bounty``), the contributor claims it (``/claim``), and a pull request
by the contributor that fixes the issue is merged — its archive served by the stand-in — which
closes the issue (delivered first, as GitHub may). The
coordinator pays the bounty and the contribution reward over the embedded Lightning ledger
through its outbox and comments on the pull request; the comments the stand-in received are
the round's account in ``traffic.json`` (``owm devnet status``).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from owm_adapters.files import private_directory, write_private_text
from owm_adapters.github.standin import GitHubStandIn
from owm_core.governance.github_app import webhook_signature

if TYPE_CHECKING:
    from owm_adapters.devnet.layout import DevnetLayout

DEVNET_APP_ID = "1"
REPOSITORY = "owm-devnet/sample"
INSTALLATION = 1
MAINTAINER = "devnet-maintainer"
CONTRIBUTOR = "devnet-contributor"
BOUNTY_SAT = 100

Post = Callable[[dict[str, str], bytes], int]
"""``(headers, raw body) → HTTP status`` of one webhook delivery."""


def github_files(layout: DevnetLayout) -> tuple[Path, Path]:
    """The devnet GitHub App's private key (RS256, PEM) and webhook secret, created once
    (0600 files in a 0700 folder)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    folder = private_directory(layout.github_dir)
    key, secret = folder / "app.pem", folder / "webhook.secret"
    if not key.exists():
        pem = rsa.generate_private_key(public_exponent=65_537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_text(key, pem.decode())
    if not secret.exists():
        write_private_text(secret, os.urandom(32).hex())
    return key, secret


def sample_archive(round_number: int) -> bytes:
    """A small repository archive at the round's merge commit (code, a test, a README)."""
    files = {
        "sample/core.py": f"def answer(x):\n    if x > {round_number}:\n        return x\n"
                          "    return 0\n".encode(),
        "tests/test_core.py": b"from sample.core import answer\n\n\ndef test_answer():\n"
                              b"    assert answer(100) == 100\n",
        "README.md": f"# sample, round {round_number}\n".encode(),
    }  # fmt: skip
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for path, data in files.items():
            info = tarfile.TarInfo(f"owm-devnet-sample-{round_number}/{path}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _base() -> dict[str, Any]:
    return {
        "repository": {"full_name": REPOSITORY, "name": "sample"},
        "installation": {"id": INSTALLATION},
    }


def comment(issue: int, login: str, association: str, body: str) -> dict[str, Any]:
    """An ``issue_comment`` ``created`` payload."""
    return {
        **_base(), "action": "created",
        "issue": {"number": issue, "title": f"Sample issue {issue}"},
        "comment": {"body": body, "user": {"login": login}, "author_association": association},
    }  # fmt: skip


def pull_request(number: int, issue: int, merge_sha: str) -> dict[str, Any]:
    """The GitHub pull request JSON of the round (merged, by the contributor)."""
    return {
        "number": number, "title": f"Fix issue {issue}", "body": f"Fixes #{issue}",
        "user": {"login": CONTRIBUTOR}, "merged": True, "merge_commit_sha": merge_sha,
        "head": {"sha": merge_sha}, "additions": 4, "deletions": 1, "changed_files": 2,
    }  # fmt: skip


@attrs.define
class GitHubTraffic:
    """One sample contribution per :meth:`round` (see the module docstring)."""

    standin: GitHubStandIn
    post: Post
    secret: bytes
    contributor_ln: str
    rounds: int = 0
    refused: int = 0

    def deliver(self, event: str, payload: dict[str, Any]) -> None:
        """Sign ``payload`` as GitHub would and post it."""
        raw = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": webhook_signature(self.secret, raw),
        }
        if self.post(headers, raw) != 202:
            self.refused += 1

    def round(self) -> dict[str, Any]:
        """Play one contribution; the account for ``traffic.json``."""
        self.rounds += 1
        n = self.rounds
        issue, number, sha = 2 * n - 1, 2 * n, f"{n:040x}"
        if n == 1:
            self.deliver("issue_comment", comment(issue, CONTRIBUTOR, "CONTRIBUTOR",
                                                  f"/payee {self.contributor_ln}"))
        self.deliver("issue_comment", comment(issue, MAINTAINER, "OWNER", f"/bounty {BOUNTY_SAT}"))
        self.deliver("issue_comment", comment(issue, CONTRIBUTOR, "CONTRIBUTOR",
                                              f"/claim {self.contributor_ln}"))
        pull = pull_request(number, issue, sha)
        self.standin.repositories[REPOSITORY].archives[sha] = sample_archive(n)
        self.standin.add_pull(REPOSITORY, pull)  # its files: the sample archive's
        # GitHub closes the fixed issue on the merge and delivers both events in no set order:
        # the issue's first, as the harder case (the claimed bounty must still be paid).
        self.deliver("issues", {**_base(), "action": "closed", "issue": {
            "number": issue, "title": f"Sample issue {issue}", "state": "closed"}})
        self.deliver("pull_request", {**_base(), "action": "closed", "number": number,
                                      "pull_request": pull})
        return self.account()

    def account(self) -> dict[str, Any]:
        """Rounds played, deliveries refused, and the App's latest comments."""
        return {
            "repository": REPOSITORY,
            "rounds": self.rounds,
            "deliveries_refused": self.refused,
            "comments": [f"#{c.number}: {c.body}" for c in self.standin.comments[-4:]],
        }
