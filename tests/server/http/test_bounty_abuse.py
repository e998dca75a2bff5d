"""Nobody but a maintainer spends the treasury's bounty budget (SRS-LN-08): a stranger's key or
a 10-sat L402 token may only sponsor a bounty with its own payment, no bounty opens on a
repository the GitHub App is not installed on, and an amount beyond every bitcoin is refused."""

from __future__ import annotations

from typing import Any

from owm_core.access.api_keys import Plan
from tests.server.http.world import MAINTAINER, World

BOUNTIES = "/v1/github/bounties"


def bounty(issue: int, amount_sat: int, repository: str = "owm-network/owm") -> dict[str, Any]:
    return {"repository": repository, "issue_number": issue, "title": "x",
            "amount_sat": amount_sat}  # fmt: skip


def test_strangers_cannot_lock_the_treasurys_bounty_budget_and_a_maintainer_still_opens_one(
    world: World,
) -> None:
    world.install_app("owm-network/owm")
    cap = world.services.config.max_bounty_sat
    for headers in (world.api_key(owner="stranger"), world.api_key("rich", Plan.COMMERCIAL),
                    world.l402_token()):  # fmt: skip
        for issue in range(1, 11):
            reply = world.client.post(BOUNTIES, json=bounty(issue, cap), headers=headers)
            assert reply.status_code == 403, reply.json()
            assert reply.json()["code"] == "role-required"
            assert "sponsor" in reply.json()["detail"]
    assert world.repos.bounties.committed_treasury_sat() == 0
    real = world.client.post(BOUNTIES, json=bounty(99, 1_000),
                             headers=world.api_key(owner=MAINTAINER))  # fmt: skip
    assert real.status_code == 201 and real.json()["status"] == "open"


def test_a_stranger_may_sponsor_a_bounty_which_holds_nothing_of_the_treasurys_budget(
    world: World,
) -> None:
    world.install_app("owm-network/owm")
    body = {**bounty(7, 2_000), "sponsor_node": "02" + "ab" * 32}
    reply = world.client.post(BOUNTIES, json=body, headers=world.l402_token())
    assert reply.status_code == 201
    assert reply.json()["status"] == "funding" and reply.json()["invoice"]
    assert world.repos.bounties.committed_treasury_sat() == 0


def test_no_bounty_opens_on_a_repository_the_github_app_is_not_installed_on(
    world: World,
) -> None:
    world.install_app("owm-network/owm")
    for headers, extra in ((world.api_key(owner=MAINTAINER), {}),
                           (world.api_key(), {"sponsor_node": "02" + "ab" * 32})):  # fmt: skip
        body = {**bounty(1, 1_000, "stranger/not-installed"), **extra}
        reply = world.client.post(BOUNTIES, json=body, headers=headers)
        assert reply.status_code == 409
        assert "not installed" in reply.json()["detail"]
    assert world.client.get(BOUNTIES, headers=world.api_key()).json() == {"bounties": []}
