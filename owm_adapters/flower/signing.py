"""Signed FL updates over Flower: what a client attaches to its reply, what the server checks.

A train reply carries, besides its ArrayRecord and MetricRecord, a ConfigRecord under
:data:`SIGNATURE_RECORD` with ``node-id`` (OWM node id), ``public-key`` (64 hex) and
``signature`` (64 raw bytes): the client's Ed25519 signature over
:func:`owm_core.fl.participants.update_statement` of the round number, its node id and the digest of
its flat float32 update (:func:`owm_adapters.flower.model.flatten`). The server rejects a reply
whose node id does not belong to the key, whose signature does not verify, or (when a roster of
registered keys is given) whose key is not registered (SRS-SEC-05).
"""

from __future__ import annotations

from collections.abc import Collection

import attrs
import torch
from flwr.app import ConfigRecord, RecordDict

from owm_adapters.flower.model import flatten
from owm_core.errors import SignatureInvalid
from owm_core.fl.participants import update_digest, update_statement
from owm_core.identity.keys import Identity, node_id_matches, verify_signature

SIGNATURE_RECORD = "owm-signature"


@attrs.frozen(eq=False)
class VerifiedUpdate:
    """An update whose signature checked out: who sent it, its values, what they signed."""

    node_id: str
    public_key_hex: str
    flat: torch.Tensor
    statement: bytes


def sign_reply(content: RecordDict, identity: Identity, round_number: int, arrays_key: str) -> None:
    """Attach the signature record for the ArrayRecord ``content[arrays_key]``."""
    flat = flatten(content.array_records[arrays_key])
    statement = update_statement(round_number, identity.node_id, update_digest(flat))
    content[SIGNATURE_RECORD] = ConfigRecord(
        {
            "node-id": identity.node_id,
            "public-key": identity.public_key_hex,
            "signature": identity.sign(statement),
        }
    )


def verify_reply(
    content: RecordDict,
    round_number: int,
    arrays_key: str,
    registered_keys: Collection[str] | None = None,
) -> VerifiedUpdate:
    """Check a reply's signature record; raise :class:`SignatureInvalid` when it fails."""
    if SIGNATURE_RECORD not in content.config_records:
        raise SignatureInvalid("reply carries no signature record")
    record = content.config_records[SIGNATURE_RECORD]
    node_id, public_key, signature = (
        record.get("node-id"),
        record.get("public-key"),
        record.get("signature"),
    )
    if not (
        isinstance(node_id, str) and isinstance(public_key, str) and isinstance(signature, bytes)
    ):
        raise SignatureInvalid("signature record is malformed")
    try:
        owned = node_id_matches(node_id, public_key)
    except ValueError:
        owned = False
    if not owned:
        raise SignatureInvalid("node id does not belong to the public key")
    if registered_keys is not None and public_key not in registered_keys:
        raise SignatureInvalid("public key is not registered")
    arrays = [r for k, r in content.array_records.items() if k == arrays_key]
    if len(arrays) != 1:
        raise SignatureInvalid(f"reply carries no ArrayRecord {arrays_key!r}")
    flat = flatten(arrays[0])
    statement = update_statement(round_number, node_id, update_digest(flat))
    verify_signature(public_key, statement, signature)
    return VerifiedUpdate(node_id, public_key, flat, statement)
