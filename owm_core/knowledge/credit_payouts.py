"""Paying data contributors their credits over Lightning (SRS 2.2, SRS-LN-08).

Credits accrue per answered query (:mod:`owm_core.knowledge.retrieval`); a contributor who
registered a Lightning node (:class:`DataPayee`) is paid what is owed — everything credited
minus everything already enqueued — through the payout outbox, when it reaches the
threshold, or on the timer once at least one satoshi is owed (:func:`payout_due`). Each payout
is the contributor's ``n``-th, under a deterministic outbox id (:func:`payout_ids`): a sweep
repeated after a crash finds the record and pays nothing twice.
"""

from __future__ import annotations

import hashlib

import attrs

from owm_core import fields
from owm_core.knowledge.datasets import CONTRIBUTOR_MAX_CHARS

DATA_PAYOUT_PREFIX = "data-credits:"


@attrs.frozen
class DataPayee:
    """Where a data contributor is paid: their Lightning node's public key."""

    contributor: str = attrs.field(validator=fields.text(max_len=CONTRIBUTOR_MAX_CHARS))
    ln_pubkey: str = attrs.field(validator=fields.text(pattern=fields.LN_PUBKEY))
    registered_at: int = attrs.field(validator=fields.timestamp())


@attrs.frozen
class PayoutTerms:
    """When credits are paid: at ``threshold_msat`` owed, or every ``interval_s`` once at
    least ``min_msat`` is owed."""

    threshold_msat: int = attrs.field(default=100_000, validator=fields.money(minimum=1_000))
    interval_s: int = attrs.field(default=86_400, validator=fields.integer(minimum=60))
    min_msat: int = attrs.field(default=1_000, validator=fields.money(minimum=1_000))


def owed_msat(credited_msat: int, enqueued_msat: int) -> int:
    """What is still owed: credited minus already enqueued (never negative)."""
    return max(0, credited_msat - enqueued_msat)


def payout_due(owed: int, last_payout_at: int | None, since: int, now: int,
               terms: PayoutTerms) -> bool:
    """Whether to pay ``owed`` now: at the threshold, or once ``interval_s`` passed since the
    last payout (or since ``since``, the payee's registration) with at least ``min_msat``."""
    if owed >= terms.threshold_msat:
        return True
    start = last_payout_at if last_payout_at is not None else since
    return owed >= terms.min_msat and now - start >= terms.interval_s


def payout_ids(contributor: str, n: int) -> tuple[str, str]:
    """``(payment_id, task_id)`` of ``contributor``'s ``n``-th payout (0-based)."""
    digest = hashlib.sha256(f"{contributor}\x00{n}".encode()).hexdigest()[:40]
    return f"dc-{digest}", f"{DATA_PAYOUT_PREFIX}{contributor}:{n}"
