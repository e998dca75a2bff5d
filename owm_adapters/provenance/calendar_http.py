"""OpenTimestamps calendars over HTTP: the public ones, or OWM's own embedded calendar served.

:class:`HttpCalendar` speaks the calendar protocol the reference client speaks
(``opentimestamps.calendar.RemoteCalendar``): ``POST <url>/digest`` with the raw digest answers
the serialised timestamp from that digest to a ``PendingAttestation``; ``GET
<url>/timestamp/<hex commitment>`` answers the rest of the path once the calendar committed it
in a block (404 while pending). Parsing stays the reference library's (``Timestamp.deserialize``,
the same 10,000-byte answer cap, ``CommitmentNotFoundError`` for 404); defaults come from it too
(``DEFAULT_AGGREGATORS``, the calendars ``ots stamp`` submits to, and
``DEFAULT_CALENDAR_WHITELIST``, the calendars ``ots upgrade`` follows).

Why not ``RemoteCalendar`` itself: it opens connections with the module-global
``urllib.request.urlopen``, which honours ``*_PROXY`` variables, follows redirects to any host
and resolves the name again after any check. A calendar answer names further calendars
(``PendingAttestation`` URIs, e.g. a pool names ``alice.btc.calendar.opentimestamps.org``), so
the coordinator would fetch URLs a remote party chose: a server-side request forgery path to
loopback or the cloud metadata service. Here every URL must match the whitelist, every
address it resolves to must pass the no-SSRF :class:`~owm_core.access.destinations.
DestinationPolicy` (public addresses only, unless a devnet allows loopback), the connection goes
to the checked address (no DNS rebinding) without proxies or redirects, and every request has
a timeout (SRS-PERF-10: 30 s to acknowledge a submission).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable

import attrs
from opentimestamps.calendar import (
    DEFAULT_AGGREGATORS,
    DEFAULT_CALENDAR_WHITELIST,
    CommitmentNotFoundError,
    UrlWhitelist,
)
from opentimestamps.core.serialize import BytesDeserializationContext
from opentimestamps.core.timestamp import Timestamp

from owm_adapters.net.destinations import Resolver, check_node_target, clearnet_opener, resolve
from owm_core.access.destinations import DestinationPolicy
from owm_core.errors import CalendarUnavailable, DomainError

MAX_ANSWER_BYTES = 10_000
"""The reference library's cap on a calendar's answer."""
SUBMIT_TIMEOUT_S = 30.0
"""SRS-PERF-10: a calendar acknowledges a submission within 30 seconds, or it has failed."""
DEFAULT_CALENDARS: tuple[str, ...] = tuple(DEFAULT_AGGREGATORS)
"""The calendars ``ots stamp`` submits to by default (opentimestamps' ``DEFAULT_AGGREGATORS``)."""
ACCEPT = "application/vnd.opentimestamps.v1"
USER_AGENT = "owm-network (python-opentimestamps)"


def whitelist_of(extra: Iterable[str] = (), *, defaults: bool = True) -> UrlWhitelist:
    """The calendars an upgrade may contact: the reference client's default whitelist (when
    ``defaults``) plus ``extra`` URLs or glob patterns (e.g. ``https://*.example.org``)."""
    whitelist = UrlWhitelist()
    if defaults:
        whitelist.update(DEFAULT_CALENDAR_WHITELIST)  # parsed already, as ots does
    for url in extra:
        whitelist.add(url)
    return whitelist


class HttpCalendar:
    """One calendar at ``url``, reached through the no-SSRF checks (module docstring).

    Offers the two calls of ``RemoteCalendar`` (the ``CalendarClient`` of
    :mod:`owm_adapters.provenance.ots`). Every failure to reach the calendar or to read its
    answer is ``CalendarUnavailable`` naming the calendar; ``KeyError``
    (``CommitmentNotFoundError``) means "still pending".
    """

    def __init__(
        self,
        url: str,
        *,
        policy: DestinationPolicy | None = None,
        timeout_s: float = SUBMIT_TIMEOUT_S,
        resolver: Resolver = resolve,
    ) -> None:
        self.url = url.rstrip("/")
        self.policy = policy or DestinationPolicy()
        self.timeout_s = timeout_s
        self._resolver = resolver

    def __repr__(self) -> str:
        return f"HttpCalendar({self.url!r})"

    def _fetch(self, path: str, body: bytes | None) -> bytes:
        url = f"{self.url}/{path}"
        try:
            addresses = check_node_target(url, self.policy, self._resolver)
        except DomainError as exc:
            raise CalendarUnavailable(f"calendar {self.url} refused: {exc.message}") from None
        request = urllib.request.Request(  # noqa: S310 (http/https checked above)
            url, data=body, headers={"Accept": ACCEPT, "User-Agent": USER_AGENT},
            method="GET" if body is None else "POST",
        )
        try:
            with clearnet_opener(addresses[0]).open(request, timeout=self.timeout_s) as response:
                data: bytes = response.read(MAX_ANSWER_BYTES + 1)
                status = response.status
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and body is None:
                raise CommitmentNotFoundError(f"{self.url}: pending") from None
            raise CalendarUnavailable(f"calendar {self.url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CalendarUnavailable(f"calendar {self.url} is unreachable: {reason}") from None
        if status != 200:
            raise CalendarUnavailable(f"calendar {self.url}: HTTP {status}")
        if len(data) > MAX_ANSWER_BYTES:
            raise CalendarUnavailable(f"calendar {self.url}: answer over {MAX_ANSWER_BYTES} bytes")
        return data

    def _timestamp(self, data: bytes, message: bytes) -> Timestamp:
        try:
            return Timestamp.deserialize(BytesDeserializationContext(data), message)
        except Exception as exc:  # the library raises many kinds: all mean "not a timestamp"
            raise CalendarUnavailable(f"calendar {self.url} answered no timestamp: {exc}") from None

    def submit(self, digest: bytes) -> Timestamp:
        """``POST /digest``: the path from ``digest`` to this calendar's pending attestation."""
        return self._timestamp(self._fetch("digest", digest), digest)

    def get_timestamp(self, commitment: bytes) -> Timestamp:
        """``GET /timestamp/<hex>``: the rest of the path; ``KeyError`` while pending."""
        return self._timestamp(self._fetch(f"timestamp/{commitment.hex()}", None), commitment)


@attrs.define(eq=False)
class CalendarDirectory:
    """Which calendar client serves a URL met in a proof: only whitelisted ones (others are
    left pending, as ``ots upgrade`` leaves them), each an :class:`HttpCalendar`."""

    whitelist: UrlWhitelist
    _policy: DestinationPolicy | None = attrs.field(default=None, kw_only=True)
    _timeout_s: float = attrs.field(default=SUBMIT_TIMEOUT_S, kw_only=True)
    _resolver: Resolver = attrs.field(default=resolve, kw_only=True)

    def __call__(self, url: str) -> HttpCalendar | None:
        """The client for ``url``, or None when it is not on the whitelist."""
        if url not in self.whitelist:
            return None
        return HttpCalendar(url, policy=self._policy, timeout_s=self._timeout_s,
                            resolver=self._resolver)
