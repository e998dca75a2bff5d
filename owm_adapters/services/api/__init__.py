"""The public API's application services: the use cases behind every ``/v1`` endpoint, with I/O.

One module per capability, mirroring :mod:`owm_server.http.v1`:

* :mod:`~owm_adapters.services.api.access` — API keys, L402 tokens (SRS-API-03, SRS-LN-07),
  node-signed requests and the free-tier rate limiter (SRS-API-02);
* :mod:`~owm_adapters.services.api.releases` — model releases and their OTS proofs
  (SRS-API-01);
* :mod:`~owm_adapters.services.api.nodes` — registration and deregistration through the
  coordinator's own use cases (the same as gRPC, never a second implementation), a node's
  status, earnings and stake;
* :mod:`~owm_adapters.services.api.views` — the cached public read models: network, slashing
  log, pool statistics and the live dashboard (SRS-PERF-08);
* :mod:`~owm_adapters.services.api.history` — the recent history the dashboard charts
  (heartbeats, payments, latency, stake events, FL rounds);
* :mod:`~owm_adapters.services.api.governance` — proposals and comments by API-key callers
  (SRS-GOV-01..05), logged in the governance log; signed statements and the treasury are
  :mod:`owm_adapters.services.governance`'s (``statements``);
* :mod:`~owm_adapters.services.api.bounties` — GitHub bounties and repository analyses.

:class:`ApiServices` holds one of each, plus the optional services other packages own
(queries, knowledge, FL rounds, slashing), as typed attributes the HTTP handlers look up; the
optional ones are arguments of :meth:`ApiServices.over`, so the composition root wires
everything at construction; the value is frozen, so nothing is patched in afterwards.
It owns what the HTTP shell must not: the clock and OS randomness, the coordinator it shares
with the gRPC control plane, the store, the treasury's Lightning node and the read cache its
capabilities share (public aggregates are recomputed at most once per ``cache_ttl_ms``).

Every method returns domain values or raises :class:`~owm_core.errors.DomainError`; rendering
is the shell's business.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs

from owm_adapters.services.api.access import (
    COMMERCIAL_ACCESS_S,
    L402_SERVICE,
    AccessOffer,
    ApiAccess,
    issue_api_key,
)
from owm_adapters.services.api.bounties import Bounties
from owm_adapters.services.api.config import ApiConfig, ReadCache
from owm_adapters.services.api.governance import Governance
from owm_adapters.services.api.history import History
from owm_adapters.services.api.nodes import Nodes
from owm_adapters.services.api.quotas import QueryShare
from owm_adapters.services.api.releases import Releases
from owm_adapters.services.api.views import DashboardFrame, LivePool, MinerView, PoolPage, Views
from owm_adapters.services.bounty_book import BountyBook, BountyTerms
from owm_adapters.services.coordinator.service import CoordinatorService
from owm_adapters.services.data_payouts import DataCreditLedger
from owm_adapters.services.fl_rounds import FlRoundService
from owm_adapters.services.github_app import GitHubApp
from owm_adapters.services.governance import GovernanceService
from owm_adapters.services.knowledge import KnowledgeBase
from owm_adapters.services.queries import QueryService
from owm_adapters.services.slashing import SlashingService
from owm_core.coordination.tasks import replicas_funded
from owm_core.ports.clock import Clock
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories


@attrs.frozen
class ApiServices:
    """The public API's services, one attribute per capability (see the module docstring).

    Frozen: :meth:`over` wires every capability at construction; a test that needs another
    wiring (no FL service, a slashing service) builds another with ``attrs.evolve``.
    """

    coordinator: CoordinatorService
    config: ApiConfig
    access: ApiAccess
    releases: Releases
    nodes: Nodes
    views: Views
    history: History
    governance: Governance
    bounties: Bounties
    #: Data contributors' credits, payouts and payees.
    credits: DataCreditLedger
    #: Slashing acknowledgements and pending cases (None when no slashing service is wired).
    slashing: SlashingService | None = None
    #: The conglomerate's query path (None without a knowledge base: queries answer 503).
    queries: QueryService | None = None
    #: Sub-models and contributed datasets (None without a knowledge base: the data endpoints
    #: answer 503).
    knowledge: KnowledgeBase | None = None
    #: Federated-learning rounds and uploads (None when ``[fl]`` is off: 503).
    fl: FlRoundService | None = None
    #: Signed governance statements, the governance log and the treasury's PSBTs.
    statements: GovernanceService | None = None
    #: The GitHub App's webhook intake (None while ``[github]`` is off: the webhook answers 503).
    github: GitHubApp | None = None
    #: Each caller's share of the treasury's daily query budget (None: no query path, or
    #: ``caller_share_msat`` 0).
    query_share: QueryShare | None = None

    @property
    def repositories(self) -> Repositories:
        """The coordinator's store."""
        return self.coordinator.repositories

    @property
    def lightning(self) -> Lightning:
        """The treasury's Lightning node (invoices for L402 tokens)."""
        return self.coordinator.lightning

    @property
    def clock(self) -> Clock:
        """The coordinator's clock."""
        return self.coordinator.clock

    @classmethod
    def over(
        cls,
        coordinator: CoordinatorService,
        l402_secret: bytes,
        config: ApiConfig | None = None,
        *,
        entropy: Callable[[int], bytes] = os.urandom,
        slashing: SlashingService | None = None,
        queries: QueryService | None = None,
        knowledge: KnowledgeBase | None = None,
        fl: FlRoundService | None = None,
        ots_chain: str = "none",
        statements: GovernanceService | None = None,
        github: GitHubApp | None = None,
        pool: LivePool | None = None,
    ) -> ApiServices:
        """Every capability over ``coordinator``'s store, treasury and clock, sharing one read
        cache; ``l402_secret`` derives the L402 macaroons' root keys."""
        config = config or ApiConfig()
        store, clock = coordinator.repositories, coordinator.clock
        cache = ReadCache(clock, config.cache_ttl_ms)
        terms = BountyTerms(config.max_bounty_sat, config.bounty_budget_sat)
        book = BountyBook(store, clock, coordinator.lightning, terms, entropy)
        if statements is None:  # proposals and comments are logged all the same
            statements = GovernanceService(store, clock, coordinator.signer,
                                           shared=coordinator.config.shared_state)
        return cls(
            coordinator=coordinator,
            config=config,
            access=ApiAccess(store, coordinator.lightning, clock, config, l402_secret, entropy,
                             coordinator_key=coordinator.sealing.public_key_hex,
                             shared=coordinator.config.shared_state),
            releases=Releases(store, cache, ots_chain),
            nodes=Nodes(coordinator, cache, config),
            views=Views(
                store, clock, coordinator.config.liveness, cache, config, pool=pool
            ),
            history=History(store, clock),
            governance=Governance(store, clock, cache, config, entropy, log=statements),
            bounties=Bounties(
                store, clock, cache, config, entropy, book,
                runner=github.analyses if github is not None else None,
            ),
            credits=DataCreditLedger(store, clock),
            slashing=slashing,
            queries=queries,
            knowledge=knowledge,
            fl=fl,
            statements=statements,
            github=github,
            query_share=_query_share(
                queries, coordinator, store if coordinator.config.shared_state else None
            ),
        )


def _query_share(
    queries: QueryService | None, coordinator: CoordinatorService, ledger: Repositories | None
) -> QueryShare | None:
    """Each caller's share of the ``queries`` budget, each query counted at the most the
    coordinator's market escrows for it; in the store's quotas when coordinators share it
    (``ledger``)."""
    if queries is None or queries.config.caller_share_msat == 0:
        return None
    most = queries.most_msat(replicas_funded(coordinator.market.funding.policy))
    return QueryShare(queries.config.caller_share_msat, most,
                      ledger=ledger.quotas if ledger is not None else None)


__all__ = [
    "COMMERCIAL_ACCESS_S",
    "L402_SERVICE",
    "AccessOffer",
    "ApiAccess",
    "ApiConfig",
    "ApiServices",
    "Bounties",
    "DashboardFrame",
    "Governance",
    "History",
    "LivePool",
    "MinerView",
    "Nodes",
    "PoolPage",
    "QueryShare",
    "ReadCache",
    "Releases",
    "Views",
    "issue_api_key",
]
