"""Governance use cases (SRS-GOV-01..05): proposals, submitted and commented by API callers.

The rules (who may comment, until when) are :mod:`owm_core.governance.proposals`'; this
module gives them ids, the time and the store. Usable without the HTTP shell: a CLI builds
:class:`Governance` over the same store (without a cache, every read goes to the store).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from owm_adapters.services.api.config import CachedReads
from owm_adapters.services.governance import GovernanceService
from owm_core.access.callers import Caller
from owm_core.errors import InvalidValue, PolicyViolation, must_exist
from owm_core.governance.proposals import (
    Comment,
    Proposal,
    ProposalStatus,
    ProposalType,
    add_comment,
)
from owm_core.governance.proposals import submit_proposal as new_proposal


@attrs.define(eq=False)
class Governance(CachedReads):
    """List, submit and comment on proposals (see the module docstring)."""

    _log: GovernanceService | None = None

    def proposals(self, status: ProposalStatus | None = None) -> Sequence[Proposal]:
        """Proposals, newest first, optionally of one status."""
        return self._cache.get(
            ("proposals", status), lambda: self._repositories.proposals.list(status)
        )

    def submit_proposal(
        self,
        caller: Caller,
        title: str,
        description: str,
        proposal_type: ProposalType,
        implementation_plan: str,
        requested_sat: int,
        payout_address: str = "",
    ) -> Proposal:
        """Open a proposal authored by the caller (SRS-GOV-02/03), asking at most
        ``max_requested_sat``."""
        if requested_sat > self._config.max_requested_sat:
            raise InvalidValue(
                "requested_sat", f"must be at most {self._config.max_requested_sat} sat"
            )
        proposal = new_proposal(
            proposal_id="prop_" + self._entropy(8).hex(),
            author=caller.owner,
            title=title,
            description=description,
            proposal_type=proposal_type,
            implementation_plan=implementation_plan,
            now=self._clock.now(),
            requested_sat=requested_sat,
            payout_address=payout_address,
        )
        if self._log is not None:
            self._log.check_payout_address(payout_address)
        with self._repositories.atomic():
            self._repositories.proposals.add(proposal)
            self._logged("propose", proposal, caller, {})
        self._cache.clear()
        return proposal

    def _logged(
        self, action: str, proposal: Proposal, caller: Caller, detail: dict[str, object]
    ) -> None:
        """Record an API-key caller's action in the governance log (its actor: the key's
        owner; the coordinator's signature attests it)."""
        if self._log is not None:
            self._log.record(action, proposal, f"api:{caller.owner}", dict(detail))

    def comment(self, caller: Caller, proposal_id: str, text: str) -> Proposal:
        """Comment on an open proposal during its comment period (SRS-GOV-04).

        A proposal holds at most ``max_comments_per_proposal`` comments, and one caller may
        leave ``max_comments_per_author`` of them, so a thread stays readable and cheap.
        """
        with self._repositories.atomic():
            proposal = must_exist(
                self._repositories.proposals.get(proposal_id), f"no proposal {proposal_id}"
            )
            self._check_room(proposal, caller.owner)
            comment = Comment(caller.owner, text, self._clock.now())
            updated = add_comment(proposal, comment)
            self._repositories.proposals.append_comment(proposal_id, comment)
            self._logged("comment", updated, caller, {"text": text})
        self._cache.clear()
        return updated

    def _check_room(self, proposal: Proposal, author: str) -> None:
        if len(proposal.comments) >= self._config.max_comments_per_proposal:
            raise PolicyViolation(
                f"proposal {proposal.proposal_id} has its "
                f"{self._config.max_comments_per_proposal} comments"
            )
        mine = sum(1 for c in proposal.comments if c.author == author)
        if mine >= self._config.max_comments_per_author:
            raise PolicyViolation(
                f"one caller may leave {self._config.max_comments_per_author} comments "
                "on a proposal"
            )
