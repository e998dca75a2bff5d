"""The public API's application service: the use cases behind every ``/v1`` endpoint, with I/O.

:class:`ApiServices` owns what the HTTP shell must not: the clock and OS randomness, the
coordinator application it shares with the gRPC control plane (node registration and
deregistration call :class:`~owm_adapters.services.coordinator.service.CoordinatorService` — the
same
use cases as gRPC, never a second implementation), the repositories, the treasury's Lightning
node (invoices for L402 and API access), the free-tier rate limiter (SRS-API-02), the L402
token checks (SRS-API-03, SRS-LN-07), the signed-request guard for node operators, and short
read caches that keep the public read endpoints fast under 1,000 concurrent clients
(SRS-PERF-08): public aggregates are recomputed at most once per ``cache_ttl_ms``.

Every method returns domain values or raises :class:`~owm_core.errors.DomainError`; rendering
is the shell's business.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs

from owm_adapters.services.coordinator.service import CoordinatorService
from owm_adapters.services.fl_rounds import FlRoundService
from owm_adapters.services.knowledge import KnowledgeBase
from owm_adapters.services.queries import QueryService
from owm_adapters.services.slashing import SlashingService
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
from owm_core.access.ratelimit import API_KEY_FREE_TIER, RateLimit, SlidingWindowLimiter, Transport
from owm_core.coordination.challenges import Challenge
from owm_core.coordination.network import AnonymousNode, NetworkStats, anonymised, network_stats
from owm_core.coordination.registration import Registered, Registration
from owm_core.errors import (
    InvalidValue,
    L402Invalid,
    NotFound,
    RateLimited,
    SignatureInvalid,
)
from owm_core.governance.contributions import (
    AnalysisRequest,
    Bounty,
    BountyStatus,
    open_bounty,
    request_analysis,
)
from owm_core.governance.proposals import (
    Comment,
    Proposal,
    ProposalStatus,
    ProposalType,
    add_comment,
)
from owm_core.governance.proposals import submit_proposal as new_proposal
from owm_core.identity.keys import node_id_from_public_key
from owm_core.nodes.registry import Node, NodeStatus
from owm_core.nodes.tiers import StakeRequirements
from owm_core.payments.lightning import Invoice, InvoiceState
from owm_core.payments.records import RewardPayment
from owm_core.pool.stats import (
    BLOCK_WINDOW_S,
    MinerStats,
    MiningPayout,
    PoolStats,
    miner_stats,
    per_miner_hashrate_1h,
    pool_stats,
)
from owm_core.ports.clock import Clock
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories
from owm_core.provenance.releases import ModelRelease, current_release
from owm_core.stake.channel import Stake
from owm_core.stake.slashing import SlashingLogEntry

L402_SERVICE = "owm-api"
COMMERCIAL_ACCESS_S = 86_400
"""A Lightning payment unlocks commercial access for 24 hours (SRS-API-03)."""

_T = TypeVar("_T")


@attrs.frozen
class ApiConfig:
    """Tuning of the public API (defaults suit the embedded single-machine coordinator)."""

    l402_price_msat: int = 10_000
    """What 24 hours of commercial access cost (10 sat by default)."""
    invoice_expiry_s: int = 600
    free_tier: RateLimit = API_KEY_FREE_TIER
    cache_ttl_ms: int = 1_000
    """How stale public aggregates (stats, lists) may be; 0 disables the cache."""
    auth_cache_ttl_ms: int = 5_000
    """How long an API key lookup is reused; a revoked key stops working within this time."""
    signed_window_s: int = 300
    dashboard_interval_s: float = 5.0
    """How often the live mining dashboard (WebSocket) pushes metrics."""
    max_list: int = 500


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


@attrs.frozen
class MinerView:
    """A miner's statistics and its recent payouts (GET /v1/mining/nodes/{node_id})."""

    stats: MinerStats
    payouts: Sequence[MiningPayout]


