"""GitHub bounties and repository analyses, opened by API callers.

The values and their rules are :mod:`owm_core.governance.contributions`'; this module gives
them ids, the time and the store (a CLI may build :class:`Bounties` without a cache); bounties
are opened through the :class:`BountyBook` only (without one, none are). An
analysis runs on the GitHub App's :class:`AnalysisRunner`; without the App it stays
``queued``: no result is invented.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from owm_adapters.services.api.config import CachedReads
from owm_adapters.services.bounty_book import BountyBook, Opened, app_installation
from owm_adapters.services.github_analysis import AnalysisRunner
from owm_core.access.callers import Caller, CallerKind
from owm_core.errors import InvalidValue, PolicyViolation, must_exist
from owm_core.governance.contributions import (
    AnalysisRequest,
    Bounty,
    BountyStatus,
    request_analysis,
)

SETTLE_EVERY_MS = 5_000
"""How often listing bounties looks up the sponsored bounties' invoices, at most."""


@attrs.define(eq=False)
class Bounties(CachedReads):
    """List and open bounties; queue and read analyses (see the module docstring)."""

    book: BountyBook | None = None
    _runner: AnalysisRunner | None = None
    _settled_ms: int | None = attrs.field(default=None, init=False)

    def bounties(self, status: BountyStatus | None = BountyStatus.OPEN) -> Sequence[Bounty]:
        """Bounties, newest first (open ones by default); sponsored bounties whose invoices
        were paid meanwhile are opened first: looked up (a Lightning call each) at most every
        :data:`SETTLE_EVERY_MS`, not on every request to a public listing."""
        if self.book is not None and self._settle_due() and self.book.settle_funding():
            self._cache.clear()
        return self._cache.get(
            ("bounties", status),
            lambda: self._repositories.bounties.list(status, self._config.max_list),
        )

    def _settle_due(self) -> bool:
        now = self._clock.monotonic_ms()
        if self._settled_ms is not None and now - self._settled_ms < SETTLE_EVERY_MS:
            return False
        self._settled_ms = now
        return True

    def create_bounty(
        self, caller: Caller, repository: str, issue_number: int, title: str, amount_sat: int,
        sponsor_node: str = "",
    ) -> Opened:  # fmt: skip
        """Open a bounty in the caller's name, of at most ``max_bounty_sat``, on a repository
        the GitHub App is installed on: sponsored (``sponsor_node``: refunds go there) once the
        returned invoice is paid, or from the treasury's bounty budget when the caller is a
        maintainer (an API key whose owner ``bounty_maintainers`` names; SRS-LN-08)."""
        if amount_sat > self._config.max_bounty_sat:
            raise InvalidValue("amount_sat", f"must be at most {self._config.max_bounty_sat} sat")
        if self.book is None:
            raise PolicyViolation("this coordinator opens no bounties (no GitHub App)")
        maintainer = (
            caller.kind is CallerKind.API_KEY and caller.owner in self._config.bounty_maintainers
        )
        opened = self.book.open(
            caller.owner, repository, issue_number, title, amount_sat,
            sponsor_payee=sponsor_node, maintainer=maintainer,
            installation_id=app_installation(self._repositories, repository),
        )  # fmt: skip
        self._cache.clear()
        return opened

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
