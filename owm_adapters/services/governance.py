"""The governance service: signed statements in, proposals changed, every action logged.

Every governance action (SRS-GOV-01..06) reaches the coordinator as a signed
``governance_statement`` envelope (:mod:`owm_core.coordination.governance`). This service
checks it in this order — signature, freshness (±``freshness_window_s``), the signer's rate
limit (``statements_per_signer``; counted in the shared store when several coordinators
share one database, SRS-COORD-05), who may sign at all (a registered node's key, a
maintainer's or a holder's: anyone else proposes and comments through the API with an API
key), not seen before (its hash is not in the log) — then, inside one store transaction,
authorises the action for the signer's role, applies it and appends the statement, verbatim,
to the hash-chained, coordinator-signed governance log
(:mod:`owm_core.coordination.governance_log`).
A refused statement changes nothing and logs nothing.

Treasury steps go through the :class:`~owm_adapters.services.treasury.TreasuryDesk`: a
``psbt_create`` statement prepares the PSBT of an accepted, fully acknowledged proposal; holders'
signed copies are merged by :meth:`GovernanceService.import_signed` (logged as ``psbt_sign``,
the holders' own secp256k1 signatures being the statement); an ``execute`` statement finalises,
broadcasts and records the txid. API-key callers' proposals and comments are logged through
:meth:`GovernanceService.record` with the key's owner as actor and no statement.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import attrs

from owm_adapters.services.treasury import TreasuryDesk
from owm_core.access.ratelimit import RateLimit, SlidingWindowLimiter
from owm_core.coordination.governance import (
    GovernanceAction,
    apply,
    authorise,
    execute_treasury,
    propose,
    read_statement,
)
from owm_core.coordination.governance_log import (
    GovernanceLogEntry,
    append_to_log,
    statement_hash_of,
)
from owm_core.coordination.portal_challenges import check_challenge, issue_challenge
from owm_core.errors import PolicyViolation, ReplayRejected, RoleRequired, must_exist
from owm_core.governance.proposals import Proposal, ProposalType
from owm_core.governance.roles import GovernanceRoles
from owm_core.governance.treasury import TreasurySpend
from owm_core.identity.envelopes import Envelope, GovernanceStatement, verify
from owm_core.identity.keys import Identity, node_id_from_public_key
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories

PSBT_SIGN = "psbt_sign"


@attrs.frozen
class GovernanceConfig:
    """Limits of the governance service (see the module docstring)."""

    statements_per_signer: RateLimit = attrs.field(
        factory=lambda: RateLimit(limit=60, window_s=3_600)
    )
    freshness_window_s: int = 300
    #: A block explorer's transaction page, ``{txid}`` replaced (SRS-GOV-06); empty: none.
    explorer_tx_url: str = ""


@attrs.frozen
class Receipt:
    """What one accepted action did: the proposal after it, its log entry, the spend."""

    proposal: Proposal
    entry: GovernanceLogEntry
    spend: TreasurySpend | None = None


class GovernanceService:
    """Signed governance statements, the governance log and the treasury's PSBTs."""

    def __init__(
        self,
        store: Repositories,
        clock: Clock,
        coordinator: Identity,
        roles: GovernanceRoles | None = None,
        treasury: TreasuryDesk | None = None,
        config: GovernanceConfig | None = None,
        rules_clock: Clock | None = None,
        *,
        shared: bool = False,
    ) -> None:
        """``shared``: several coordinators share the store (SRS-COORD-05), so a signer's
        statement limit counts in the store, across them."""
        self._store = store
        self._clock = clock
        #: The time the rules see (comment periods): ``clock`` but on a devnet, whose
        #: governance time can be moved ahead; freshness is always checked against ``clock``.
        self._rules = rules_clock or clock
        self._coordinator = coordinator
        self.roles = roles
        self.treasury = treasury
        self.config = config or GovernanceConfig()
        self._limiter = SlidingWindowLimiter(
            self.config.statements_per_signer, ledger=store.rate_log if shared else None,
            scope="gov/statements",
        )
        self._limiter_lock = threading.Lock()

    @property
    def coordinator_key(self) -> str:
        """The Ed25519 key that signs the governance log."""
        return self._coordinator.public_key_hex

    # ----------------------------------------------------------------- reading

    def proposal(self, proposal_id: str) -> Proposal:
        """The proposal ``proposal_id``; NotFound if unknown."""
        return must_exist(self._store.proposals.get(proposal_id), f"no proposal {proposal_id}")

    def log(self, start: int = 0, limit: int | None = None) -> Sequence[GovernanceLogEntry]:
        """Governance log entries from ``start``, in order."""
        return self._store.governance_log.entries(start, limit)

    def spend(self, proposal_id: str) -> TreasurySpend | None:
        """The treasury spend of ``proposal_id``, if a PSBT was prepared."""
        return self._store.treasury_spends.get(proposal_id)

    def check_payout_address(self, address: str, field: str = "payout_address") -> None:
        """InvalidValue naming ``field`` unless ``address`` is empty or an address of the
        treasury wallet's network (without a treasury, its shape was checked already)."""
        if address and self.treasury is not None:
            self.treasury.wallet.payout_script(address, field)

    # ----------------------------------------------------------------- writing

    def challenge(self) -> str:
        """A fresh challenge for the portal: the nonce a pasted statement must carry
        (:mod:`owm_core.coordination.portal_challenges`)."""
        return issue_challenge(self._coordinator.sign, os.urandom(4), self._clock.now())

    def submit_answer(self, envelope: Envelope) -> Receipt:
        """:meth:`submit` a statement pasted into the portal, which must answer one of this
        coordinator's challenges of the last five minutes (InvalidValue naming it)."""
        check_challenge(self._coordinator.sign, envelope.nonce, self._clock.now())
        return self.submit(envelope)

    def submit(self, envelope: Envelope) -> Receipt:
        """Check, apply and log one signed statement (see the module docstring)."""
        me = self._coordinator.public_key_hex
        # The body first, to name the coordinator a statement for another one is addressed to;
        # its signature is bound to that one too (SRS-SEC-03).
        action, statement = read_statement(envelope, me)
        verify(envelope, audience=me)
        wall = self._clock.now()
        if abs(envelope.issued_at - wall) > self.config.freshness_window_s:
            raise ReplayRejected(
                f"statement issued at {envelope.issued_at}, more than "
                f"{self.config.freshness_window_s} s from now ({wall})"
            )
        with self._limiter_lock:
            self._limiter.enforce("gov:" + envelope.signer, wall)
        now = self._rules.now()
        self._check_may_sign(envelope.signer)
        with self._store.atomic():
            if self._store.governance_log.has_statement(statement_hash_of(envelope)):
                raise ReplayRejected("this statement was accepted before")
            return self._apply(envelope, action, statement, now)

    def _check_may_sign(self, signer: str) -> None:
        roles = self.roles
        if roles is not None and (roles.is_maintainer(signer) or roles.holder(signer)):
            return
        if self._store.nodes.get(node_id_from_public_key(signer)) is None:
            raise RoleRequired(
                "statements are signed by a registered node's key, a maintainer's or a "
                "multisig holder's; contributors propose and comment with their API key"
            )

    def _apply(
        self, envelope: Envelope, action: GovernanceAction, statement: GovernanceStatement,
        now: int,
    ) -> Receipt:  # fmt: skip
        signer = envelope.signer
        if action is GovernanceAction.PROPOSE:
            proposal = propose(envelope, statement, now)
            self.check_payout_address(proposal.payout_address, "args.payout_address")
            self._store.proposals.add(proposal)
            return self._logged(action.value, proposal, signer, envelope, {}, now)
        proposal = self.proposal(statement.proposal_id)
        roles = self.roles
        authorise(action, signer, roles, proposal)
        if action is GovernanceAction.PSBT_CREATE:
            apply(action, statement, signer, proposal, roles, now)
            spend = self._desk().prepare(proposal, now)
            detail = {"psbt_created_at": now, "signers": []}
            return attrs.evolve(
                self._logged(action.value, proposal, signer, envelope, detail, now), spend=spend
            )
        if action is GovernanceAction.EXECUTE and proposal.type is ProposalType.TREASURY:
            return self._execute_treasury(envelope, proposal, now)
        updated = apply(action, statement, signer, proposal, roles, now)
        if action is GovernanceAction.COMMENT:
            self._store.proposals.append_comment(proposal.proposal_id, updated.comments[-1])
        else:
            self._store.proposals.save(updated)
        return self._logged(action.value, updated, signer, envelope, {}, now)

    def _execute_treasury(self, envelope: Envelope, proposal: Proposal, now: int) -> Receipt:
        """Finalise, check every rule with the txid to be, broadcast, record (SRS-GOV-06)."""
        desk = self._desk()
        finalised = desk.finalise(proposal)
        updated = execute_treasury(proposal, self._roles(), finalised.signers, finalised.txid)
        desk.broadcast(proposal.proposal_id, finalised)
        self._store.proposals.save(updated)
        detail = {"txid": finalised.txid, "signers": sorted(finalised.signers)}
        receipt = self._logged("execute", updated, envelope.signer, envelope, detail, now)
        return attrs.evolve(receipt, spend=desk.spend(proposal.proposal_id))

    def import_signed(self, proposal_id: str, signed_psbt: str) -> Receipt:
        """Merge a holder's signed PSBT copy and log which holders' signatures it added."""
        now = self._rules.now()
        with self._store.atomic():
            proposal = self.proposal(proposal_id)
            spend, added = self._desk().add_signatures(proposal_id, signed_psbt)
            detail = {"added": sorted(added), "signers": sorted(spend.signers)}
            receipt = self._logged(PSBT_SIGN, proposal, "psbt", None, detail, now)
        return attrs.evolve(receipt, spend=spend)

    def record(self, action: str, proposal: Proposal, actor: str, detail: dict[str, Any]) -> None:
        """Log an action proven otherwise than by a statement (an API key's proposal or
        comment); call it inside the store transaction that made the change."""
        self._logged(action, proposal, actor, None, detail, self._rules.now())

    def _logged(
        self, action: str, proposal: Proposal, actor: str, envelope: Envelope | None,
        detail: dict[str, Any], now: int,
    ) -> Receipt:  # fmt: skip
        entry = append_to_log(
            self._coordinator, self._store.governance_log.latest(), action=action,
            proposal_id=proposal.proposal_id, actor=actor[:256], statement=envelope,
            detail=detail, at=now,
        )  # fmt: skip
        self._store.governance_log.append(entry)
        return Receipt(proposal, entry)

    def _roles(self) -> GovernanceRoles:
        if self.roles is None:
            raise PolicyViolation("this coordinator has no governance roles configured")
        return self.roles

    def _desk(self) -> TreasuryDesk:
        if self.treasury is None:
            raise PolicyViolation("this coordinator runs no treasury wallet")
        return self.treasury
