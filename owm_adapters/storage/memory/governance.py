"""In-memory twin: proposals, the governance log, treasury spends, bounties and analyses."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from owm_adapters.storage.memory.state import KeyedStateRepository, StateRepository
from owm_core.coordination.governance_log import GovernanceLogEntry, check_next_entry
from owm_core.errors import Conflict
from owm_core.governance.bounty_rules import Funding
from owm_core.governance.contributions import AnalysisRequest, Bounty, BountyStatus
from owm_core.governance.github_app import HandlerRetry, WebhookEvent
from owm_core.governance.proposals import Comment, Proposal, ProposalStatus
from owm_core.governance.treasury import TreasurySpend


class MemoryProposalRepository(StateRepository):
    """Proposals in a dict."""

    def add(self, proposal: Proposal) -> None:
        """Store a new proposal; Conflict if its proposal_id exists."""
        self._insert_new(
            "proposals",
            proposal.proposal_id,
            proposal,
            f"proposal {proposal.proposal_id} already exists",
        )

    def save(self, proposal: Proposal) -> None:
        """Replace a stored proposal (status, deadline, acks, txid…); Conflict if unknown.

        The stored comments are kept (they are appended by :meth:`append_comment` only).
        """
        with self._lock:
            stored = self._state.proposals.get(proposal.proposal_id)
            if stored is None:
                raise Conflict(f"proposal {proposal.proposal_id} does not exist")
            kept = attrs.evolve(proposal, comments=stored.comments)
            self._state.proposals[proposal.proposal_id] = kept

    def append_comment(self, proposal_id: str, comment: Comment) -> None:
        """Add ``comment`` after the stored comments; Conflict if the proposal is unknown."""
        with self._lock:
            stored = self._state.proposals.get(proposal_id)
            if stored is None:
                raise Conflict(f"proposal {proposal_id} does not exist")
            appended = attrs.evolve(stored, comments=(*stored.comments, comment))
            self._state.proposals[proposal_id] = appended

    def get(self, proposal_id: str) -> Proposal | None:
        """The proposal with ``proposal_id``, or None."""
        with self._lock:
            return self._state.proposals.get(proposal_id)

    def list(self, status: ProposalStatus | None = None) -> Sequence[Proposal]:
        """Proposals (of ``status`` if given), newest submission first, then by id."""
        with self._lock:
            chosen = [
                p for p in self._state.proposals.values() if status is None or p.status is status
            ]
            return sorted(chosen, key=lambda p: (-p.submitted_at, p.proposal_id))


class MemoryBountyRepository(KeyedStateRepository[Bounty]):
    """GitHub bounties per bounty id."""

    _table = "bounties"
    _key = "bounty_id"
    _taken = "bounty {} already exists"
    _unknown = "bounty {} is unknown"

    def list(self, status: BountyStatus | None = None, limit: int = 100) -> Sequence[Bounty]:
        """Up to ``limit`` bounties (of ``status`` if given), newest first, then by id."""
        with self._lock:
            chosen = [b for b in self._state.bounties.values() if status in (None, b.status)]
            chosen.sort(key=lambda b: (-b.created_at, b.bounty_id))
            return chosen[:limit]

    def after(self, status: BountyStatus, after: str = "", limit: int = 100) -> Sequence[Bounty]:
        """Up to ``limit`` bounties of ``status`` whose bounty_id sorts after ``after``, by id."""
        with self._lock:
            chosen = [
                b for b in self._state.bounties.values()
                if b.status is status and b.bounty_id > after
            ]
        return sorted(chosen, key=lambda b: b.bounty_id)[:limit]

    def for_issue(self, repository: str, issue_number: int) -> Sequence[Bounty]:
        """The bounties of one issue, oldest first, then by id."""
        with self._lock:
            chosen = [
                b for b in self._state.bounties.values()
                if (b.repository, b.issue_number) == (repository, issue_number)
            ]
            return sorted(chosen, key=lambda b: (b.created_at, b.bounty_id))

    def committed_treasury_sat(self) -> int:
        """The satoshis of the treasury-funded bounties still open."""
        with self._lock:
            return sum(
                b.amount_sat for b in self._state.bounties.values()
                if b.status is BountyStatus.OPEN and b.funding is Funding.TREASURY
            )


class MemoryAnalysisRepository(KeyedStateRepository[AnalysisRequest]):
    """Repository analysis requests per analysis id."""

    _table = "analyses"
    _key = "analysis_id"
    _taken = "analysis {} already exists"
    _unknown = "analysis {} is unknown"


class MemoryWebhookEventRepository(KeyedStateRepository[WebhookEvent]):
    """The GitHub App's webhook deliveries per delivery id (a stored id is a replay)."""

    _table = "webhook_events"
    _key = "delivery_id"
    _taken = "delivery {} was received already (a replay)"
    _unknown = "delivery {} is unknown"

    def add(self, value: WebhookEvent, pending: Sequence[HandlerRetry] = ()) -> None:
        """Store a delivery and its pending handler runs under one lock; Conflict on a replay
        (and then neither is stored)."""
        with self._lock:
            retries = self._state.handler_retries
            if value.delivery_id in self._state.webhook_events:
                raise Conflict(self._taken.format(value.delivery_id))
            if any((r.delivery_id, r.handler) in retries for r in pending):
                raise Conflict(f"delivery {value.delivery_id} has handler runs stored already")
            super().add(value)
            retries.update({(r.delivery_id, r.handler): r for r in pending})

    def list(self, limit: int = 100) -> Sequence[WebhookEvent]:
        """Up to ``limit`` deliveries, newest first, then by delivery id."""
        with self._lock:
            chosen = sorted(
                self._state.webhook_events.values(), key=lambda e: (-e.received_at, e.delivery_id)
            )
            return chosen[:limit]

    def installation_of(self, repository: str) -> int | None:
        """The installation id of the newest delivery from ``repository`` that names one."""
        ours = [e for e in self.list(len(self._state.webhook_events))
                if e.repository == repository and e.installation_id is not None]  # fmt: skip
        return ours[0].installation_id if ours else None


