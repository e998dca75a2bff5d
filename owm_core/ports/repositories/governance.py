"""The governance repositories: proposals, GitHub bounties and repository analysis requests
(SRS-GOV-01..06).

The semantics every store keeps are in :mod:`owm_core.ports.repositories`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from owm_core.coordination.governance_log import GovernanceLogEntry
from owm_core.governance.contributions import AnalysisRequest, Bounty, BountyStatus
from owm_core.governance.github_app import HandlerRetry, WebhookEvent
from owm_core.governance.proposals import Comment, Proposal, ProposalStatus
from owm_core.governance.treasury import TreasurySpend


class ProposalRepository(Protocol):
    """Governance proposals with their comments and acknowledgements (SRS-GOV-01..06)."""

    def add(self, proposal: Proposal) -> None:
        """Store a new proposal; Conflict if its proposal_id exists."""
        ...

    def save(self, proposal: Proposal) -> None:
        """Replace a stored proposal (status, deadline, acks, txid…); Conflict if unknown.

        Comments are not written here: the stored ones stay as they are, whatever
        ``proposal.comments`` holds (add one with :meth:`append_comment`).
        """
        ...

    def append_comment(self, proposal_id: str, comment: Comment) -> None:
        """Add ``comment`` after the stored comments of a proposal; Conflict if it is unknown.

        Earlier comments are never rewritten: a comment costs one new row, however long the
        thread (SRS-GOV-04).
        """
        ...

    def get(self, proposal_id: str) -> Proposal | None:
        """The proposal with ``proposal_id``, or None."""
        ...

    def list(self, status: ProposalStatus | None = None) -> Sequence[Proposal]:
        """Proposals (of ``status`` if given), newest submission first, then by id."""
        ...


class BountyRepository(Protocol):
    """GitHub bounties (seed 000/001, GET/POST /v1/github/bounties)."""

    def add(self, bounty: Bounty) -> None:
        """Store a new bounty; Conflict if its bounty_id exists."""
        ...

    def save(self, bounty: Bounty) -> None:
        """Replace a stored bounty (its status); Conflict if unknown."""
        ...

    def get(self, bounty_id: str) -> Bounty | None:
        """The bounty with ``bounty_id``, or None."""
        ...

    def list(self, status: BountyStatus | None = None, limit: int = 100) -> Sequence[Bounty]:
        """Up to ``limit`` bounties (of ``status`` if given), newest first, then by id."""
        ...

    def after(self, status: BountyStatus, after: str = "", limit: int = 100) -> Sequence[Bounty]:
        """Up to ``limit`` bounties of ``status`` whose bounty_id sorts after ``after``, by id
        (pass the last one back to go on: a sweep)."""
        ...

    def for_issue(self, repository: str, issue_number: int) -> Sequence[Bounty]:
        """The bounties of one issue, oldest first, then by id."""
        ...

    def committed_treasury_sat(self) -> int:
        """The satoshis of the treasury-funded bounties still open (the budget they hold)."""
        ...


class AnalysisRepository(Protocol):
    """Repository analysis requests (POST /v1/github/analyze) and their outcomes."""

    def add(self, request: AnalysisRequest) -> None:
        """Store a new request; Conflict if its analysis_id exists."""
        ...

    def save(self, request: AnalysisRequest) -> None:
        """Replace a stored request (state, result); Conflict if unknown."""
        ...

    def get(self, analysis_id: str) -> AnalysisRequest | None:
        """The request with ``analysis_id``, or None."""
        ...


class WebhookEventRepository(Protocol):
    """The GitHub App's webhook deliveries, stored before they are acknowledged (SRS-SEC-08).

    A delivery id is stored once: adding a stored one again is a replay, refused with Conflict.
    """

    def add(self, event: WebhookEvent, pending: Sequence[HandlerRetry] = ()) -> None:
        """Store a delivery, and with it (atomically: both or neither) the handler runs
        ``pending`` for it; Conflict if its delivery_id was stored before (a replay)."""
        ...

    def get(self, delivery_id: str) -> WebhookEvent | None:
        """The delivery with ``delivery_id``, or None."""
        ...

    def list(self, limit: int = 100) -> Sequence[WebhookEvent]:
        """Up to ``limit`` deliveries, newest first, then by delivery id."""
        ...

    def installation_of(self, repository: str) -> int | None:
        """The GitHub App installation id the newest delivery from ``repository`` that names
        one carries; None when none does (the App is not installed there)."""
        ...


class HandlerRetryRepository(Protocol):
    """The webhook handlers still to be run with a stored delivery, one per (delivery id,
    handler name): shared by every coordinator on the store and kept across restarts.

    :meth:`claim` is a compare-and-set, so of two workers that read the same due retry only
    one runs it.
    """

    def add(self, retry: HandlerRetry) -> None:
        """Store a new retry; Conflict if one is stored for its delivery and handler."""
        ...

    def get(self, delivery_id: str, handler: str) -> HandlerRetry | None:
        """The retry of ``handler`` with ``delivery_id``, or None."""
        ...

    def due(self, now: int, limit: int = 100) -> Sequence[HandlerRetry]:
        """Up to ``limit`` retries whose ``next_at`` ≤ ``now``, earliest first, then by key."""
        ...

    def claim(self, retry: HandlerRetry, until: int) -> HandlerRetry | None:
        """Take ``retry`` as read for one run: if the stored one still has its ``attempts``
        and ``next_at``, store it with one attempt more and ``next_at = until`` (a lease) and
        return that; else (another worker took it, or it is gone) None and nothing changes."""
        ...

    def save(self, retry: HandlerRetry) -> None:
        """Replace the stored retry of its delivery and handler; Conflict if there is none."""
        ...

    def remove(self, delivery_id: str, handler: str) -> None:
        """Forget the retry of ``handler`` with ``delivery_id`` (done or given up); no error
        if there is none."""
        ...

    def count(self) -> int:
        """How many retries are stored."""
        ...


class GovernanceLogRepository(Protocol):
    """The append-only, hash-chained, coordinator-signed governance log (SRS-GOV-01..06).

    No update or delete: entries are immutable once appended.
    """

    def append(self, entry: GovernanceLogEntry) -> None:
        """Append ``entry``; Conflict unless it continues the latest entry, or if its
        statement (by :meth:`GovernanceLogEntry.statement_hash`) is logged already."""
        ...

    def entries(self, start: int = 0, limit: int | None = None) -> Sequence[GovernanceLogEntry]:
        """Entries with index ≥ ``start``, in index order, at most ``limit`` of them."""
        ...

    def latest(self) -> GovernanceLogEntry | None:
        """The last entry (the head of the chain), or None for an empty log."""
        ...

    def has_statement(self, statement_hash: str) -> bool:
        """Whether a statement with this hash is logged (a replay, then)."""
        ...


class TreasurySpendRepository(Protocol):
    """Treasury proposals' transactions on their way (SRS-LN-09, SRS-GOV-06): one per proposal."""

    def get(self, proposal_id: str) -> TreasurySpend | None:
        """The spend of ``proposal_id``, or None."""
        ...

    def save(self, spend: TreasurySpend) -> None:
        """Store or replace the spend of its proposal; Conflict if that one was broadcast."""
        ...
