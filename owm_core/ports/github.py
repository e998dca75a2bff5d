"""The GitHub port: what the GitHub App asks of GitHub's REST API.

Every call acts as one installation of the App (``installation_id``); the adapter obtains and
renews that installation's access token itself (from an App JWT), keeps it in memory only and
never for longer than its one-hour life (SRS-SEC-08). Adapters: ``owm_adapters/github/rest.py``
(GitHub's REST API, or any server speaking its shapes, such as the local stand-in
``owm_adapters/github/standin.py`` that tests and devnets use).
"""

from __future__ import annotations

from typing import Protocol

from owm_core.governance.github_app import PullChanges, PullRequest


class GitHub(Protocol):
    """GitHub as the App sees it: pull requests and what they changed, contributors, comments
    and repository archives."""

    def pull_request(self, installation_id: int, repository: str, number: int) -> PullRequest:
        """The pull request ``number`` of ``repository`` (``owner/name``); NotFound if none."""
        ...

    def pull_changes(self, installation_id: int, repository: str, number: int) -> PullChanges:
        """The files pull request ``number`` changed (with lines added and deleted) and the
        logins of its commits' authors; NotFound if no such pull request."""
        ...

    def contributors(self, installation_id: int, repository: str) -> tuple[str, ...]:
        """The logins of ``repository``'s contributors, most commits first."""
        ...

    def comment(self, installation_id: int, repository: str, number: int, body: str) -> int:
        """Post ``body`` as a comment on issue or pull request ``number``; the comment's id."""
        ...

    def archive(self, installation_id: int, repository: str, ref: str) -> bytes:
        """The gzipped tarball of ``repository`` at ``ref`` (a commit, branch or tag)."""
        ...
