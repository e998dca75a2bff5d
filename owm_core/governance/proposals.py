"""Governance proposals and treasury multisig rules (spec 4.9, SRS-GOV-01..06, SRS-LN-09).

This module owns what a proposal must say (SRS-GOV-03), how long it stays open for comments
(SRS-GOV-04/05), its status lifecycle, the treasury holders' acknowledgements (SRS-GOV-05), the
signature quorum for treasury spends (SRS-LN-09) and the Bitcoin transaction an executed treasury
proposal links to (SRS-GOV-06).

Lifecycle::

    open ──close (at/after the deadline)──▶ closed ──decide──▶ accepted ──execute──▶ executed
                                                     └────────▶ rejected

Defaults (all documented constants below): comment period 7 days, extendable by a core
maintainer up to 21 days, never shortened; treasury proposals above 0.1 BTC (10,000,000 sats)
get 14 days and need all 5 multisig holders' acknowledgements before signing; a treasury
spend above 0.01 BTC (1,000,000 sats) needs 3 of the 5 holders' signatures, a smaller one 1.

Time is int POSIX seconds passed in; values are frozen and every step returns a new proposal.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from owm_core import fields
from owm_core.errors import InvalidTransition, InvalidValue, PolicyViolation

DAY_S = 86_400
DEFAULT_COMMENT_PERIOD_S = 7 * DAY_S
"""Default comment period (SRS-GOV-04)."""
MAX_COMMENT_PERIOD_S = 21 * DAY_S
"""Longest comment period a core maintainer may extend to (SRS-GOV-04)."""
LARGE_TREASURY_COMMENT_PERIOD_S = 14 * DAY_S
"""Comment period of treasury proposals above :data:`LARGE_TREASURY_THRESHOLD_SAT` (SRS-GOV-05)."""
LARGE_TREASURY_THRESHOLD_SAT = 10_000_000
"""0.1 BTC: treasury proposals requesting *more* need 14 days and 5-of-5 acks (SRS-GOV-05)."""
MULTISIG_THRESHOLD_SAT = 1_000_000
"""0.01 BTC: treasury spends *above* this need :data:`MULTISIG_QUORUM` signatures (SRS-LN-09)."""
MULTISIG_HOLDERS = 5
"""The treasury multisig has exactly five holders (SRS-GOV-05, SRS-LN-09)."""
MULTISIG_QUORUM = 3
"""Signatures needed for a spend above 0.01 BTC: 3 of 5 (SRS-LN-09)."""
SMALL_SPEND_QUORUM = 1
"""Signatures needed at or below 0.01 BTC: the spec sets no higher bar, so one holder."""

_TXID_PATTERN = r"[0-9a-f]{64}"
_ADDRESS_PATTERN = r"(|[A-Za-z0-9]{14,90})"


class ProposalType(enum.Enum):
    """What a proposal changes (SRS-GOV-03)."""

    TECHNICAL = "technical"
    TREASURY = "treasury"
    POLICY = "policy"


class ProposalStatus(enum.Enum):
    """Where a proposal stands; only ``OPEN`` proposals take comments (SRS-GOV-01)."""

    OPEN = "open"
    CLOSED = "closed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXECUTED = "executed"


def minimum_comment_period_s(proposal_type: ProposalType, requested_sat: int) -> int:
    """The comment period a proposal starts with (SRS-GOV-04, SRS-GOV-05).

    14 days for treasury proposals requesting more than 0.1 BTC (exactly 0.1 BTC is not
    "exceeding"), otherwise 7 days.
    """
    if requires_all_holder_acks(proposal_type, requested_sat):
        return LARGE_TREASURY_COMMENT_PERIOD_S
    return DEFAULT_COMMENT_PERIOD_S


def requires_all_holder_acks(proposal_type: ProposalType, requested_sat: int) -> bool:
    """Whether all five multisig holders must acknowledge before signing (SRS-GOV-05)."""
    return proposal_type is ProposalType.TREASURY and requested_sat > LARGE_TREASURY_THRESHOLD_SAT


def required_signatures(amount_sat: int) -> int:
    """Distinct holder signatures a treasury spend of ``amount_sat`` needs (SRS-LN-09).

    3 of 5 above 0.01 BTC (1,000,000 sats); at or below, one holder suffices.
    """
    if isinstance(amount_sat, bool) or not isinstance(amount_sat, int) or amount_sat < 0:
        raise InvalidValue("amount_sat", f"must be an integer ≥ 0, got {amount_sat!r}")
    return MULTISIG_QUORUM if amount_sat > MULTISIG_THRESHOLD_SAT else SMALL_SPEND_QUORUM


def _key_set(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _comment_tuple(value: Iterable[Comment]) -> tuple[Comment, ...]:
    return tuple(value)


def _holders_valid(
    _instance: object, attribute: attrs.Attribute[frozenset[str]], value: object
) -> None:
    if not isinstance(value, frozenset) or len(value) != MULTISIG_HOLDERS:
        raise InvalidValue(attribute.name, f"must be {MULTISIG_HOLDERS} distinct public keys")
    check = fields.text(min_len=66, max_len=66, pattern=fields.LN_PUBKEY)
    for key in value:
        check(None, attribute, key)


@attrs.frozen
class TreasuryConfig:
    """The five multisig holders' public keys, compressed secp256k1 as lower-case hex.

    Hardware wallets sign treasury transactions (SRS-SEC-12); the core only counts which of
    these keys signed or acknowledged (SRS-GOV-05, SRS-LN-09).
    """

    holders: frozenset[str] = attrs.field(
        converter=_key_set,
        validator=_holders_valid,
    )


def check_spend_authorised(
    amount_sat: int, signers: Iterable[str], treasury: TreasuryConfig
) -> frozenset[str]:
    """Require enough distinct holder signatures for a spend (SRS-LN-09); return the signers.

    The same key signing twice counts once; a key that is not one of the five holders is a
    ``PolicyViolation``, as is a quorum short of :func:`required_signatures`.
    """
    distinct = frozenset(signers)
    outsiders = sorted(distinct - treasury.holders)
    if outsiders:
        raise PolicyViolation(f"not a treasury multisig holder: {', '.join(outsiders)}")
    needed = required_signatures(amount_sat)
    if len(distinct) < needed:
        raise PolicyViolation(
            f"a spend of {amount_sat} sat needs {needed} of {MULTISIG_HOLDERS} holder "
            f"signatures, got {len(distinct)}"
        )
    return distinct


@attrs.frozen
class Comment:
    """A remark on a proposal, made during its comment period (SRS-GOV-04)."""

    author: str = attrs.field(validator=fields.text(max_len=256))
    text: str = attrs.field(validator=fields.text(max_len=20_000))
    at: int = attrs.field(validator=fields.timestamp())


def _check_requested(proposal: Proposal) -> None:
    if proposal.type is ProposalType.TREASURY and proposal.requested_sat <= 0:
        raise InvalidValue("requested_sat", "a treasury proposal must request more than 0 sat")
    if proposal.type is not ProposalType.TREASURY and proposal.requested_sat != 0:
        raise InvalidValue("requested_sat", "only treasury proposals may request an amount")
    if proposal.type is not ProposalType.TREASURY and proposal.payout_address:
        raise InvalidValue("payout_address", "only treasury proposals name a payout address")


def _check_deadline(proposal: Proposal) -> None:
    period = proposal.comment_deadline_at - proposal.submitted_at
    shortest = minimum_comment_period_s(proposal.type, proposal.requested_sat)
    if not shortest <= period <= MAX_COMMENT_PERIOD_S:
        raise InvalidValue(
            "comment_deadline_at",
            f"comment period must last {shortest} to {MAX_COMMENT_PERIOD_S} s, got {period}",
        )


@attrs.frozen
class Proposal:
    """A governance proposal (SRS-GOV-02, SRS-GOV-03) and where it stands.

    ``requested_sat`` is > 0 for treasury proposals and 0 for the others. ``txid`` (the Bitcoin
    transaction that paid a treasury proposal, SRS-GOV-06) is set only once executed.
    ``acknowledgements`` are multisig holder keys (SRS-GOV-05). ``payout_address`` is the
    Bitcoin address a treasury proposal asks to be paid to (empty: none named yet, and then no
    transaction can be prepared for it).
    """

    proposal_id: str = attrs.field(validator=fields.text(max_len=128))
    author: str = attrs.field(validator=fields.text(max_len=256))
    title: str = attrs.field(validator=fields.text(max_len=200))
    description: str = attrs.field(validator=fields.text(max_len=50_000))
    type: ProposalType = attrs.field(validator=fields.instance_of(ProposalType))
    implementation_plan: str = attrs.field(validator=fields.text(max_len=50_000))
    requested_sat: int = attrs.field(validator=fields.money())
    submitted_at: int = attrs.field(validator=fields.timestamp())
    comment_deadline_at: int = attrs.field(validator=fields.timestamp())
    status: ProposalStatus = attrs.field(
        default=ProposalStatus.OPEN, validator=fields.instance_of(ProposalStatus)
    )
    comments: tuple[Comment, ...] = attrs.field(default=(), converter=_comment_tuple)
    acknowledgements: frozenset[str] = attrs.field(default=frozenset(), converter=_key_set)
    txid: str | None = attrs.field(default=None)
    payout_address: str = attrs.field(
        default="", validator=fields.text(min_len=0, max_len=90, pattern=_ADDRESS_PATTERN)
    )

    def __attrs_post_init__(self) -> None:
        """Cross-field rules: amount by type (SRS-GOV-03), period bounds, txid when executed."""
        _check_requested(self)
        _check_deadline(self)
        if self.txid is not None:
            fields.text(min_len=64, max_len=64, pattern=_TXID_PATTERN)(
                self, attrs.fields(Proposal).txid, self.txid
            )
            if self.status is not ProposalStatus.EXECUTED:
                raise InvalidValue("txid", "only an executed proposal links a transaction")
        elif self.status is ProposalStatus.EXECUTED and self.type is ProposalType.TREASURY:
            raise InvalidValue("txid", "an executed treasury proposal must link its transaction")

    @property
    def needs_all_holder_acks(self) -> bool:
        """Whether signing waits for all five holders' acknowledgements (SRS-GOV-05)."""
        return requires_all_holder_acks(self.type, self.requested_sat)

    def accepts_comments(self, now: int) -> bool:
        """Open, and ``now`` within [submitted_at, comment_deadline_at) (SRS-GOV-04)."""
        return (
            self.status is ProposalStatus.OPEN
            and self.submitted_at <= now < self.comment_deadline_at
        )


