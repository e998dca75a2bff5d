"""Governance actions as signed statements (SRS-GOV-01..06): who may do what, and its effect.

Every governance action reaches the coordinator as a ``governance_statement`` envelope
(:class:`~owm_core.identity.envelopes.GovernanceStatement`) signed with an Ed25519 key. This
module reads such a statement, checks that its signer holds the role the action needs, and
applies it to the proposal with the rules of :mod:`owm_core.governance.proposals`:

============  ======================================  ======================================
action        who                                     effect
============  ======================================  ======================================
propose       anyone with a key (node operators,      a new open proposal (SRS-GOV-02/03)
              contributors)
comment       anyone with a key                       a comment within the period (GOV-04)
extend        a core maintainer                       a later deadline, ≤ 21 days (GOV-04)
close         a core maintainer                       closed at/after the deadline, then
                                                      accepted or rejected
ack           a treasury multisig holder              the holder's acknowledgement (GOV-05)
psbt_create   a maintainer or a holder                the treasury transaction is prepared
                                                      (accepted, acknowledged: GOV-05)
execute       a maintainer, or for treasury           executed; a treasury proposal only
              proposals a maintainer or a holder      with its broadcast txid (GOV-06)
============  ======================================  ======================================

Pure: the caller verifies the envelope's signature, passes the time and keeps the result.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

from owm_core.errors import InvalidValue, RoleRequired
from owm_core.governance.proposals import (
    Comment,
    Proposal,
    ProposalType,
    acknowledge,
    add_comment,
    check_ready_for_signing,
    close_comments,
    decide,
    execute,
    extend_comment_period,
    submit_proposal,
)
from owm_core.governance.roles import GovernanceRoles
from owm_core.identity.envelopes import Envelope, EnvelopeKind, GovernanceStatement, sha256_hex

PROPOSAL_ID_PREFIX = "prop_"


class GovernanceAction(enum.Enum):
    """What a governance statement does (see the module docstring)."""

    PROPOSE = "propose"
    COMMENT = "comment"
    EXTEND = "extend"
    CLOSE = "close"
    ACK = "ack"
    PSBT_CREATE = "psbt_create"
    EXECUTE = "execute"


class Outcome(enum.Enum):
    """How a maintainer closes a proposal."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"


_MAINTAINER_ONLY = {GovernanceAction.EXTEND, GovernanceAction.CLOSE}
_TREASURY_ROLES = {GovernanceAction.PSBT_CREATE}


def read_statement(
    envelope: Envelope, coordinator_key: str
) -> tuple[GovernanceAction, GovernanceStatement]:
    """The action and typed body of a governance envelope addressed to the coordinator whose
    public key is ``coordinator_key``; InvalidValue naming the field (SRS-SEC-03: a statement
    addressed to another coordinator, e.g. read from a testnet's public log, is refused).

    Does not verify the signature (the caller does, once, before anything else).
    """
    if envelope.kind is not EnvelopeKind.GOVERNANCE_STATEMENT:
        raise InvalidValue("kind", f"must be {EnvelopeKind.GOVERNANCE_STATEMENT.value}")
    statement = GovernanceStatement.from_body(envelope.body)
    if statement.coordinator != coordinator_key:
        raise InvalidValue(
            "body.coordinator",
            f"is addressed to coordinator {statement.coordinator}, not this one "
            f"({coordinator_key}): sign it for this coordinator",
        )
    try:
        action = GovernanceAction(statement.action)
    except ValueError:
        names = ", ".join(a.value for a in GovernanceAction)
        raise InvalidValue("body.action", f"must be one of {names}") from None
    if (action is GovernanceAction.PROPOSE) != (statement.proposal_id == ""):
        raise InvalidValue(
            "body.proposal_id", "is empty for a new proposal and names the proposal otherwise"
        )
    return action, statement


def proposal_id_of(envelope: Envelope) -> str:
    """The id a ``propose`` statement's proposal gets: derived from its signature, so the
    same statement can never open two proposals."""
    return PROPOSAL_ID_PREFIX + sha256_hex(bytes.fromhex(envelope.signature))[:16]


