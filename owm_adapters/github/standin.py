"""A local stand-in for GitHub: the REST shapes the App calls, checking every credential.

Tests and devnets run the App against :class:`GitHubStandIn` instead of api.github.com. It
speaks GitHub's shapes for exactly what the App calls — ``POST /app/installations/{id}/
access_tokens`` (RS256 App JWT in, one-hour token out), ``GET /repos/{o}/{r}/pulls/{n}``
and its ``/files`` and ``/commits`` listings (paged by ``per_page`` and ``page``), ``GET
/repos/{o}/{r}/contributors``, ``POST /repos/{o}/{r}/issues/{n}/comments`` (issue and PR
conversation comments) and ``GET /repos/{o}/{r}/tarball/{ref}`` — and, like GitHub,
refuses with 401 a JWT that is not the App's, is expired or too long-lived, and a token
that is unknown, expired or belongs to another installation than the repository's. It keeps
its repositories, pull requests, archives and the comments posted in memory, for the test or
devnet to inspect.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import tarfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import jwt

TOKEN_LIFE_S = 3_600
MAX_JWT_LIFE_S = 600

_TOKEN_PATH = re.compile(r"/app/installations/(\d+)/access_tokens")
_REPO_PATH = re.compile(
    r"/repos/([^/]+)/([^/]+)/(?:(pulls|issues|tarball)/([^/]+)(/comments|/files|/commits)?"
    r"|(contributors))"
)


@attrs.define
class StandInRepository:
    """One repository of the stand-in: its installation, pull requests and archives."""

    installation_id: int
    pulls: dict[int, dict[str, Any]] = attrs.Factory(dict)
    archives: dict[str, bytes] = attrs.Factory(dict)
    #: GitHub's listings of each pull request's files and commits, as ``add_pull`` was given.
    pull_files: dict[int, list[dict[str, Any]]] = attrs.Factory(dict)
    pull_commits: dict[int, list[dict[str, Any]]] = attrs.Factory(dict)
    contributors: list[dict[str, Any]] = attrs.Factory(list)


@attrs.frozen
class PostedComment:
    """A comment the App posted."""

    repository: str
    number: int
    body: str
    comment_id: int


def _iso(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GitHubStandIn:
    """The stand-in's state and server (see the module docstring); ``url`` once started."""

    def __init__(self, app_id: str, app_public_key_pem: bytes, now: Callable[[], int]) -> None:
        self.app_id = app_id
        self._public_key = app_public_key_pem
        self._now = now
        self.repositories: dict[str, StandInRepository] = {}
        self.comments: list[PostedComment] = []
        self.tokens_issued = 0
        self._tokens: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ fixtures

    def add_repository(self, repository: str, installation_id: int) -> StandInRepository:
        """Register ``repository`` as installed under ``installation_id``."""
        repo = StandInRepository(installation_id)
        self.repositories[repository] = repo
        return repo

    def add_pull(
        self, repository: str, pull: dict[str, Any],
        files: list[dict[str, Any]] | None = None, commits: list[dict[str, Any]] | None = None,
    ) -> None:  # fmt: skip
        """Serve ``pull`` (GitHub's pull request JSON) under its ``number``, with the listings
        of the files it changed (``filename``, ``status``, ``additions``, ``deletions``) and of
        its commits (``author.login``); by default one commit by the pull request's author,
        and as files every file of the archive at its merge commit (when served already),
        added with its lines."""
        repo, number = self.repositories[repository], int(pull["number"])
        repo.pulls[number] = pull
        author = (pull.get("user") or {}).get("login") or ""
        repo.pull_commits[number] = commits if commits is not None else [
            {"sha": pull.get("merge_commit_sha") or "", "author": {"login": author}}
        ]  # fmt: skip
        archive = repo.archives.get(str(pull.get("merge_commit_sha") or ""))
        repo.pull_files[number] = files if files is not None else _archive_files(archive)

    # ------------------------------------------------------------------ credentials

    def mint(self, authorization: str, installation_id: int) -> dict[str, Any] | None:
        """A new token for a valid App JWT (GitHub's answer), or None: refused."""
        if not authorization.startswith("Bearer "):
            return None
        now = self._now()
        try:
            claims = jwt.decode(
                authorization.removeprefix("Bearer "), self._public_key, algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "require": ["iat", "exp"]},
            )  # fmt: skip
        except jwt.PyJWTError:
            return None
        iat, exp = int(claims["iat"]), int(claims["exp"])
        valid = claims.get("iss") == self.app_id and iat - 60 <= now < exp
        if not valid or exp - iat > MAX_JWT_LIFE_S:
            return None
        if not any(r.installation_id == installation_id for r in self.repositories.values()):
            return None
        token = "ghs_" + secrets.token_hex(18)
        with self._lock:
            self._tokens[token] = (installation_id, now + TOKEN_LIFE_S)
            self.tokens_issued += 1
        return {"token": token, "expires_at": _iso(now + TOKEN_LIFE_S)}

    def admits(self, authorization: str, repository: str) -> bool:
        """Whether ``authorization`` carries a live token of ``repository``'s installation."""
        token = authorization.removeprefix("Bearer ").removeprefix("token ")
        with self._lock:
            held = self._tokens.get(token)
        repo = self.repositories.get(repository)
        if held is None or repo is None:
            return False
        installation_id, expires_at = held
        return installation_id == repo.installation_id and self._now() < expires_at

    # ------------------------------------------------------------------ server

    def start(self, port: int = 0) -> str:
        """Serve on loopback ``port`` (0: a free one); the base URL."""
        standin = self

        class Handler(_Handler):
            owner = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def route(self, method: str, path: str, authorization: str, body: bytes) -> tuple[int, Any]:
        """The status and answer (JSON value or archive bytes) of one request."""
        minted = _TOKEN_PATH.fullmatch(path.partition("?")[0])
        if minted and method == "POST":
            answer = self.mint(authorization, int(minted.group(1)))
            return (201, answer) if answer else (401, {"message": "A JSON web token could not "
                                                       "be decoded"})
        path, _, query = path.partition("?")
        found = _REPO_PATH.fullmatch(path)
        if found is None:
            return 404, {"message": "Not Found"}
        owner, name, kind, ident, sub, contributors = found.groups()
        repository = f"{owner}/{name}"
        if not self.admits(authorization, repository):
            return 401, {"message": "Bad credentials"}
        repo = self.repositories[repository]
        if contributors and method == "GET":
            return 200, _page(repo.contributors, query)
        if kind == "pulls" and method == "GET" and sub in (None, "/files", "/commits"):
            pull = repo.pulls.get(int(ident)) if ident.isdigit() else None
            if pull is None:
                return 404, {"message": "Not Found"}
            if sub is None:
                return 200, pull
            listing = repo.pull_files if sub == "/files" else repo.pull_commits
            return 200, _page(listing.get(int(ident), []), query)
        comments = sub == "/comments"
        if kind == "issues" and comments and method == "POST" and ident.isdigit():
            text = json.loads(body or b"{}").get("body")
            if not isinstance(text, str) or not text:
                return 422, {"message": "body is required"}
            with self._lock:
                posted = PostedComment(repository, int(ident), text, len(self.comments) + 1)
                self.comments.append(posted)
            return 201, {"id": posted.comment_id, "body": text}
        if kind == "tarball" and method == "GET" and ident in repo.archives:
            return 200, repo.archives[ident]
        return 404, {"message": "Not Found"}


def _page(items: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """One page of a listing as GitHub pages it (``per_page`` ≤ 100, ``page`` from 1)."""
    asked = dict(p.partition("=")[::2] for p in query.split("&") if p)
    per_page = min(100, int(asked.get("per_page") or 30))
    page = max(1, int(asked.get("page") or 1))
    return items[(page - 1) * per_page : page * per_page]


def _archive_files(archive: bytes | None) -> list[dict[str, Any]]:
    """Every file of a served tarball as an added file with its lines."""
    if archive is None:
        return []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
        files = []
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                lines = handle.read().count(b"\n")
                files.append({"filename": member.name.split("/", 1)[-1], "status": "added",
                              "additions": lines, "deletions": 0})  # fmt: skip
        return files


class _Handler(BaseHTTPRequestHandler):
    owner: GitHubStandIn

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, answer = self.owner.route(
            self.command, self.path, self.headers.get("Authorization", ""), body
        )
        raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "application/x-gzip" if isinstance(answer, bytes) else
            "application/json",
        )  # fmt: skip
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the stand-in's requests carry tokens."""