def submit_proposal(
    *,
    proposal_id: str,
    author: str,
    title: str,
    description: str,
    proposal_type: ProposalType,
    implementation_plan: str,
    now: int,
    requested_sat: int = 0,
    payout_address: str = "",
) -> Proposal:
    """Open a proposal whose comment period starts ``now`` (SRS-GOV-02..05).

    The deadline is ``now`` + 7 days, or + 14 days for a treasury request above 0.1 BTC.
    """
    valid_inputs = (
        isinstance(proposal_type, ProposalType)
        and isinstance(requested_sat, int)
        and isinstance(now, int)
    )
    # Invalid inputs fall through to Proposal's validators, which name the offending field.
    deadline = now + minimum_comment_period_s(proposal_type, requested_sat) if valid_inputs else now
    return Proposal(
        proposal_id=proposal_id,
        author=author,
        title=title,
        description=description,
        type=proposal_type,
        implementation_plan=implementation_plan,
        requested_sat=requested_sat,
        submitted_at=now,
        comment_deadline_at=deadline,
        payout_address=payout_address,
    )


def _require_status(proposal: Proposal, status: ProposalStatus, action: str) -> None:
    if proposal.status is not status:
        raise InvalidTransition(
            f"cannot {action} proposal {proposal.proposal_id}: it is {proposal.status.value}, "
            f"not {status.value}"
        )


