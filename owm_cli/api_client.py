"""Posting to a coordinator's public API from the command line (``owm data submit``,
``owm slashing ack --api``, ``owm gov log verify --url``): one place that builds ``/v1`` URLs
and turns an RFC 7807 problem or an unreachable host into the one-line error every command
prints. A ``429`` whose ``Retry-After`` is short is waited out and the request sent again (the
coordinator refuses a rate-limited request before acting on it), saying so on stderr, so a
long read such as a whole governance log is not cut off by the public per-address limit."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import click


def v1_url(api_url: str, path: str) -> str:
    """``api_url`` (with or without ``/v1``, or the endpoint itself) completed to ``/v1<path>``."""
    base = api_url.rstrip("/")
    if base.endswith(path):
        return base
    if not base.endswith("/v1"):
        base += "/v1"
    return base + path


def post_json(
    url: str, raw: bytes, *, api_key: str | None = None, timeout_s: float = 30
) -> dict[str, Any]:
    """POST the JSON ``raw`` to ``url``; the decoded answer, or a one-line ClickException that
    names the problem's ``detail`` and ``field``."""
    return _send(url, raw, api_key, timeout_s)


def get_json(url: str, *, api_key: str | None = None, timeout_s: float = 30) -> dict[str, Any]:
    """GET ``url``; the decoded answer, or the same one-line ClickException as :func:`post_json`."""
    return _send(url, None, api_key, timeout_s)


MAX_WAIT_S = 60
"""The longest ``Retry-After`` a command waits out by itself; a longer one is reported."""
MAX_RETRIES = 5


def _send(url: str, raw: bytes | None, api_key: str | None, timeout_s: float) -> dict[str, Any]:
    for _ in range(MAX_RETRIES):
        try:
            return _send_once(url, raw, api_key, timeout_s)
        except _RetryLater as later:
            click.echo(f"the coordinator asks to slow down; retrying in {later.seconds} s",
                       err=True)  # fmt: skip
            time.sleep(later.seconds)
    return _send_once(url, raw, api_key, timeout_s, retry=False)


class _RetryLater(Exception):
    """A 429 worth waiting out: ``seconds`` from its ``Retry-After``."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds


def _send_once(
    url: str, raw: bytes | None, api_key: str | None, timeout_s: float, *, retry: bool = True
) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if raw is not None:
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(  # noqa: S310 (the user's own coordinator URL)
        url, data=raw, method="GET" if raw is None else "POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:  # noqa: S310
            answer: dict[str, Any] = json.loads(reply.read())
            return answer
    except urllib.error.HTTPError as failed:
        wait = _retry_after(failed)
        if retry and failed.code == 429 and wait is not None and wait <= MAX_WAIT_S:
            raise _RetryLater(wait) from None
        try:
            problem = json.loads(failed.read())
            field = f" ({problem['field']})" if problem.get("field") else ""
            detail = f"{problem.get('detail', failed.reason)}{field}"
        except (ValueError, AttributeError):
            detail = str(failed.reason)
        raise click.ClickException(f"the coordinator refused it: {failed.code} {detail}") from None
    except (urllib.error.URLError, OSError) as failed:
        raise click.ClickException(f"cannot reach {url}: {failed}") from None


def _retry_after(failed: urllib.error.HTTPError) -> int | None:
    """The answer's ``Retry-After`` in whole seconds (at least 1), if it gives one."""
    value = failed.headers.get("Retry-After") if failed.headers is not None else None
    try:
        return max(1, int(value)) if value is not None else None
    except ValueError:
        return None