@attrs.frozen
class DashboardFrame:
    """One push of the live pool dashboard (SRS-POOL-09)."""

    pool: PoolStats
    hashrate_by_miner_1h: dict[str, int]
    recent_payouts: Sequence[MiningPayout]


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


class _TtlCache:
    """A tiny read-through cache keyed by name; values expire after ``ttl_ms``."""

    def __init__(self, clock: Clock, ttl_ms: int, max_entries: int = 10_000) -> None:
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._max = max_entries
        self._values: dict[Any, tuple[int, Any]] = {}

    def get(self, key: Any, compute: Callable[[], _T]) -> _T:
        if self._ttl_ms <= 0:
            return compute()
        now = self._clock.monotonic_ms()
        hit = self._values.get(key)
        if hit is not None and now - hit[0] < self._ttl_ms:
            value: _T = hit[1]
            return value
        value = compute()
        if len(self._values) >= self._max:
            self._values.clear()
        self._values[key] = (now, value)
        return value

    def forget(self, key: Any) -> None:
        self._values.pop(key, None)

    def clear(self) -> None:
        self._values.clear()


class ApiServices:
    """The public API's use cases (see the module docstring)."""

    def __init__(
        self,
        coordinator: CoordinatorService,
        l402_secret: bytes,
        config: ApiConfig | None = None,
        *,
        entropy: Callable[[int], bytes] = os.urandom,
        slashing: SlashingService | None = None,
    ) -> None:
        if len(l402_secret) < 32:
            raise InvalidValue("l402_secret", "must be at least 32 random bytes")
        self.coordinator = coordinator
        self.repositories: Repositories = coordinator.repositories
        self.lightning: Lightning = coordinator.lightning
        self.clock: Clock = coordinator.clock
        #: Slashing acknowledgements and pending cases (None when no slashing service is wired).
        self.slashing: SlashingService | None = slashing
        #: The conglomerate's query path (None without a knowledge base: queries answer 503).
        self.queries: QueryService | None = None
        #: Sub-models and contributed datasets (None without a knowledge base: the data
        #: endpoints answer 503).
        self.knowledge: KnowledgeBase | None = None
        #: Federated-learning rounds and uploads (None when ``[fl]`` is off: 503).
        self.fl: FlRoundService | None = None
        self.config = config or ApiConfig()
        self._l402_secret = l402_secret
        self._entropy = entropy
        self._limiter = SlidingWindowLimiter(self.config.free_tier)
        self._limiter_lock = threading.Lock()
        self._guard = SignedRequestGuard(window_s=self.config.signed_window_s)
        self._guard_lock = threading.Lock()
        self._cache = _TtlCache(self.clock, self.config.cache_ttl_ms)
        self._keys = _TtlCache(self.clock, self.config.auth_cache_ttl_ms)
        self._paid = _TtlCache(self.clock, self.config.auth_cache_ttl_ms)

    # -- model versions (SRS-API-01, SRS-NODE-10) --------------------------------------------

    def current_release(self) -> ModelRelease | None:
        """The release answering queries now (its id and OTS status head every response)."""
        return self._cache.get(
            "current", lambda: current_release(self.repositories.releases.list())
        )

    def releases(self) -> Sequence[ModelRelease]:
        """Every published release, newest first."""
        return self._cache.get("releases", self.repositories.releases.list)

    def release(self, release_id: str) -> ModelRelease:
        """One release; NotFound if unknown."""
        found = self.repositories.releases.get(release_id)
        if found is None:
            raise NotFound(f"no model version {release_id}")
        return found

    def publish_release(self, release: ModelRelease) -> None:
        """Record a new release, or a new proof/status of a known one (FL rounds, OTS upgrades)."""
        if self.repositories.releases.get(release.release_id) is None:
            self.repositories.releases.add(release)
        else:
            self.repositories.releases.save(release)
        self._cache.clear()

    # -- authentication and limits (SRS 4.8.1, SRS-API-02/03) -------------------------------

    def create_api_key(self, owner: str, plan: Plan = Plan.FREE) -> tuple[ApiKey, str]:
        """A new API key and its secret (shown once; only its SHA-256 is stored)."""
        return issue_api_key(self.repositories, owner, plan, self.clock.now(), self._entropy)

    def caller_by_api_key(self, secret: str) -> Caller:
        """The caller behind an API key secret; SignatureInvalid for unknown or revoked keys.

        The answer (caller or refusal) is reused for ``auth_cache_ttl_ms``: a revoked key stops
        working within that time.
        """
        digest = secret_sha256(secret)
        caller = self._keys.get(("key", digest), lambda: self._caller_of(digest, secret))
        if caller is None:
            raise SignatureInvalid("unknown or revoked API key")
        return caller

    def _caller_of(self, digest: str, secret: str) -> Caller | None:
        key = self.repositories.api_keys.get_by_secret_sha256(digest)
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
        now = self.clock.now()
        l402.verify(credential, root_key, service=L402_SERVICE, now=now)
        settled_at = self._paid.get(("paid", token.payment_hash), lambda: self._settled_at(token))
        if settled_at is None:
            self._paid.forget(("paid", token.payment_hash))  # look again once it is paid
            raise L402Invalid("the invoice of this token is not paid")
        if now >= settled_at + COMMERCIAL_ACCESS_S:
            raise L402Invalid("the 24 hours this payment unlocked are over; pay again")
        token_hex = token.token_id.hex()
        return Caller(CallerKind.L402, token_hex, f"l402:{token_hex[:16]}", Plan.COMMERCIAL)

    def _settled_at(self, token: l402.TokenIdentifier) -> int | None:
        invoice = self.lightning.lookup_invoice(token.payment_hash.hex())
        if invoice.state is not InvoiceState.SETTLED:
            return None
        return invoice.settled_at if invoice.settled_at is not None else self.clock.now()

    def caller_by_signature(
        self,
        headers: tuple[str, str, str, str],
        method: str,
        path_and_query: str,
        body: bytes,
    ) -> Caller:
        """The registered node that signed this request; SignatureInvalid / ReplayRejected."""
        request = parse_signed_request(*headers)
        verify_signed_request(request, method, path_and_query, body)
        with self._guard_lock:
            self._guard.accept(request, self.clock.now())
        node_id = node_id_from_public_key(request.public_key)
        if self.repositories.nodes.get(node_id) is None:
            raise SignatureInvalid("the signing key belongs to no registered node")
        return Caller(CallerKind.NODE, node_id, node_id, Plan.FREE)

    def admit(self, caller: Caller, node_management: bool) -> int | None:
        """Count one request against the caller's window; RateLimited when it is full.

        Returns the requests left in the window, or None when the caller is not limited.
        """
        key = rate_limit_key(caller, node_management)
        if key is None:
            return None
        with self._limiter_lock:
            admission = self._limiter.admit(key, self.clock.now())
        if not admission.admitted:
            raise RateLimited(
                f"the free tier allows {self.config.free_tier.limit} requests per "
                f"{self.config.free_tier.window_s} s per key; pay over Lightning for more",
                retry_after_s=admission.retry_after_s,
            )
        return admission.remaining

    def offer_access(self) -> AccessOffer:
        """An invoice for 24 hours of commercial access and its L402 macaroon (SRS-API-03)."""
        invoice = self.lightning.create_invoice(
            self.config.l402_price_msat,
            "OWM API: 24 h commercial access",
            self.config.invoice_expiry_s,
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

    # -- nodes (same use cases as gRPC: CoordinatorService) ----------------------------------

    def challenge(self, public_key: str, purpose: str) -> Challenge:
        """A one-use challenge for registration or deregistration (SRS-SEC-03)."""
        return self.coordinator.challenge(public_key, purpose)

    def register(
        self,
        registration: Registration,
        challenge_nonce: str,
        signature: str,
        client_ip: str | None,
    ) -> Registered:
        """Register a node exactly as gRPC Register does (spec 4.12.2)."""
        registered = self.coordinator.register(
            registration,
            challenge_nonce=challenge_nonce,
            signature=signature,
            transport=Transport.CLEARNET,
            client_ip=client_ip,
        )
        self._cache.clear()
        return registered

    def deregister(
        self, node_id: str, public_key: str, challenge_nonce: str, signature: str
    ) -> Stake:
        """Leave cooperatively exactly as gRPC Deregister does (SRS-STAKE-08)."""
        if node_id_from_public_key(public_key) != node_id:
            raise InvalidValue("public_key", "is not the key of this node_id")
        stake = self.coordinator.deregister(public_key, challenge_nonce, signature)
        self._cache.clear()
        return stake

    def node(self, node_id: str) -> tuple[Node, NodeStatus, Stake | None]:
        """A node's record, public status and stake; NotFound if unknown."""
        node = self.repositories.nodes.get(node_id)
        if node is None:
            raise NotFound(f"no node {node_id}")
        stake = self.repositories.stakes.get(node.public_key)
        return node, self.coordinator.status_of(node_id), stake

    def earnings(self, node_id: str, limit: int = 100) -> tuple[Node, Sequence[RewardPayment]]:
        """A node's reward payments, newest first (SRS-LN-10)."""
        node = self.repositories.nodes.get(node_id)
        if node is None:
            raise NotFound(f"no node {node_id}")
        return node, self.repositories.payments.for_node(node_id, min(limit, self.config.max_list))

    def stake(self, node_id: str) -> Stake:
        """A node's stake record (spec 4.12)."""
        return self.coordinator.stake_status(node_id, None)

    def stake_requirements(self) -> StakeRequirements:
        """The stake minimum of every tier (SRS-STAKE-01)."""
        return self.coordinator.config.stake_requirements

    # -- network -----------------------------------------------------------------------------

    def network_stats(self) -> NetworkStats:
        """Registry counts and total stake (GET /v1/network/stats)."""
        return self._cache.get("network_stats", self._network_stats)

    def _network_stats(self) -> NetworkStats:
        nodes = self.repositories.nodes.list()
        stakes = {
            n.public_key: s for n in nodes if (s := self.repositories.stakes.get(n.public_key))
        }
        return network_stats(nodes, stakes, self.clock.now(), self.coordinator.config.liveness)

    def anonymous_nodes(self, status: NodeStatus | None = None) -> Sequence[AnonymousNode]:
        """The registry without identities (GET /v1/network/nodes), optionally one status."""
        listed = self._cache.get("network_nodes", self._anonymous_nodes)
        return [n for n in listed if status is None or n.status is status]

    def _anonymous_nodes(self) -> list[AnonymousNode]:
        now = self.clock.now()
        liveness = self.coordinator.config.liveness
        return [
            anonymised(node, self.repositories.stakes.get(node.public_key), now, liveness)
            for node in self.repositories.nodes.list()
        ]

    def slashing_log(self, start: int = 0, limit: int = 100) -> Sequence[SlashingLogEntry]:
        """The public slashing log from ``start`` (SRS-STAKE-06)."""
        limit = min(limit, self.config.max_list)
        return self._cache.get(
            ("slashing", start, limit), lambda: self.repositories.slashing_log.entries(start, limit)
        )

    # -- mining (SRS-POOL-09/10) -------------------------------------------------------------

    def _shares(self) -> Sequence[Any]:
        return self._cache.get(
            "shares", lambda: self.repositories.shares.since(self.clock.now() - BLOCK_WINDOW_S)
        )

    def pool_stats(self) -> PoolStats:
        """Pool hashrate, miners, blocks found, payouts (GET /v1/mining/stats)."""
        return self._cache.get(
            "pool_stats",
            lambda: pool_stats(
                self._shares(), self.repositories.mining_payouts.recent(100_000), self.clock.now()
            ),
        )

    def miner(self, node_id: str) -> MinerView:
        """One node's mining statistics and payouts (GET /v1/mining/nodes/{node_id})."""
        if self.repositories.nodes.get(node_id) is None:
            raise NotFound(f"no node {node_id}")
        payouts = self.repositories.mining_payouts.recent(100_000, miner_id=node_id)
        stats = miner_stats(node_id, self._shares(), payouts, self.clock.now())
        return MinerView(stats, payouts[:100])

    def payouts(self, limit: int = 100) -> Sequence[MiningPayout]:
        """Recent payouts, newest first (GET /v1/mining/payouts, public)."""
        limit = min(limit, self.config.max_list)
        return self._cache.get(
            ("payouts", limit), lambda: self.repositories.mining_payouts.recent(limit)
        )

    def dashboard(self) -> DashboardFrame:
        """One frame of the live pool dashboard (WebSocket /v1/mining/dashboard)."""
        return DashboardFrame(
            self.pool_stats(),
            per_miner_hashrate_1h(self._shares(), self.clock.now()),
            self.payouts(10),
        )

    # -- governance (SRS-GOV-01..05) ---------------------------------------------------------

    def proposals(self, status: ProposalStatus | None = None) -> Sequence[Proposal]:
        """Proposals, newest first, optionally of one status."""
        return self._cache.get(
            ("proposals", status), lambda: self.repositories.proposals.list(status)
        )

    def submit_proposal(
        self,
        caller: Caller,
        title: str,
        description: str,
        proposal_type: ProposalType,
        implementation_plan: str,
        requested_sat: int,
    ) -> Proposal:
        """Open a proposal authored by the caller (SRS-GOV-02/03)."""
        proposal = new_proposal(
            proposal_id="prop_" + self._entropy(8).hex(),
            author=caller.owner,
            title=title,
            description=description,
            proposal_type=proposal_type,
            implementation_plan=implementation_plan,
            now=self.clock.now(),
            requested_sat=requested_sat,
        )
        self.repositories.proposals.add(proposal)
        self._cache.clear()
        return proposal

    def comment(self, caller: Caller, proposal_id: str, text: str) -> Proposal:
        """Comment on an open proposal during its comment period (SRS-GOV-04)."""
        with self.repositories.atomic():
            proposal = self.repositories.proposals.get(proposal_id)
            if proposal is None:
                raise NotFound(f"no proposal {proposal_id}")
            updated = add_comment(proposal, Comment(caller.owner, text, self.clock.now()))
            self.repositories.proposals.save(updated)
        self._cache.clear()
        return updated

    # -- GitHub (seed 000/001) ---------------------------------------------------------------

    def bounties(self, status: BountyStatus | None = BountyStatus.OPEN) -> Sequence[Bounty]:
        """Bounties, newest first (open ones by default)."""
        return self._cache.get(
            ("bounties", status),
            lambda: self.repositories.bounties.list(status, self.config.max_list),
        )

    def create_bounty(
        self, caller: Caller, repository: str, issue_number: int, title: str, amount_sat: int
    ) -> Bounty:
        """Open a bounty in the caller's name."""
        bounty = open_bounty(
            bounty_id="bnt_" + self._entropy(8).hex(),
            repository=repository,
            issue_number=issue_number,
            title=title,
            amount_sat=amount_sat,
            created_by=caller.owner,
            now=self.clock.now(),
        )
        self.repositories.bounties.add(bounty)
        self._cache.clear()
        return bounty

    def request_analysis(self, caller: Caller, repository: str) -> AnalysisRequest:
        """Queue a repository for analysis (it stays queued until the GitHub integration runs)."""
        request = request_analysis(
            analysis_id="ana_" + self._entropy(8).hex(),
            repository=repository,
            requested_by=caller.owner,
            now=self.clock.now(),
        )
        self.repositories.analyses.add(request)
        return request

    def analysis(self, analysis_id: str) -> AnalysisRequest:
        """An analysis request in its current state; NotFound if unknown."""
        found = self.repositories.analyses.get(analysis_id)
        if found is None:
            raise NotFound(f"no analysis {analysis_id}")
        return found
