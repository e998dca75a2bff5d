"""The GitHub port's REST adapter against a local server speaking GitHub's shapes, which checks
every JWT and token it is sent (SRS-SEC-08)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from owm_adapters.github.rest import GitHubRest
from owm_adapters.github.standin import GitHubStandIn
from owm_core.errors import GitHubUnavailable, NotFound
from tests.github_app_support import credentials, standin
from tests.github_examples import example
from tests.server.harness import StepClock

T0 = 1_800_000_000
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def clock() -> StepClock:
    return StepClock(T0)


@pytest.fixture
def server(clock: StepClock) -> Iterator[GitHubStandIn]:
    with standin(clock.now) as started:
        pull = example("pull_request", "closed")["pull_request"]
        started.add_repository("Codertocat/Hello-World", installation_id=1)
        started.add_pull("Codertocat/Hello-World", pull)
        started.repositories["Codertocat/Hello-World"].archives["main"] = b"\x1f\x8btarball"
        started.add_repository("someone/else", installation_id=2)
        yield started


def test_the_app_reads_a_pull_request_comments_and_fetches_an_archive(
    server: GitHubStandIn, clock: StepClock
) -> None:
    github = GitHubRest(server.url, credentials(), clock)
    pr = github.pull_request(1, "Codertocat/Hello-World", 2)
    assert (pr.number, pr.author) == (2, "Codertocat")
    assert pr.title == "Update the README with new information."
    comment_id = github.comment(1, "Codertocat/Hello-World", 2, "paid 1000 sat")
    assert server.comments[-1].body == "paid 1000 sat"
    assert server.comments[-1].comment_id == comment_id
    assert github.archive(1, "Codertocat/Hello-World", "main") == b"\x1f\x8btarball"
    assert server.tokens_issued == 1  # one token served every call


def test_a_pull_requests_files_and_commit_authors_are_read_page_by_page(
    server: GitHubStandIn, clock: StepClock
) -> None:
    files = [{"filename": f"src/m{i}.py", "status": "modified", "additions": i, "deletions": 1}
             for i in range(250)]  # fmt: skip
    commits = [{"author": {"login": f"dev{i % 3}"}} for i in range(120)] + [{"author": None}]
    pull = {**example("pull_request", "closed")["pull_request"], "number": 9}
    server.add_pull("Codertocat/Hello-World", pull, files=files, commits=commits)
    server.repositories["Codertocat/Hello-World"].contributors = [{"login": "octocat"}]
    github = GitHubRest(server.url, credentials(), clock)
    changes = github.pull_changes(1, "Codertocat/Hello-World", 9)
    assert [f.path for f in changes.files] == [f["filename"] for f in files]  # three pages
    assert sum(f.additions for f in changes.files) == sum(range(250))
    assert changes.authors == ("dev0", "dev1", "dev2")
    assert github.contributors(1, "Codertocat/Hello-World") == ("octocat",)
    with pytest.raises(NotFound):
        github.pull_changes(1, "Codertocat/Hello-World", 404)
    with pytest.raises(GitHubUnavailable):  # another installation's repository: no token fits
        github.pull_changes(1, "someone/else", 9)


def test_a_token_is_renewed_before_its_hour_is_up_and_dropped_from_memory(
    server: GitHubStandIn, clock: StepClock
) -> None:
    github = GitHubRest(server.url, credentials(), clock)
    github.pull_request(1, "Codertocat/Hello-World", 2)
    clock.advance(3_600 - 61)
    github.pull_request(1, "Codertocat/Hello-World", 2)
    assert server.tokens_issued == 1  # still inside its hour, less the margin
    clock.advance(1)
    github.pull_request(1, "Codertocat/Hello-World", 2)
    assert server.tokens_issued == 2
    server.add_pull("someone/else", {**example("pull_request", "closed")["pull_request"]})
    github.pull_request(2, "someone/else", 2)
    assert github.tokens.held() == 2
    clock.advance(3_600)
    github.pull_request(2, "someone/else", 2)
    # installation 1's token, past its hour, left memory on that call; nothing was written
    assert github.tokens.held() == 1 and server.tokens_issued == 4


def test_another_apps_key_gets_no_token_and_no_data(
    server: GitHubStandIn, clock: StepClock
) -> None:
    forged = credentials(rsa.generate_private_key(public_exponent=65_537, key_size=2048))
    github = GitHubRest(server.url, forged, clock)
    with pytest.raises(GitHubUnavailable, match="refused an installation token") as caught:
        github.pull_request(1, "Codertocat/Hello-World", 2)
    assert "ghs_" not in str(caught.value) and "Bearer" not in str(caught.value)
    assert server.tokens_issued == 0 and not server.comments


def test_a_token_of_one_installation_opens_no_other_installations_repository(
    server: GitHubStandIn, clock: StepClock
) -> None:
    github = GitHubRest(server.url, credentials(), clock)
    with pytest.raises(GitHubUnavailable, match="refused the installation token"):
        github.comment(1, "someone/else", 1, "spam")
    assert not server.comments


def test_a_revoked_token_is_replaced_once_and_an_unknown_pull_is_not_found(
    server: GitHubStandIn, clock: StepClock
) -> None:
    github = GitHubRest(server.url, credentials(), clock)
    github.pull_request(1, "Codertocat/Hello-World", 2)
    server._tokens.clear()  # GitHub revoked every token
    github.pull_request(1, "Codertocat/Hello-World", 2)
    assert server.tokens_issued == 2
    with pytest.raises(NotFound):
        github.pull_request(1, "Codertocat/Hello-World", 999)


def test_an_unreachable_github_is_a_clear_error(clock: StepClock) -> None:
    github = GitHubRest("http://127.0.0.1:9", credentials(), clock, timeout_s=2)
    with pytest.raises(GitHubUnavailable, match="cannot reach GitHub"):
        github.pull_request(1, "o/r", 1)