def extend_comment_period(
    proposal: Proposal,
    new_deadline_at: int,
    *,
    maintainer: str,
    core_maintainers: Iterable[str],
    now: int,
) -> Proposal:
    """Let a core maintainer lengthen an open comment period, to at most 21 days (SRS-GOV-04).

    The deadline never moves earlier and never beyond ``submitted_at + 21 days``; the period
    must still be running (``now`` before the current deadline).
    """
    _require_status(proposal, ProposalStatus.OPEN, "extend")
    if maintainer not in set(core_maintainers):
        raise PolicyViolation(f"{maintainer} is not a core maintainer and cannot extend")
    if not proposal.accepts_comments(now):
        raise PolicyViolation("the comment period is not running; it can no longer be extended")
    if new_deadline_at < proposal.comment_deadline_at:
        raise PolicyViolation("a comment period can be extended, never shortened")
    if new_deadline_at - proposal.submitted_at > MAX_COMMENT_PERIOD_S:
        raise PolicyViolation("a comment period cannot last more than 21 days")
    return attrs.evolve(proposal, comment_deadline_at=new_deadline_at)


def add_comment(proposal: Proposal, comment: Comment) -> Proposal:
    """Record ``comment`` if it falls within the open comment period (SRS-GOV-04)."""
    if not proposal.accepts_comments(comment.at):
        raise PolicyViolation(
            f"proposal {proposal.proposal_id} takes comments only while open, from "
            f"{proposal.submitted_at} until before {proposal.comment_deadline_at}"
        )
    return attrs.evolve(proposal, comments=(*proposal.comments, comment))


