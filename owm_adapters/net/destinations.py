"""URL splitting and name resolution for the no-SSRF rules of ``owm_core.access.destinations``.

The core judges already-split parts; this adapter splits URLs (``urllib.parse``), refuses the
parts the core never sees (user info, fragments, non-HTTP schemes) and resolves host names
(``socket.getaddrinfo``, replaceable by a fake). A node that connects after
:func:`check_node_target` must connect to one of the checked addresses, or a rebinding DNS
answer could differ on the second lookup (SRS-SEC-06).
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import ssl
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import SplitResult, urlsplit

from owm_core.access.destinations import (
    DestinationPolicy,
    IPAddress,
    Origin,
    parse_ip_host,
    require_own_origin,
)
from owm_core.errors import InvalidValue

Resolver = Callable[[str, int], Sequence[IPAddress]]


def _split(url: str, field: str) -> SplitResult:
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        raise InvalidValue(field, "must be a URL without whitespace")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it validates the port
    except ValueError:
        raise InvalidValue(field, "is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidValue(field, "must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidValue(field, "must not carry user information")
    return parts


def origin_of(url: str, field: str = "upload_url") -> Origin:
    """The origin of ``url``; ``InvalidValue`` on ``field`` for anything but a plain http(s) URL."""
    parts = _split(url, field)
    host = parts.hostname or ""
    try:
        return Origin.of(parts.scheme, host, parts.port)
    except InvalidValue as exc:
        raise InvalidValue(field, exc.reason) from None


def check_task_url(url: str, advertised_api_url: str, field: str = "upload_url") -> None:
    """Refuse a task's upload/download URL unless it lies on the coordinator's API origin."""
    require_own_origin(origin_of(url, field), origin_of(advertised_api_url, "api_url"), field)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (TCP), via the operating system's resolver."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def check_node_target(
    url: str, policy: DestinationPolicy, resolver: Resolver = resolve
) -> list[IPAddress]:
    """Refuse ``url`` as a node's connection target unless ``policy`` allows every address.

    Returns the checked addresses, the only ones the caller may then connect to.
    """
    origin = origin_of(url, "url")
    literal = parse_ip_host(origin.host)
    addresses = [literal] if literal is not None else list(resolver(origin.host, origin.port))
    policy.check(origin.host, addresses)
    return addresses


def _pinned(connection: type[http.client.HTTPConnection], address: IPAddress) -> Any:
    """``connection`` whose socket goes to ``address``; Host header, SNI and the certificate
    check still use the URL's host name."""

    class Pinned(connection):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            create = socket.create_connection
            self._create_connection = lambda where, *rest: create((str(address), where[1]), *rest)

    return Pinned


class _PinnedHTTP(urllib.request.HTTPHandler):
    def __init__(self, address: IPAddress) -> None:
        super().__init__()
        self._connection = _pinned(http.client.HTTPConnection, address)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


class _PinnedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, address: IPAddress) -> None:
        super().__init__()
        self._connection = _pinned(http.client.HTTPSConnection, address)
        self._tls = ssl.create_default_context()

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(self._connection, context=self._tls), req)


def pinned_handlers(address: IPAddress) -> list[urllib.request.BaseHandler]:
    """urllib handlers that connect to ``address`` — one that :func:`check_node_target`
    returned — instead of resolving the URL's host again, so a DNS answer that changes between
    the check and the connection (rebinding) cannot redirect the node (SRS-SEC-06)."""
    return [_PinnedHTTP(address), _PinnedHTTPS(address)]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead through a proxy or to an onion host: refuse to follow it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def clearnet_opener(address: IPAddress | None = None) -> urllib.request.OpenerDirector:
    """An opener that ignores ``*_PROXY`` variables and never follows redirects; given a checked
    ``address``, it connects there without resolving the host again (no DNS rebinding)."""
    pinned = pinned_handlers(address) if address is not None else []
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects(), *pinned)
