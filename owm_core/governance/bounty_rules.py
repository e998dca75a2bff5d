"""Bounties on GitHub issues: the commands, who may use them, and what a closed pull request or
issue means for a bounty (the money moves through the payout outbox, SRS-LN-08).

* ``/bounty <sats>`` in an issue comment, by a maintainer of the repository (GitHub's
  ``author_association`` OWNER, MEMBER or COLLABORATOR), opens a bounty funded from the treasury
  budget; the API opens one too, funded by the treasury (a maintainer only) or by a sponsor
  whose invoice must be paid before the bounty is open (:class:`Funding`,
  :func:`check_opener`). Only repositories the GitHub App is installed on take bounties: no
  other repository could ever pay or cancel one.
* An open bounty nobody claimed lapses a configured time after it was opened, and a sponsored
  one whose invoice expired unpaid is cancelled (:func:`unclaimed_lapsed`,
  :func:`funding_lapsed`): the budget they held is freed even when GitHub never sends the
  issue's ``closed`` event.
* ``/claim <Lightning node public key>`` by anyone but the bounty's creator claims it, naming
  where the bounty is paid; one claimant per bounty.
* A pull request that names the issue with a closing keyword (``Closes #12``) and is merged pays
  the bounty to its claimant, when the pull request's author is that claimant: once, through
  the outbox (:func:`on_pull_request_closed`). A pull request closed without merge pays nothing.
* An issue closed while its bounty is still open cancels it; a sponsor is refunded. A claimed
  bounty waits :data:`CLAIM_GRACE_S` first: merging a pull request that closes an issue makes
  GitHub send both ``pull_request`` ``closed`` and ``issues`` ``closed``, in no set order, and
  the claimant's merge must still pay when the issue's event comes first
  (:func:`on_issue_closed`, :func:`claim_lapsed`).
"""

from __future__ import annotations

import enum
import re

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue, PolicyViolation, RoleRequired

MAINTAINER_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
"""GitHub's ``author_association`` values of people who may open bounties on a repository."""

_BOUNTY = re.compile(r"^/bounty\s+([0-9][0-9_,]{0,20})(?:\s*sats?)?\s*$", re.M | re.I)
_CLAIM = re.compile(r"^/claim(?:\s+(\S+))?\s*$", re.M | re.I)
_CLOSING = re.compile(
    r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#([0-9]{1,10})\b", re.I
)
LN_PUBKEY = re.compile(r"0[23][0-9a-f]{64}")

CLAIM_GRACE_S = 3_600
"""How long a claimed bounty whose issue closed stays open for its claimant's merged pull
request (whose webhook delivery may come after the issue's, or be redelivered later)."""


class Funding(enum.Enum):
    """Who pays a bounty: the treasury's bounty budget, or a sponsor's invoice paid first."""

    TREASURY = "treasury"
    SPONSOR = "sponsor"


class Outcome(enum.Enum):
    """What a closed pull request or issue does to a bounty."""

    PAY = "pay"
    REFUND = "refund"
    CANCEL = "cancel"
    WAIT = "wait"
    NOTHING = "nothing"


@attrs.frozen
class OpenCommand:
    """``/bounty <sats>``."""

    amount_sat: int = attrs.field(validator=fields.money(minimum=1))


@attrs.frozen
class ClaimCommand:
    """``/claim <payee>``; ``payee`` is empty when the comment named none."""

    payee: str


Command = OpenCommand | ClaimCommand


def parse_command(body: str) -> Command | None:
    """The bounty command on a line of its own in a comment, or None. ``/bounty`` with an
    amount that is no whole number of satoshis is InvalidValue naming ``amount_sat``."""
    opened = _BOUNTY.search(body)
    if opened is not None:
        digits = opened.group(1).replace("_", "").replace(",", "")
        if not digits.isdigit() or int(digits) < 1:
            raise InvalidValue("amount_sat", "must be a whole number of satoshis, at least 1")
        return OpenCommand(int(digits))
    claimed = _CLAIM.search(body)
    if claimed is not None:
        return ClaimCommand((claimed.group(1) or "").strip().lower())
    return None