def close_comments(proposal: Proposal, now: int) -> Proposal:
    """End the comment period once its deadline has come (open → closed, SRS-GOV-04)."""
    _require_status(proposal, ProposalStatus.OPEN, "close")
    if now < proposal.comment_deadline_at:
        raise InvalidTransition(
            f"the comment period of {proposal.proposal_id} runs until "
            f"{proposal.comment_deadline_at}"
        )
    return attrs.evolve(proposal, status=ProposalStatus.CLOSED)


def decide(proposal: Proposal, accept: bool) -> Proposal:
    """Record the outcome of a closed proposal (closed → accepted | rejected)."""
    _require_status(proposal, ProposalStatus.CLOSED, "decide")
    return attrs.evolve(
        proposal, status=ProposalStatus.ACCEPTED if accept else ProposalStatus.REJECTED
    )


def acknowledge(proposal: Proposal, holder: str, treasury: TreasuryConfig) -> Proposal:
    """A multisig holder acknowledges a treasury proposal (SRS-GOV-05); repeats count once."""
    if proposal.type is not ProposalType.TREASURY:
        raise PolicyViolation("only treasury proposals are acknowledged by multisig holders")
    if proposal.status in (ProposalStatus.REJECTED, ProposalStatus.EXECUTED):
        raise InvalidTransition(f"proposal {proposal.proposal_id} is {proposal.status.value}")
    if holder not in treasury.holders:
        raise PolicyViolation(f"not a treasury multisig holder: {holder}")
    return attrs.evolve(proposal, acknowledgements=proposal.acknowledgements | {holder})


def check_ready_for_signing(proposal: Proposal, treasury: TreasuryConfig) -> None:
    """Require an accepted treasury proposal with every acknowledgement it needs (SRS-GOV-05).

    Above 0.1 BTC all five configured holders must have acknowledged before anyone signs.
    """
    if proposal.type is not ProposalType.TREASURY:
        raise PolicyViolation("only treasury proposals are signed by the multisig")
    _require_status(proposal, ProposalStatus.ACCEPTED, "sign")
    if proposal.needs_all_holder_acks:
        missing = treasury.holders - proposal.acknowledgements
        if missing:
            raise PolicyViolation(
                f"{len(missing)} of {MULTISIG_HOLDERS} multisig holders have not acknowledged "
                f"a request above {LARGE_TREASURY_THRESHOLD_SAT} sat"
            )


def execute(
    proposal: Proposal,
    *,
    treasury: TreasuryConfig | None = None,
    signers: Iterable[str] = (),
    txid: str | None = None,
) -> Proposal:
    """Mark an accepted proposal executed (accepted → executed).

    A treasury proposal must be ready for signing (SRS-GOV-05), carry enough distinct holder
    signatures for its amount (SRS-LN-09) and link the Bitcoin transaction that paid it
    (SRS-GOV-06, ``txid`` as 64 lower-case hex). Other proposals take no txid or signers.
    """
    _require_status(proposal, ProposalStatus.ACCEPTED, "execute")
    if proposal.type is ProposalType.TREASURY:
        if treasury is None:
            raise PolicyViolation("a treasury proposal needs the treasury multisig to execute")
        check_ready_for_signing(proposal, treasury)
        check_spend_authorised(proposal.requested_sat, signers, treasury)
        if txid is None:
            raise InvalidValue("txid", "an executed treasury proposal must link its transaction")
    elif txid is not None:
        raise InvalidValue("txid", "only treasury proposals link a Bitcoin transaction")
    return attrs.evolve(proposal, status=ProposalStatus.EXECUTED, txid=txid)


def open_proposals(proposals: Iterable[Proposal], now: int) -> list[Proposal]:
    """Proposals still taking comments, soonest deadline first (SRS-GOV-01)."""
    return sorted(
        (p for p in proposals if p.accepts_comments(now)),
        key=lambda p: (p.comment_deadline_at, p.proposal_id),
    )
