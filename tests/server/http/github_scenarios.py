"""The GitHub webhook's own statuses for ``test_documented_statuses`` (one scenario each)."""

from __future__ import annotations

from typing import Any

from owm_adapters.services.api import ApiConfig
from owm_adapters.services.api.bounties import Bounties
from owm_adapters.services.bounty_book import BountyBook, BountyTerms
from owm_adapters.services.github_app import GitHubApp
from owm_adapters.storage.content import MemoryContentStore
from owm_core.governance.github_app import webhook_signature
from tests.github_app_support import SECRET, delivery
from tests.server.http.world import MAINTAINER


def webhook(probe: Any) -> None:
    w = probe.world
    w.serve(github=None)
    headers, raw = delivery("ping", {"zen": "Keep it logically awesome."})
    probe.send(headers=headers, raw=raw)  # 503: no App configured
    w.serve(github=GitHubApp(w.repos, w.clock, SECRET))
    probe.send(headers=headers, raw=raw)  # 202
    probe.send(headers=headers, raw=raw)  # 409: the same delivery id again
    probe.send(headers={**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}, raw=raw)  # 401
    bad_raw = b"not json"
    signed = webhook_signature(SECRET, bad_raw)
    bad_json = {**delivery("ping", {})[0], "X-Hub-Signature-256": signed}
    probe.send(headers=bad_json, raw=bad_raw)  # 400: signed, but not JSON
    no_id = {k: v for k, v in headers.items() if k != "X-GitHub-Delivery"}
    probe.send(headers=no_id, raw=raw)  # 422: no delivery id


def create_bounty(probe: Any) -> None:
    w = probe.world
    w.install_app("a/b")
    probe.send(headers=w.api_key(owner=MAINTAINER))  # 201
    probe.send(headers=w.api_key())  # 403: only a maintainer opens a treasury bounty
    bounties = w.services.bounties
    tight = BountyBook(w.repos, w.clock, w.services.lightning, BountyTerms(budget_sat=0))
    w.serve(bounties=Bounties(w.repos, w.clock, book=tight,
                              config=ApiConfig(bounty_maintainers=(MAINTAINER,))))
    probe.send(headers=w.api_key(owner=MAINTAINER))  # 409: over the treasury's bounty budget
    w.serve(bounties=bounties)


def contribution(probe: Any) -> None:
    w = probe.world
    github = w.services.github
    w.serve(github=None)
    probe.send(url=probe.url(digest="0" * 64))  # 503: no App
    content = MemoryContentStore()
    digest = content.put(b'{"record": {}}')
    w.serve(github=GitHubApp(w.repos, w.clock, SECRET, content=content))
    probe.send(url=probe.url(digest=digest))  # 200
    probe.send(url=probe.url(digest="0" * 64))  # 404
    w.serve(github=github)


GITHUB_SCENARIOS = {
    "githubWebhook": webhook, "createBounty": create_bounty, "getContribution": contribution,
}
