"""POST /v1/github/analyze really analyses: the App fetches the repository's archive from a
server speaking GitHub's shapes and stores languages, lines, complexity, tests and a score with
its reasons; without the App installed the analysis fails saying so."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from owm_adapters.github.rest import GitHubRest
from owm_adapters.github.standin import GitHubStandIn
from owm_adapters.services.api.bounties import Bounties
from owm_adapters.services.github_app import GitHubApp
from tests.adapters.github.test_tree_analysis import COMPLEX, tarball
from tests.github_app_support import SECRET, credentials, delivery, standin
from tests.github_examples import example
from tests.server.http.world import World

REPO = "Codertocat/Hello-World"


@pytest.fixture
def github(world: World) -> Iterator[tuple[GitHubApp, GitHubStandIn]]:
    with standin(world.clock.now) as server:
        server.add_repository(REPO, installation_id=1).contributors = [
            {"login": "octocat", "contributions": 32}, {"login": "hubot", "contributions": 3}]
        server.repositories[REPO].archives["HEAD"] = tarball({
            "hello/core.py": COMPLEX.encode(), "tests/test_core.py": b"def test():\n    pass\n",
        })  # fmt: skip
        app = GitHubApp(world.repos, world.clock, SECRET,
                        GitHubRest(server.url, credentials(), world.clock))
        world.serve(github=app, bounties=Bounties(world.repos, world.clock, runner=app.analyses))
        yield app, server
        app.analyses.stop()


def analyse(world: World, repository: str, **more: Any) -> dict[str, Any]:
    keys = world.api_key()
    queued = world.client.post("/v1/github/analyze", json={"repository": repository, **more},
                               headers=keys)  # fmt: skip
    assert queued.status_code == 202
    url = queued.headers["Location"]
    deadline = time.monotonic() + 30
    while True:
        answer: dict[str, Any] = world.client.get(url, headers=keys).json()
        if answer["state"] in {"done", "failed"} or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


def test_an_installed_repository_is_analysed_with_a_score_and_its_reasons(
    world: World, github: tuple[GitHubApp, GitHubStandIn]
) -> None:
    app, _ = github
    payload = {**example("push"), "installation": {"id": 1}}
    headers, raw = delivery("push", payload)
    app.receive(headers["X-Hub-Signature-256"], headers["X-GitHub-Delivery"], "push", raw)
    answer = analyse(world, REPO)
    assert answer["state"] == "done", answer
    result = json.loads(answer["result"])
    assert result["files"] == 2 and result["tests_touched"] == 1
    assert result["languages"] == {"Python": COMPLEX.count("\n") + 2}
    assert result["complex_functions"] == 1
    assert result["authors"] == ["hubot", "octocat"]  # the repository's contributors
    assert result["reasons"][0] == "base 40" and 0 <= result["score"] <= 100


def test_a_pull_request_is_analysed_by_the_files_and_lines_it_changed_and_its_authors(
    world: World, github: tuple[GitHubApp, GitHubStandIn]
) -> None:
    app, server = github
    server.repositories[REPO].archives["f00d"] = tarball({
        "hello/core.py": COMPLEX.encode(), "hello/util.py": b"def g():\n    return 1\n",
        "tests/test_util.py": b"def test_g():\n    pass\n", "README.md": b"# hi\n",
    })  # fmt: skip
    server.add_pull(REPO, {"number": 7, "title": "Add g", "user": {"login": "alice"},
                           "merged": False, "head": {"sha": "f00d"}}, files=[
        {"filename": "hello/util.py", "status": "added", "additions": 2, "deletions": 0},
        {"filename": "tests/test_util.py", "status": "added", "additions": 2, "deletions": 0},
        {"filename": "hello/old.py", "status": "removed", "additions": 0, "deletions": 9},
    ], commits=[{"author": {"login": "alice"}}, {"author": {"login": "bob"}}, {"author": None}])
    headers, raw = delivery("push", {**example("push"), "installation": {"id": 1}})
    app.receive(headers["X-Hub-Signature-256"], headers["X-GitHub-Delivery"], "push", raw)
    answer = analyse(world, REPO, pull_request=7)
    assert answer["state"] == "done" and answer["pull_request"] == 7, answer
    result = json.loads(answer["result"])
    assert (result["files_changed"], result["lines_added"], result["lines_deleted"]) == (3, 4, 9)
    assert result["files"] == 2 and result["tests_touched"] == 1  # core.py was not touched
    assert result["complex_functions"] == 0 and result["authors"] == ["alice", "bob"]
    assert "+20 for 1 test file(s) touched" in result["reasons"]
    missing = analyse(world, REPO, pull_request=8)
    assert missing["state"] == "failed" and "pulls/8" in json.loads(missing["result"])["error"]
    bad = world.client.post("/v1/github/analyze", json={"repository": REPO, "pull_request": 0},
                            headers=world.api_key())  # fmt: skip
    assert bad.status_code == 422 and "pull_request" in bad.text


def test_a_repository_the_app_is_not_installed_on_fails_saying_so(
    world: World, github: tuple[GitHubApp, GitHubStandIn]
) -> None:
    answer = analyse(world, "someone/elsewhere")
    assert answer["state"] == "failed"
    assert "not installed on someone/elsewhere" in json.loads(answer["result"])["error"]