class MemoryHandlerRetryRepository(StateRepository):
    """Webhook handlers' pending retries per (delivery id, handler); claims compare and set
    under the lock, as the SQL store's conditional update does."""

    def add(self, retry: HandlerRetry) -> None:
        """Store a new retry; Conflict if one is stored for its delivery and handler."""
        key = (retry.delivery_id, retry.handler)
        self._insert_new("handler_retries", key, retry, f"a retry of {key} is stored already")

    def get(self, delivery_id: str, handler: str) -> HandlerRetry | None:
        """The retry of ``handler`` with ``delivery_id``, or None."""
        with self._lock:
            return self._state.handler_retries.get((delivery_id, handler))

    def due(self, now: int, limit: int = 100) -> Sequence[HandlerRetry]:
        """Up to ``limit`` retries due at ``now``, earliest first, then by key."""
        with self._lock:
            chosen = [r for r in self._state.handler_retries.values() if r.next_at <= now]
        chosen.sort(key=lambda r: (r.next_at, r.delivery_id, r.handler))
        return chosen[:limit]

    def claim(self, retry: HandlerRetry, until: int) -> HandlerRetry | None:
        """Take ``retry`` for one run if it is stored as read (compare and set)."""
        key = (retry.delivery_id, retry.handler)
        with self._lock:
            stored = self._state.handler_retries.get(key)
            if stored is None or (stored.attempts, stored.next_at) != (
                retry.attempts, retry.next_at
            ):
                return None
            taken = attrs.evolve(stored, attempts=stored.attempts + 1, next_at=until)
            self._state.handler_retries[key] = taken
            return taken

    def save(self, retry: HandlerRetry) -> None:
        """Replace the stored retry of its delivery and handler; Conflict if there is none."""
        key = (retry.delivery_id, retry.handler)
        self._replace_known("handler_retries", key, retry, f"no retry of {key} is stored")

    def remove(self, delivery_id: str, handler: str) -> None:
        """Forget the retry of ``handler`` with ``delivery_id``, if any."""
        with self._lock:
            self._state.handler_retries.pop((delivery_id, handler), None)

    def count(self) -> int:
        """How many retries are stored."""
        with self._lock:
            return len(self._state.handler_retries)


class MemoryGovernanceLogRepository(StateRepository):
    """The governance log as a list; appends are checked like the SQL store's."""

    def append(self, entry: GovernanceLogEntry) -> None:
        """Append ``entry``; Conflict unless it chains to the head and its statement is new."""
        with self._lock:
            log = self._state.governance_log
            check_next_entry(log[-1] if log else None, entry)
            digest = entry.statement_hash()
            if digest is not None and self.has_statement(digest):
                raise Conflict("this governance statement is logged already (a replay)")
            self._state.governance_log = [*log, entry]

    def entries(self, start: int = 0, limit: int | None = None) -> Sequence[GovernanceLogEntry]:
        """Entries with index ≥ ``start``, in index order, at most ``limit`` of them."""
        with self._lock:
            chosen = self._state.governance_log[max(start, 0) :]
            return chosen if limit is None else chosen[:limit]

    def latest(self) -> GovernanceLogEntry | None:
        """The last entry, or None for an empty log."""
        with self._lock:
            log = self._state.governance_log
            return log[-1] if log else None

    def has_statement(self, statement_hash: str) -> bool:
        """Whether a statement with this hash is logged."""
        with self._lock:
            return any(e.statement_hash() == statement_hash for e in self._state.governance_log)


class MemoryTreasurySpendRepository(StateRepository):
    """Treasury spends per proposal id."""

    def get(self, proposal_id: str) -> TreasurySpend | None:
        """The spend of ``proposal_id``, or None."""
        with self._lock:
            return self._state.treasury_spends.get(proposal_id)

    def save(self, spend: TreasurySpend) -> None:
        """Store or replace the spend; Conflict if the stored one was broadcast."""
        with self._lock:
            stored = self._state.treasury_spends.get(spend.proposal_id)
            if stored is not None and stored.broadcast:
                raise Conflict(f"the spend of {spend.proposal_id} was broadcast already")
            self._state.treasury_spends[spend.proposal_id] = spend
