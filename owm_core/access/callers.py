"""Who is calling the public API, and how a node operator signs an HTTP request.

This module owns the rules of API access (SRS 4.8.1, SRS-API-02/03, SRS-SEC-03):

* :class:`Caller` — the authenticated party of one request: an API key (free or commercial
  plan), an L402 token paid over Lightning (24 hours of commercial access), or a registered
  node operator identified by its Ed25519 key.
* :func:`rate_limit_key` — which sliding-window bucket a request counts against (free-tier keys
  and signed requests outside node management), or None when it is not limited.
* Signed requests: a node operator sends ``X-OWM-Node-Key`` (public key hex),
  ``X-OWM-Timestamp`` (POSIX seconds), ``X-OWM-Nonce`` (16–64 hex) and ``X-OWM-Signature``
  (Ed25519 over :func:`signed_request_message`: the coordinator's public key, the method, path
  with query, timestamp, nonce and the SHA-256 of the body, under a domain tag).
  :class:`SignedRequestGuard` refuses requests outside a ±``window_s`` freshness window and
  repeated ``(key, nonce)`` pairs.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import re

import attrs

from owm_core import fields
from owm_core.access.api_keys import Plan
from owm_core.errors import InvalidValue, ReplayGuardFull, ReplayRejected
from owm_core.identity.envelopes import NonceLedger
from owm_core.identity.keys import SIGNATURE_HEX, parse_public_key, verify_signature

SIGNED_REQUEST_DOMAIN = b"owm/http-request/v2\x00"
DEFAULT_SIGNED_WINDOW_S = 300
_NONCE = re.compile(r"[0-9a-f]{16,64}")


class CallerKind(enum.Enum):
    """How a caller proved who it is."""

    API_KEY = "api_key"
    L402 = "l402"
    NODE = "node"


@attrs.frozen
class Caller:
    """The authenticated party of one request.

    ``subject`` is the key id, the L402 token id (hex) or the node id; ``owner`` is whom
    records name as author (the key's owner, the node id, ``l402:<token>``).
    """

    kind: CallerKind = attrs.field(validator=fields.instance_of(CallerKind))
    subject: str = attrs.field(validator=fields.text(max_len=256))
    owner: str = attrs.field(validator=fields.text(max_len=256))
    plan: Plan = attrs.field(validator=fields.instance_of(Plan))


def rate_limit_key(caller: Caller, node_management: bool) -> str | None:
    """The limiter bucket of a request, or None when it is not rate limited.

    Free-tier API keys are limited per key (SRS-API-02). Commercial keys and paid L402 tokens
    are not (SRS-API-03). Node operators are exempt on node-management endpoints (SRS 4.8.1)
    and count per node key elsewhere, on the free tier's terms.
    """
    if caller.kind is CallerKind.NODE:
        return None if node_management else f"node:{caller.subject}"
    if caller.plan is Plan.COMMERCIAL:
        return None
    return f"key:{caller.subject}"


@attrs.frozen
class SignedRequest:
    """The signature headers of one HTTP request, checked for shape."""

    public_key: str = attrs.field(validator=fields.hex_digest(32))
    timestamp: int = attrs.field(validator=fields.timestamp())
    nonce: str = attrs.field(validator=fields.matches(_NONCE, "16 to 64 lower-case hex digits"))
    signature: str = attrs.field(
        validator=fields.matches(SIGNATURE_HEX, "128 lower-case hex digits")
    )


def parse_signed_request(
    public_key: str, timestamp: str, nonce: str, signature: str
) -> SignedRequest:
    """Read the four signature headers; InvalidValue names the header that is malformed."""
    key = parse_public_key(public_key.strip().lower(), "X-OWM-Node-Key")
    text = timestamp.strip()
    if not text.isdigit() or len(text) > 12:
        raise InvalidValue("X-OWM-Timestamp", "must be POSIX seconds")
    try:
        return SignedRequest(key, int(text), nonce.strip().lower(), signature.strip().lower())
    except InvalidValue as exc:
        header = {"nonce": "X-OWM-Nonce", "signature": "X-OWM-Signature"}.get(exc.field, exc.field)
        raise InvalidValue(header, exc.reason) from None


def signed_request_message(
    coordinator_key: str, method: str, path_and_query: str, timestamp: int, nonce: str,
    body: bytes,
) -> bytes:
    """The bytes a node signs for one request: domain tag, then one line per part.

    The first line, the public key of the coordinator the request is meant for (64 hex, what
    nodes pin as ``[coordinator] public_key``), binds the signature to that coordinator: a
    request signed for a testnet coordinator does not verify at the mainnet one, however
    fresh (SRS-SEC-03). Coordinators that share a store share that key (SRS-COORD-05).
    """
    lines = [
        coordinator_key.lower(),
        method.upper(),
        path_and_query,
        str(timestamp),
        nonce,
        hashlib.sha256(body).hexdigest(),
    ]
    return SIGNED_REQUEST_DOMAIN + "\n".join(lines).encode("utf-8")


def verify_signed_request(
    request: SignedRequest, coordinator_key: str, method: str, path_and_query: str, body: bytes
) -> None:
    """Raise SignatureInvalid unless the node's key signed exactly this request, for the
    coordinator whose public key is ``coordinator_key``."""
    message = signed_request_message(
        coordinator_key, method, path_and_query, request.timestamp, request.nonce, body
    )
    verify_signature(request.public_key, message, bytes.fromhex(request.signature))


@attrs.define
class SignedRequestGuard:
    """Refuses stale, future-dated and repeated signed requests (in memory, one per process).

    Call :meth:`accept` after the signature verified, so forged requests cannot burn nonces.
    Memory is bounded by the requests seen within one window (and ``max_entries``). With a
    ``ledger`` (several coordinators on one database, SRS-COORD-05) a request's nonce must
    also be new to the ledger every coordinator shares, kept for twice the window.
    """

    window_s: int = attrs.field(default=DEFAULT_SIGNED_WINDOW_S, validator=fields.integer(1))
    max_entries: int = attrs.field(default=1_000_000, validator=fields.integer(minimum=1))
    ledger: NonceLedger | None = attrs.field(default=None, kw_only=True)
    _seen: set[tuple[str, str]] = attrs.field(init=False, factory=set)
    _expiry: list[tuple[int, str, str]] = attrs.field(init=False, factory=list)
    _latest_now: int = attrs.field(init=False, default=0)

    def accept(self, request: SignedRequest, now: int) -> None:
        """Record the request, or raise ReplayRejected if stale, future-dated or repeated, and
        ReplayGuardFull (a rate limit: retry once the oldest nonce is forgotten) if it is none
        of these but ``max_entries`` nonces are held already."""
        self._latest_now = max(self._latest_now, now)
        oldest = self._latest_now - self.window_s
        while self._expiry and self._expiry[0][0] < oldest:
            _, key, nonce = heapq.heappop(self._expiry)
            self._seen.discard((key, nonce))
        if request.timestamp < oldest:
            raise ReplayRejected(f"signed request is older than {self.window_s} s")
        if request.timestamp > now + self.window_s:
            raise ReplayRejected(f"signed request is dated more than {self.window_s} s ahead")
        pair = (request.public_key, request.nonce)
        if pair in self._seen:
            raise ReplayRejected("this nonce was already used; sign each request afresh")
        if len(self._seen) >= self.max_entries:
            retry = max(1, self._expiry[0][0] + self.window_s + 1 - self._latest_now)
            raise ReplayGuardFull("too many signed requests in flight", retry)
        if self.ledger is not None and not self.ledger.claim(
            request.public_key, request.nonce, request.timestamp + 2 * self.window_s
        ):
            raise ReplayRejected("this nonce was already used; sign each request afresh")
        self._seen.add(pair)
        heapq.heappush(self._expiry, (request.timestamp, request.public_key, request.nonce))
