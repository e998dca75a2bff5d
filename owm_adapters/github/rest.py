"""The GitHub port over GitHub's REST API (``https://api.github.com``, or a stand-in's URL).

Each call acts as one installation: :class:`GitHubRest` asks :class:`~owm_adapters.github.
app_auth.InstallationTokens` for its token (minted from an App JWT, kept in memory, renewed
before its hour is up; SRS-SEC-08) and sends it as ``Authorization: Bearer``. A 401 drops the
cached token and tries once more with a fresh one. Requests go straight to ``base_url`` —
no ``*_PROXY`` variables, a timeout on each — and errors become :class:`~owm_core.errors.
GitHubUnavailable` (or NotFound for a 404) whose messages never carry a token.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any
from urllib.parse import quote

from owm_adapters.github.app_auth import AppCredentials, InstallationTokens
from owm_core.errors import GitHubUnavailable, InvalidValue, NotFound
from owm_core.governance.github_app import (
    ChangedFile,
    InstallationToken,
    PullChanges,
    PullRequest,
)
from owm_core.ports.clock import Clock

API_VERSION = "2022-11-28"
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024
MAX_JSON_BYTES = 16 * 1024 * 1024
PAGE = 100
MAX_FILE_PAGES = 30
"""GitHub lists at most 3,000 files of a pull request."""
MAX_COMMIT_PAGES = 3
"""GitHub lists at most 250 commits of a pull request."""


def _opener() -> urllib.request.OpenerDirector:
    # Proxies ignored; redirects followed (GitHub answers a tarball with a 302 to codeload).
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _repo_path(repository: str) -> str:
    owner, _, name = repository.partition("/")
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


class GitHubRest:
    """:class:`owm_core.ports.github.GitHub` over REST (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        credentials: AppCredentials,
        clock: Clock,
        timeout_s: float = 30.0,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise InvalidValue("api_url", "must be an http(s) URL")
        self._base = base_url.rstrip("/")
        self._timeout = timeout_s
        self._opener = _opener()
        self.tokens = InstallationTokens(credentials, self._mint, clock)

    # ------------------------------------------------------------------ the port

    def pull_request(self, installation_id: int, repository: str, number: int) -> PullRequest:
        """The pull request ``number`` of ``repository``; NotFound if none."""
        pr = self._json(installation_id, "GET", f"{_repo_path(repository)}/pulls/{number}")
        return PullRequest(
            repository=repository,
            number=int(pr["number"]),
            title=str(pr.get("title") or ""),
            author=str((pr.get("user") or {}).get("login") or ""),
            merged=bool(pr.get("merged")),
            head_sha=str((pr.get("head") or {}).get("sha") or ""),
            body=str(pr.get("body") or ""),
            additions=int(pr.get("additions") or 0),
            deletions=int(pr.get("deletions") or 0),
            changed_files=int(pr.get("changed_files") or 0),
        )

    def pull_changes(self, installation_id: int, repository: str, number: int) -> PullChanges:
        """The files pull request ``number`` changed and its commits' authors, page by page
        (GitHub lists at most 3,000 files and 250 commits of a pull request)."""
        base = f"{_repo_path(repository)}/pulls/{number}"
        files = tuple(
            ChangedFile(
                path=str(f.get("filename") or ""), status=str(f.get("status") or "modified"),
                additions=int(f.get("additions") or 0), deletions=int(f.get("deletions") or 0),
            )
            for f in self._pages(installation_id, f"{base}/files", MAX_FILE_PAGES)
        )
        commits = self._pages(installation_id, f"{base}/commits", MAX_COMMIT_PAGES)
        authors = {str((c.get("author") or {}).get("login") or "") for c in commits}
        return PullChanges(files, tuple(sorted(a for a in authors if a)))

    def contributors(self, installation_id: int, repository: str) -> tuple[str, ...]:
        """The logins of ``repository``'s contributors, most commits first (first 100)."""
        listed = self._pages(installation_id, f"{_repo_path(repository)}/contributors", 1)
        return tuple(str(c["login"]) for c in listed if c.get("login"))

    def comment(self, installation_id: int, repository: str, number: int, body: str) -> int:
        """Post a comment on issue or pull request ``number``; its id."""
        made = self._json(
            installation_id, "POST", f"{_repo_path(repository)}/issues/{number}/comments",
            {"body": body},
        )  # fmt: skip
        return int(made["id"])

    def archive(self, installation_id: int, repository: str, ref: str) -> bytes:
        """The gzipped tarball of ``repository`` at ``ref``."""
        path = f"{_repo_path(repository)}/tarball/{quote(ref, safe='')}"
        return self._authorised(installation_id, "GET", path, None, MAX_ARCHIVE_BYTES)

    # ------------------------------------------------------------------ plumbing

    def _mint(self, app_jwt: str, installation_id: int) -> InstallationToken:
        path = f"/app/installations/{installation_id}/access_tokens"
        status, raw = self._send("POST", path, f"Bearer {app_jwt}", b"", MAX_JSON_BYTES)
        if status != 201:
            raise GitHubUnavailable(
                f"GitHub refused an installation token for {installation_id} (HTTP {status})"
            )
        answer = json.loads(raw)
        expires = datetime.fromisoformat(str(answer["expires_at"]).replace("Z", "+00:00"))
        return InstallationToken(
            installation_id, str(answer["token"]), int(expires.timestamp()), 0
        )

    def _json(
        self, installation_id: int, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        value = self._parsed(installation_id, method, path, body)
        if not isinstance(value, dict):
            raise GitHubUnavailable(f"GitHub answered {method} {path} with no object")
        return value

    def _pages(self, installation_id: int, path: str, pages: int) -> list[dict[str, Any]]:
        """The objects of a listing, 100 a page, until a short page or ``pages`` pages."""
        found: list[dict[str, Any]] = []
        for page in range(1, pages + 1):
            listed = self._parsed(installation_id, "GET", f"{path}?per_page={PAGE}&page={page}")
            if not isinstance(listed, list):
                raise GitHubUnavailable(f"GitHub answered GET {path} with no list")
            found.extend(item for item in listed if isinstance(item, dict))
            if len(listed) < PAGE:
                break
        return found

    def _parsed(
        self, installation_id: int, method: str, path: str, body: dict[str, Any] | None = None
    ) -> Any:
        raw = self._authorised(installation_id, method, path, body, MAX_JSON_BYTES)
        try:
            return json.loads(raw)
        except ValueError:
            raise GitHubUnavailable(f"GitHub answered {method} {path} with invalid JSON") from None

    def _authorised(
        self, installation_id: int, method: str, path: str, body: dict[str, Any] | None,
        limit: int,
    ) -> bytes:  # fmt: skip
        data = json.dumps(body).encode() if body is not None else b""
        for _attempt in (1, 2):
            token = self.tokens.token(installation_id)
            status, raw = self._send(method, path, f"Bearer {token}", data, limit)
            if status == 401:
                self.tokens.forget(installation_id)  # revoked or expired early: mint again
                continue
            if status == 404:
                raise NotFound(f"GitHub has no {path}")
            if not 200 <= status < 300:
                raise GitHubUnavailable(f"GitHub answered {method} {path} with HTTP {status}")
            return raw
        raise GitHubUnavailable(f"GitHub refused the installation token for {method} {path}")

    def _send(
        self, method: str, path: str, authorization: str, data: bytes, limit: int
    ) -> tuple[int, bytes]:
        url = self._base + path  # http(s), checked at construction
        request = urllib.request.Request(url, data=data or None, method=method)  # noqa: S310
        request.add_header("Authorization", authorization)
        request.add_header("Accept", "application/vnd.github+json")
        request.add_header("X-GitHub-Api-Version", API_VERSION)
        request.add_header("User-Agent", "owm-network-github-app")
        if data:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=self._timeout) as reply:
                raw = reply.read(limit + 1)
                status = int(reply.status)
        except urllib.error.HTTPError as refused:
            return refused.code, b""
        except OSError as exc:
            raise GitHubUnavailable(f"cannot reach GitHub at {self._base}: {exc}") from None
        if len(raw) > limit:
            raise GitHubUnavailable(f"GitHub's answer to {method} {path} exceeds {limit} bytes")
        return status, raw
