"""Who may call the public API, and how often (SRS 4.8.1, SRS-API-02/03, SRS-LN-07).

:class:`ApiAccess` turns a credential into a :class:`~owm_core.access.callers.Caller`: an API
key (only its SHA-256 is stored), an L402 token (a macaroon whose invoice the treasury's
Lightning node saw settled less than 24 hours ago) or a registered node's signed request
(replays refused). It counts each request against the caller's free-tier window and sells
24 hours of commercial access over Lightning. :func:`issue_api_key` is the one way a key is
made, here and in ``owm-coordinator api-key create``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import attrs

from owm_adapters.services.api.config import ApiConfig, ReadCache
from owm_adapters.services.api.quotas import DailyQuota, QueryCredit
from owm_core.access import l402
from owm_core.access.api_keys import ApiKey, Plan, secret_sha256
from owm_core.access.callers import (
    Caller,
    CallerKind,
    SignedRequestGuard,
    parse_signed_request,
    rate_limit_key,
    verify_signed_request,
)
from owm_core.access.ratelimit import RateLimit, SlidingWindowLimiter, ip_key
from owm_core.errors import (
    InvalidValue,
    L402Invalid,
    PaymentRequired,
    RateLimited,
    ReplayGuardFull,
    SignatureInvalid,
)
from owm_core.identity.keys import node_id_from_public_key
from owm_core.payments.lightning import Invoice, InvoiceState
from owm_core.ports.clock import Clock
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories

L402_SERVICE = "owm-api"
COMMERCIAL_ACCESS_S = 86_400
"""A Lightning payment unlocks commercial access for 24 hours (SRS-API-03)."""
REFUSED_KEYS_KEPT = 1_000
"""Unknown or revoked API keys whose refusal is remembered (the most recently tried)."""


@attrs.frozen
class AccessOffer:
    """An invoice for commercial access and the L402 macaroon it unlocks (SRS-API-03)."""

    invoice: Invoice
    macaroon: l402.Macaroon
    valid_for_s: int

    @property
    def www_authenticate(self) -> str:
        """The ``WWW-Authenticate`` value of a 402 answer."""
        return l402.format_challenge(l402.Challenge(self.macaroon, self.invoice.bolt11))


def issue_api_key(
    repositories: Repositories,
    owner: str,
    plan: Plan,
    now: int,
    entropy: Callable[[int], bytes] = os.urandom,
) -> tuple[ApiKey, str]:
    """Store a new API key for ``owner`` and return it with its secret ``owm_<48 hex>``.

    The secret is returned once and never stored — only its SHA-256 (SRS-API-02).
    """
    secret = "owm_" + entropy(24).hex()
    key = ApiKey(
        key_id="key_" + entropy(8).hex(),
        secret_sha256=secret_sha256(secret),
        owner=owner,
        plan=plan,
        created_at=now,
    )
    repositories.api_keys.add(key)
    return key, secret


class ApiAccess:
    """API keys, L402 tokens, signed requests and the free-tier rate limit (module docstring)."""

    def __init__(
        self,
        repositories: Repositories,
        lightning: Lightning,
        clock: Clock,
        config: ApiConfig,
        l402_secret: bytes,
        entropy: Callable[[int], bytes] = os.urandom,
        *,
        coordinator_key: str,
        shared: bool = False,
    ) -> None:
        """``coordinator_key``: this coordinator's public key, which signed requests must name
        (:func:`~owm_core.access.callers.signed_request_message`). ``shared``: several
        coordinators share the store (SRS-COORD-05), so the sliding windows (free tier per
        key, invoices per client, signed requests per key) count in the store, across them,
        and so do the daily quotas and the per-query credit of L402 tokens; the signed
        requests' nonces are claimed there too."""
        if len(l402_secret) < 32:
            raise InvalidValue("l402_secret", "must be at least 32 random bytes")
        self._repositories = repositories
        self._lightning = lightning
        self._clock = clock
        self._config = config
        self._coordinator_key = coordinator_key
        self._l402_secret = l402_secret
        self._entropy = entropy
        ledger = repositories.rate_log if shared else None
        self._limiter = SlidingWindowLimiter(config.free_tier, ledger=ledger, scope="api/free")
        self._limiter_lock = threading.Lock()
        quotas = repositories.quotas if shared else None
        self._paid_quota = DailyQuota(config.paid_requests_per_day, quotas, "api/paid")
        self._invoice_limiter = SlidingWindowLimiter(
            config.invoices_per_client, ledger=ledger, scope="api/invoices"
        )
        self._public_limiter = SlidingWindowLimiter(config.public_per_client)
        self._write_quota = DailyQuota(config.writes_per_day, quotas, "api/writes")
        self._guard = SignedRequestGuard(
            window_s=config.signed_window_s, max_entries=config.replay_guard_max_entries,
            ledger=repositories.nonces if shared else None,
        )
        self._guard_lock = threading.Lock()
        self._per_key = SlidingWindowLimiter(
            RateLimit(limit=config.signed_per_key, window_s=config.signed_window_s),
            ledger=ledger, scope="api/signed",
        )
        self._credit = QueryCredit(
            config.query_price_msat, ledger=repositories.token_credits if shared else None
        ) if config.query_price_msat else None
        self._keys = ReadCache(clock, config.auth_cache_ttl_ms)
        self._refused_keys = ReadCache(clock, config.auth_cache_ttl_ms, REFUSED_KEYS_KEPT)
        self._paid = ReadCache(clock, config.auth_cache_ttl_ms)

    def create_api_key(self, owner: str, plan: Plan = Plan.FREE) -> tuple[ApiKey, str]:
        """A new API key and its secret (shown once; only its SHA-256 is stored)."""
        return issue_api_key(self._repositories, owner, plan, self._clock.now(), self._entropy)

    def caller_by_api_key(self, secret: str) -> Caller:
        """The caller behind an API key secret; SignatureInvalid for unknown or revoked keys.

        The answer (caller or refusal) is reused for ``auth_cache_ttl_ms``: a revoked key stops
        working within that time. Refusals are kept apart, in a smaller cache, so that a flood
        of random keys pushes out only other refusals, never a key that works (SRS-SEC-04).
        """
        digest = secret_sha256(secret)
        known, cached = self._keys.lookup(digest)
        caller: Caller | None = cached
        if not known:
            if self._refused_keys.lookup(digest)[0]:
                raise SignatureInvalid("unknown or revoked API key")
            caller = self._caller_of(digest, secret)
            (self._keys if caller is not None else self._refused_keys).put(digest, caller)
        if caller is None:
            raise SignatureInvalid("unknown or revoked API key")
        return caller

    def _caller_of(self, digest: str, secret: str) -> Caller | None:
        key = self._repositories.api_keys.get_by_secret_sha256(digest)
        if key is None or not key.accepts(secret):
            return None
        return Caller(CallerKind.API_KEY, key.key_id, key.owner, key.plan)

    def caller_by_l402(self, authorization: str) -> Caller:
        """The caller behind ``Authorization: L402 <macaroon>:<preimage>`` (SRS-API-03).

        Valid when the macaroon verifies with this server's key, the preimage matches its
        payment hash, and the invoice was settled less than 24 hours ago.
        """
        credential = l402.parse_authorization(authorization)
        token = l402.TokenIdentifier.decode(credential.macaroon.identifier)
        root_key = l402.derive_root_key(self._l402_secret, token.token_id)
        now = self._clock.now()
        l402.verify(credential, root_key, service=L402_SERVICE, now=now)
        paid = self._paid.get(("paid", token.payment_hash), lambda: self._settled(token))
        if paid is None:
            self._paid.forget(("paid", token.payment_hash))  # look again once it is paid
            raise L402Invalid("the invoice of this token is not paid")
        settled_at, amount_msat = paid
        if now >= settled_at + COMMERCIAL_ACCESS_S:
            raise L402Invalid("the 24 hours this payment unlocked are over; pay again")
        token_hex = token.token_id.hex()
        if self._credit is not None:
            self._credit.open(token_hex, amount_msat, settled_at + COMMERCIAL_ACCESS_S)
        return Caller(CallerKind.L402, token_hex, f"l402:{token_hex[:16]}", Plan.COMMERCIAL)

    def _settled(self, token: l402.TokenIdentifier) -> tuple[int, int] | None:
        """When the token's invoice was settled and what it paid; None while unpaid."""
        invoice = self._lightning.lookup_invoice(token.payment_hash.hex())
        if invoice.state is not InvoiceState.SETTLED:
            return None
        settled_at = invoice.settled_at if invoice.settled_at is not None else self._clock.now()
        return settled_at, invoice.amount_msat

    def charge_query(self, caller: Caller) -> int | None:
        """Take one query's price from an L402 token's credit when per-query pricing is on.

        Returns the msat left, or None when nothing is charged (pricing off, or a caller that
        is not an L402 token: keys keep their quotas). Raises :class:`PaymentRequired` when
        the token's credit no longer covers a query (SRS-API-03).
        """
        if self._credit is None or caller.kind is not CallerKind.L402:
            return None
        left = self._credit.charge(caller.subject, self._clock.now())
        if left is None:
            raise PaymentRequired(
                f"each query costs {self._credit.price_msat} msat and this token's payment is "
                "spent; pay the new invoice"
            )
        return left

    def refund_query(self, caller: Caller) -> None:
        """Give back the price of a query that failed before it was answered."""
        if self._credit is not None and caller.kind is CallerKind.L402:
            self._credit.refund(caller.subject)

    def caller_by_signature(
        self,
        headers: tuple[str, str, str, str],
        method: str,
        path_and_query: str,
        body: bytes,
    ) -> Caller:
        """The registered node that signed this request; SignatureInvalid / ReplayRejected,
        or ReplayGuardFull (a rate limit) when the guard, or this key's share of it, is full.

        The nonce is recorded only after the signature verified and its key proved to be a
        registered node's, so strangers cannot fill the replay guard and lock every node out
        (SRS-SEC-03); one registered key records at most ``signed_per_key`` per window.
        """
        request = parse_signed_request(*headers)
        try:
            verify_signed_request(request, self._coordinator_key, method, path_and_query, body)
        except SignatureInvalid:
            raise SignatureInvalid(
                "signature does not verify: sign owm/http-request/v2 over this coordinator's "
                f"public key {self._coordinator_key}, the method, path, timestamp, nonce and "
                "body hash"
            ) from None
        node_id = node_id_from_public_key(request.public_key)
        if self._repositories.nodes.get(node_id) is None:
            raise SignatureInvalid("the signing key belongs to no registered node")
        now = self._clock.now()
        with self._guard_lock:
            admission = self._per_key.admit(node_id, now)
            if not admission.admitted:
                raise ReplayGuardFull(
                    f"more than {self._config.signed_per_key} signed requests by this key in "
                    f"{self._config.signed_window_s} s",
                    max(1, admission.retry_after_s),
                )
            self._guard.accept(request, now)
        return Caller(CallerKind.NODE, node_id, node_id, Plan.FREE)

    def admit(self, caller: Caller, node_management: bool, write: bool = False) -> int | None:
        """Count one request against the caller's window; RateLimited when it is full.

        Free-tier callers count against the free tier's window (SRS-API-02); commercial keys
        and L402 tokens against a daily quota of requests, and every caller but a node on
        node-management endpoints against a daily quota of writes (SRS-API-03). Returns the
        requests left, or None when the caller is not limited.
        """
        now = self._clock.now()
        if write and not (caller.kind is CallerKind.NODE and node_management):
            _spend(self._write_quota, caller, now, "writes per day per key")
        if caller.plan is Plan.COMMERCIAL and caller.kind is not CallerKind.NODE:
            return _spend(self._paid_quota, caller, now, "requests per day per paid key")
        key = rate_limit_key(caller, node_management)
        if key is None:
            return None
        with self._limiter_lock:
            admission = self._limiter.admit(key, now)
        if not admission.admitted:
            raise RateLimited(
                f"the free tier allows {self._config.free_tier.limit} requests per "
                f"{self._config.free_tier.window_s} s per key; pay over Lightning for more",
                retry_after_s=admission.retry_after_s,
            )
        return admission.remaining

    def admit_public(self, client_ip: str | None) -> None:
        """Count one request to a public operation against its client address (an IPv6 /64
        counts as one; callers with no known address share one bucket); RateLimited beyond
        ``public_per_client``. Counted in this process only: it bounds the work strangers make
        this coordinator do before anything identifies them (SRS-SEC-04)."""
        with self._limiter_lock:
            admission = self._public_limiter.admit(_client_key(client_ip), self._clock.now())
        if not admission.admitted:
            rate = self._config.public_per_client
            raise RateLimited(
                f"more than {rate.limit} requests to public operations in {rate.window_s} s "
                "from this address; slow down",
                retry_after_s=admission.retry_after_s,
            )

    def offer_access(self, client_ip: str | None = None) -> AccessOffer:
        """An invoice for 24 hours of commercial access and its L402 macaroon (SRS-API-03).

        Each offer makes the treasury's Lightning node create and keep an invoice, so a client
        address (an IPv6 /64 counts as one) gets ``invoices_per_client`` of them per window;
        beyond that RateLimited. Callers with no known address share one bucket.
        """
        with self._limiter_lock:
            admission = self._invoice_limiter.admit(_client_key(client_ip), self._clock.now())
        if not admission.admitted:
            raise RateLimited(
                "too many invoices for this address; pay one of them or try again later",
                retry_after_s=admission.retry_after_s,
            )
        invoice = self._lightning.create_invoice(
            self._config.l402_price_msat,
            "OWM API: 24 h commercial access",
            self._config.invoice_expiry_s,
        )
        token_id = self._entropy(32)
        macaroon = l402.mint_token(
            l402.derive_root_key(self._l402_secret, token_id),
            bytes.fromhex(invoice.payment_hash),
            token_id,
            service=L402_SERVICE,
            valid_until=invoice.expires_at + COMMERCIAL_ACCESS_S,
        )
        return AccessOffer(invoice, macaroon, COMMERCIAL_ACCESS_S)


def _client_key(client_ip: str | None) -> str:
    """The limiter key of a client address (``ip:unknown`` when there is none or it is not an
    IP address, e.g. a test client)."""
    try:
        return ip_key(client_ip) if client_ip is not None else "ip:unknown"
    except InvalidValue:
        return "ip:unknown"


def _spend(quota: DailyQuota, caller: Caller, now: int, what: str) -> int:
    """Count one request of ``caller`` against ``quota``; the requests left, or RateLimited
    naming ``what`` is spent (SRS-API-03)."""
    check = quota.admit(f"{caller.kind.value}:{caller.subject}", now)
    if not check.admitted:
        raise RateLimited(
            f"{quota.limit} {what} are spent; try again tomorrow (UTC)",
            retry_after_s=check.retry_after_s,
        )
    return check.remaining
