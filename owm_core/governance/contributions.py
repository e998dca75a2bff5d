"""GitHub contributions as the public API sees them: bounties and repository analysis requests.

This module owns the records behind ``/v1/github/*`` (seed 000/001 flow: contribution →
analysis → reward): a :class:`Bounty` offers satoshis for work on one issue of a repository
(funded, claimed and paid by the rules of :mod:`owm_core.governance.bounty_rules`), an
:class:`AnalysisRequest` asks for a repository to be analysed; until an analysis runs, a
request stays ``queued`` and carries no result — the API never invents one.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import InvalidTransition, InvalidValue
from owm_core.governance.bounty_rules import Funding

REPOSITORY_PATTERN = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}"
"""``owner/name`` as GitHub spells repositories."""

ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
MAX_BOUNTY_SAT = 21_000_000 * 100_000_000


class BountyStatus(enum.Enum):
    """Where a bounty stands: waiting for its sponsor's payment, open for work, paid out,
    cancelled (its issue closed unpaid), or refunded to its sponsor."""

    FUNDING = "funding"
    OPEN = "open"
    PAID = "paid"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class AnalysisState(enum.Enum):
    """Where a repository analysis stands (SRS-PERF-06 bounds running → done)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def _repository(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    fields.text(min_len=3, max_len=140, pattern=REPOSITORY_PATTERN)(_instance, attribute, value)
    if value.endswith((".git", "/.", "/..")):
        raise InvalidValue(attribute.name, "name the repository as owner/name")


def _to_bounty_status(value: object) -> object:
    return fields.to_enum(BountyStatus, "status", value)


def _to_funding(value: object) -> object:
    return fields.to_enum(Funding, "funding", value)


def _to_analysis_state(value: object) -> object:
    return fields.to_enum(AnalysisState, "state", value)


@attrs.frozen
class Bounty:
    """Satoshis offered for resolving one issue of one repository."""

    bounty_id: str = attrs.field(validator=fields.text(max_len=64, pattern=ID_PATTERN))
    repository: str = attrs.field(validator=_repository)
    issue_number: int = attrs.field(validator=fields.integer(1, 2**31 - 1))
    title: str = attrs.field(validator=fields.text(max_len=200))
    amount_sat: int = attrs.field(validator=fields.money(minimum=1))
    created_by: str = attrs.field(validator=fields.text(max_len=256))
    created_at: int = attrs.field(validator=fields.timestamp())
    status: BountyStatus = attrs.field(
        default=BountyStatus.OPEN,
        converter=_to_bounty_status,
        validator=fields.instance_of(BountyStatus),
    )
    funding: Funding = attrs.field(
        default=Funding.TREASURY, converter=_to_funding, validator=fields.instance_of(Funding)
    )
    #: A sponsor's Lightning node (refunds go there) and the invoice it pays first.
    sponsor_payee: str = attrs.field(default="", validator=fields.text(min_len=0, max_len=66))
    sponsor_invoice_hash: str = attrs.field(
        default="", validator=fields.text(min_len=0, max_len=64)
    )
    #: The GitHub login that claimed the bounty and its Lightning node (SRS-LN-08).
    claimant: str = attrs.field(default="", validator=fields.text(min_len=0, max_len=64))
    claimant_payee: str = attrs.field(default="", validator=fields.text(min_len=0, max_len=66))
    #: The GitHub App installation the bounty's repository is under (comments go through it).
    installation_id: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(fields.integer(1, 2**63 - 1))
    )
    #: When the issue closed while the bounty was claimed (it waits for the claimant's merge).
    issue_closed_at: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(fields.timestamp())
    )

    @amount_sat.validator
    def _not_more_than_exists(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value > MAX_BOUNTY_SAT:
            raise InvalidValue(attribute.name, "exceeds the 21 million bitcoin that exist")


def open_bounty(
    *,
    bounty_id: str,
    repository: str,
    issue_number: int,
    title: str,
    amount_sat: int,
    created_by: str,
    now: int,
) -> Bounty:
    """A new open bounty; invalid input raises InvalidValue naming the field."""
    return Bounty(bounty_id, repository, issue_number, title, amount_sat, created_by, now)


@attrs.frozen
class AnalysisRequest:
    """A request to analyse a repository, and its outcome once the analysis has run."""

    analysis_id: str = attrs.field(validator=fields.text(max_len=64, pattern=ID_PATTERN))
    repository: str = attrs.field(validator=_repository)
    requested_by: str = attrs.field(validator=fields.text(max_len=256))
    requested_at: int = attrs.field(validator=fields.timestamp())
    state: AnalysisState = attrs.field(
        default=AnalysisState.QUEUED,
        converter=_to_analysis_state,
        validator=fields.instance_of(AnalysisState),
    )
    updated_at: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(fields.timestamp())
    )
    result: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(fields.text(max_len=1_000_000))
    )
    #: A pull request of the repository: only what it changed is analysed (None: the tree).
    pull_request: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(fields.integer(1, 2**31 - 1))
    )

    def __attrs_post_init__(self) -> None:
        finished = self.state in {AnalysisState.DONE, AnalysisState.FAILED}
        if finished != (self.result is not None):
            raise InvalidValue("result", "is present exactly when the analysis has finished")
        if self.updated_at is not None and self.updated_at < self.requested_at:
            raise InvalidValue("updated_at", "cannot precede requested_at")


def request_analysis(
    *, analysis_id: str, repository: str, requested_by: str, now: int,
    pull_request: int | None = None,
) -> AnalysisRequest:  # fmt: skip
    """A new queued analysis request of a repository, or of one of its pull requests (the
    analysis runs when the GitHub integration exists)."""
    return AnalysisRequest(analysis_id, repository, requested_by, now, pull_request=pull_request)


_NEXT = {
    AnalysisState.QUEUED: {AnalysisState.RUNNING, AnalysisState.FAILED},
    AnalysisState.RUNNING: {AnalysisState.DONE, AnalysisState.FAILED},
}


def advance_analysis(
    request: AnalysisRequest, state: AnalysisState, now: int, result: str | None = None
) -> AnalysisRequest:
    """Move an analysis forward (queued → running → done/failed); finished ones are final."""
    if state not in _NEXT.get(request.state, set()):
        raise InvalidTransition(
            f"an analysis cannot go from {request.state.value} to {state.value}"
        )
    return attrs.evolve(request, state=state, updated_at=now, result=result)
