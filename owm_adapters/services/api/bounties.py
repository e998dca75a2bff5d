"""GitHub bounties and repository analyses, opened by API callers.

The values and their rules are :mod:`owm_core.governance.contributions`'; this module gives
them ids, the time and the store (a CLI may build :class:`Bounties` without a cache). An
analysis runs on the GitHub App's :class:`AnalysisRunner`; without the App it stays
``queued``: no result is invented.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from owm_adapters.services.api.config import CachedReads
from owm_adapters.services.bounty_book import BountyBook, Opened
from owm_adapters.services.github_analysis import AnalysisRunner
from owm_core.access.callers import Caller
from owm_core.errors import InvalidValue, must_exist
from owm_core.governance.contributions import (
    AnalysisRequest,
    Bounty,
    BountyStatus,
    open_bounty,
    request_analysis,
)


@attrs.define(eq=False)
class Bounties(CachedReads):
    """List and open bounties; queue and read analyses (see the module docstring)."""

    book: BountyBook | None = None
    _runner: AnalysisRunner | None = None

    def bounties(self, status: BountyStatus | None = BountyStatus.OPEN) -> Sequence[Bounty]:
        """Bounties, newest first (open ones by default); sponsored bounties whose invoices
        were paid meanwhile are opened first."""
        if self.book is not None and self.book.settle_funding():
            self._cache.clear()
        return self._cache.get(
            ("bounties", status),
            lambda: self._repositories.bounties.list(status, self._config.max_list),
        )

    def create_bounty(
        self, caller: Caller, repository: str, issue_number: int, title: str, amount_sat: int,
        sponsor_node: str = "",
    ) -> Opened:  # fmt: skip
        """Open a bounty in the caller's name, of at most ``max_bounty_sat``: from the
        treasury's bounty budget, or sponsored (``sponsor_node``: refunds go there) once the
        returned invoice is paid."""
        if amount_sat > self._config.max_bounty_sat:
            raise InvalidValue("amount_sat", f"must be at most {self._config.max_bounty_sat} sat")
        if self.book is not None:
            opened = self.book.open(
                caller.owner, repository, issue_number, title, amount_sat,
                sponsor_payee=sponsor_node,
            )  # fmt: skip
            self._cache.clear()
            return opened
        if sponsor_node:
            raise InvalidValue("sponsor_node", "this coordinator takes no sponsored bounties")
        bounty = open_bounty(
            bounty_id="bnt_" + self._entropy(8).hex(),
            repository=repository,
            issue_number=issue_number,
            title=title,
            amount_sat=amount_sat,
            created_by=caller.owner,
            now=self._clock.now(),
        )
        self._repositories.bounties.add(bounty)
        self._cache.clear()
        return Opened(bounty)

    def request_analysis(
        self, caller: Caller, repository: str, pull_request: int | None = None
    ) -> AnalysisRequest:
        """Queue a repository (or one of its pull requests) for analysis; with the GitHub App
        it runs at once on the runner's thread (without, it stays queued: no result is
        invented)."""
        request = request_analysis(
            analysis_id="ana_" + self._entropy(8).hex(),
            repository=repository,
            requested_by=caller.owner,
            now=self._clock.now(),
            pull_request=pull_request,
        )
        self._repositories.analyses.add(request)
        if self._runner is not None:
            self._runner.submit(request.analysis_id)
        return request

    def analysis(self, analysis_id: str) -> AnalysisRequest:
        """An analysis request in its current state; NotFound if unknown."""
        return must_exist(
            self._repositories.analyses.get(analysis_id), f"no analysis {analysis_id}"
        )
