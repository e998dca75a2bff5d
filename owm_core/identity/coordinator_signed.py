"""What coordinator-signed messages to a node share (SRS-SEC-01/03): the statement and its check.

A message the coordinator sends a node to act on (a task assignment, a payout request) is
signed over ``domain ‖ canonical JSON {its fields, the recipient node's key}``, so it cannot
be changed, forged without the coordinator key, or replayed to another node. Its fields are
the message's own attributes but the signature (:func:`signed_fields`), so a message and its
statement cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from owm_core.errors import SignatureInvalid
from owm_core.identity.envelopes import canonical_bytes
from owm_core.identity.keys import SIGNATURE_BYTES, parse_public_key, verify_signature


def statement(
    domain: bytes, fields: Mapping[str, object], recipient_public_key_hex: str, what: str
) -> bytes:
    """The bytes the coordinator signs: ``domain``, then ``fields`` and the recipient's key."""
    recipient = parse_public_key(recipient_public_key_hex, "recipient")
    return domain + canonical_bytes({**fields, "recipient": recipient}, what)


def signed_fields(value: Any, *left_out: str) -> dict[str, Any]:
    """The attributes of ``value`` a statement covers: all but its ``signature`` and the
    ``left_out`` ones (those the message signs in another form, a digest say)."""
    skipped = {"signature", *left_out}
    fields: dict[str, Any] = attrs.asdict(
        value, recurse=False, filter=lambda a, _: a.name not in skipped
    )
    return fields


def check(coordinator_public_key_hex: str, signed: bytes, signature: bytes, what: str) -> None:
    """Raise :class:`SignatureInvalid` unless the coordinator key signed ``signed``."""
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureInvalid(f"the {what} is not signed by the coordinator")
    verify_signature(coordinator_public_key_hex, signed, signature)