def check_payee(payee: str) -> str:
    """A claim's payee: a Lightning node public key (66 hex); InvalidValue otherwise."""
    candidate = payee.partition("@")[0].lower()
    if not LN_PUBKEY.fullmatch(candidate):
        raise InvalidValue(
            "payee", "name your Lightning node's public key: /claim <66 hex digits>"
        )
    return candidate


def closing_issues(pull_request_body: str) -> frozenset[int]:
    """The issue numbers a pull request closes by GitHub's keywords (``Fixes #3``)."""
    return frozenset(int(n) for n in _CLOSING.findall(pull_request_body or ""))


def check_amount(amount_sat: int, cap_sat: int) -> None:
    """PolicyViolation if one bounty would exceed ``cap_sat``."""
    if amount_sat > cap_sat:
        raise PolicyViolation(f"a bounty is at most {cap_sat} sat; {amount_sat} asked")


def check_budget(committed_sat: int, amount_sat: int, budget_sat: int) -> None:
    """PolicyViolation if a treasury bounty would take the treasury's open bounties (already
    ``committed_sat``) past its bounty budget ``budget_sat``."""
    if committed_sat + amount_sat > budget_sat:
        left = max(0, budget_sat - committed_sat)
        raise PolicyViolation(
            f"the treasury's bounty budget has {left} sat left; {amount_sat} asked"
        )


def check_opener(funding: Funding, maintainer: bool, installation_id: int | None) -> None:
    """Who may open a bounty where: PolicyViolation on a repository the GitHub App is not
    installed on (``installation_id`` None: its events never arrive, so the bounty could never
    be paid or cancelled); RoleRequired for a treasury-funded bounty opened by anyone but a
    maintainer, since it takes from the treasury's bounty budget (everyone else sponsors one
    with their own payment)."""
    if installation_id is None:
        raise PolicyViolation("the GitHub App is not installed on this repository; bounties "
                              "are opened only where it is")
    if funding is Funding.TREASURY and not maintainer:
        raise RoleRequired("only a maintainer opens a treasury-funded bounty; sponsor one "
                           "instead (name your Lightning node as sponsor_node and pay)")


def unclaimed_lapsed(created_at: int, claimant: str, now: int, lapse_s: int) -> bool:
    """True once an open bounty nobody claimed has waited ``lapse_s`` since it was opened: it
    is then cancelled (its sponsor refunded), so an abandoned bounty cannot hold the treasury's
    budget for ever."""
    return not claimant and now >= created_at + lapse_s


def funding_lapsed(created_at: int, now: int, invoice_expiry_s: int) -> bool:
    """True once a sponsored bounty's invoice has expired unpaid (it was made with the bounty,
    living ``invoice_expiry_s``): the bounty can never open and is cancelled."""
    return now >= created_at + invoice_expiry_s


def on_pull_request_closed(merged: bool, author: str, claimant: str | None) -> Outcome:
    """A pull request closing a bounty's issue: merged and by the claimant → PAY; anything
    else pays nothing (an unmerged pull request, an unclaimed bounty, another author)."""
    if merged and claimant is not None and author.lower() == claimant.lower():
        return Outcome.PAY
    return Outcome.NOTHING


def on_issue_closed(funding: Funding, payout_enqueued: bool, claimed: bool = False) -> Outcome:
    """An issue closed while its bounty waits: CANCEL it, or REFUND its sponsor; nothing
    when its payout is enqueued already (the merged pull request closed it); WAIT when it is
    claimed, since the claimant's merge that closed the issue may be delivered after it
    (:func:`claim_lapsed` says when the wait is over)."""
    if payout_enqueued:
        return Outcome.NOTHING
    if claimed:
        return Outcome.WAIT
    return Outcome.REFUND if funding is Funding.SPONSOR else Outcome.CANCEL


def claim_lapsed(issue_closed_at: int | None, now: int, grace_s: int = CLAIM_GRACE_S) -> bool:
    """True once a claimed bounty's issue has been closed ``grace_s`` without the claimant's
    merge: the bounty is then cancelled (or its sponsor refunded) like an unclaimed one."""
    return issue_closed_at is not None and now >= issue_closed_at + grace_s