def authorise(
    action: GovernanceAction,
    signer: str,
    roles: GovernanceRoles | None,
    proposal: Proposal | None,
) -> None:
    """Raise :class:`RoleRequired` unless ``signer`` may take ``action`` (module docstring);
    with no ``roles`` configured, nobody holds a role."""
    maintainer = roles is not None and roles.is_maintainer(signer)
    holder = roles is not None and roles.holder(signer) is not None
    if action in _MAINTAINER_ONLY and not maintainer:
        raise RoleRequired(f"only a core maintainer may {action.value} a proposal")
    if action is GovernanceAction.ACK and not holder:
        raise RoleRequired("only a treasury multisig holder may acknowledge a proposal")
    treasury = proposal is not None and proposal.type is ProposalType.TREASURY
    if action in _TREASURY_ROLES or (action is GovernanceAction.EXECUTE and treasury):
        if not (maintainer or holder):
            raise RoleRequired(f"only a maintainer or a multisig holder may {action.value}")
    elif action is GovernanceAction.EXECUTE and not maintainer:
        raise RoleRequired("only a core maintainer may execute a proposal")


def _arg(args: Mapping[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = args.get(name, default)
    if value is None or isinstance(value, bool) is not (kind is bool):
        raise InvalidValue(f"args.{name}", f"is missing or not a {kind.__name__}")
    if not isinstance(value, kind):
        raise InvalidValue(f"args.{name}", f"must be a {kind.__name__}")
    return value


def _only(args: Mapping[str, Any], names: Iterable[str]) -> None:
    unknown = sorted(set(args) - set(names))
    if unknown:
        raise InvalidValue(f"args.{unknown[0]}", "is not an argument of this action")


def propose(envelope: Envelope, statement: GovernanceStatement, now: int) -> Proposal:
    """The proposal a ``propose`` statement opens, authored by its signer (SRS-GOV-02/03)."""
    args = statement.args
    _only(args, ("title", "description", "type", "implementation_plan", "requested_sat",
                 "payout_address"))  # fmt: skip
    try:
        proposal_type = ProposalType(_arg(args, "type", str))
    except ValueError:
        raise InvalidValue("args.type", "must be technical, treasury or policy") from None
    try:
        return submit_proposal(
            proposal_id=proposal_id_of(envelope),
            author=envelope.signer,
            title=_arg(args, "title", str),
            description=_arg(args, "description", str),
            proposal_type=proposal_type,
            implementation_plan=_arg(args, "implementation_plan", str),
            now=now,
            requested_sat=_arg(args, "requested_sat", int, 0),
            payout_address=_arg(args, "payout_address", str, ""),
        )
    except InvalidValue as exc:
        raise InvalidValue(f"args.{exc.field}", exc.reason) from None


def apply(
    action: GovernanceAction,
    statement: GovernanceStatement,
    signer: str,
    proposal: Proposal,
    roles: GovernanceRoles | None,
    now: int,
) -> Proposal:
    """``proposal`` after ``action`` by ``signer`` (authorised already), for every action
    but ``propose`` (see :func:`propose`) and a treasury ``execute`` (see
    :func:`execute_treasury`). ``psbt_create`` changes nothing: it checks readiness."""
    args = statement.args
    if action is GovernanceAction.COMMENT:
        _only(args, ("text",))
        return add_comment(proposal, Comment(signer, _arg(args, "text", str), now))
    if action is GovernanceAction.EXTEND:
        _only(args, ("deadline_at",))
        return extend_comment_period(
            proposal, _arg(args, "deadline_at", int),
            maintainer=signer, core_maintainers=roles.maintainers if roles else (), now=now,
        )  # fmt: skip
    if action is GovernanceAction.CLOSE:
        _only(args, ("outcome",))
        try:
            outcome = Outcome(_arg(args, "outcome", str))
        except ValueError:
            raise InvalidValue("args.outcome", "must be accepted or rejected") from None
        return decide(close_comments(proposal, now), outcome is Outcome.ACCEPTED)
    _only(args, ())
    if action is GovernanceAction.EXECUTE and proposal.type is not ProposalType.TREASURY:
        return execute(proposal)
    if roles is None or not roles.holders:
        raise RoleRequired("no treasury multisig holders are configured")
    if action is GovernanceAction.ACK:
        holder = roles.holder(signer)
        if holder is None:  # authorise() refused it already
            raise RoleRequired("only a treasury multisig holder may acknowledge a proposal")
        return acknowledge(proposal, holder.multisig_key, roles.treasury)
    if action is GovernanceAction.PSBT_CREATE:
        check_ready_for_signing(proposal, roles.treasury)
        return proposal
    raise InvalidValue("body.action", f"{action.value} is not applied by this rule")


def execute_treasury(
    proposal: Proposal, roles: GovernanceRoles, signers: Iterable[str], txid: str
) -> Proposal:
    """An accepted treasury proposal paid by ``txid``, signed by ``signers`` (multisig keys):
    acknowledged as SRS-GOV-05 requires and signed by the quorum of SRS-LN-09."""
    return execute(proposal, treasury=roles.treasury, signers=signers, txid=txid)
