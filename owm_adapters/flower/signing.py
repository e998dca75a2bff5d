"""Signed FL updates over Flower: what a client attaches to its reply, what the server checks.

A train reply carries, besides its ArrayRecord and MetricRecord, a ConfigRecord under
:data:`SIGNATURE_RECORD` with ``node-id`` (OWM node id), ``public-key`` (64 hex) and
``signature`` (64 raw bytes): the client's Ed25519 signature over the v2
:func:`owm_core.fl.participants.update_statement` of the round number, its node id, the digest
of its flat float32 update (:func:`owm_adapters.flower.model.flatten`) and the example count
its MetricRecord reports under :data:`EXAMPLES_KEY` — the count the strategy weighs the update
by. The server rejects a reply whose node id does not belong to the key, whose count is
missing, not an integer, below 1 or above what the round handed each client
(:func:`owm_core.fl.updates.check_examples`), whose signature does not verify over that count
(a count changed after signing, or one left out of the signature: a v1 statement), or (when a
roster of registered keys is given) whose key is not registered (SRS-SEC-05).
"""

from __future__ import annotations

from collections.abc import Collection

import attrs
import torch
from flwr.app import ConfigRecord, MetricRecord, RecordDict

from owm_adapters.flower.model import flatten
from owm_core.errors import SignatureInvalid
from owm_core.fl.participants import update_digest, update_statement
from owm_core.fl.updates import DEFAULT_MAX_EXAMPLES, MAX_EXAMPLES, check_examples
from owm_core.identity.keys import Identity, node_id_matches, verify_signature

SIGNATURE_RECORD = "owm-signature"
EXAMPLES_KEY = "num-examples"
"""The reply metric that says how many examples the update trained on (Flower's FedAvg
``weighted_by_key``)."""


@attrs.frozen(eq=False)
class VerifiedUpdate:
    """An update whose signature checked out: who sent it, its values, the example count it
    is weighed by, what they signed."""

    node_id: str
    public_key_hex: str
    flat: torch.Tensor
    statement: bytes
    num_examples: int


def reply_metrics(content: RecordDict) -> MetricRecord:
    """The reply's MetricRecord (its first; an empty one when it carries none)."""
    return next(iter(content.metric_records.values()), MetricRecord())


def sign_reply(
    content: RecordDict,
    identity: Identity,
    round_number: int,
    arrays_key: str,
    examples_key: str = EXAMPLES_KEY,
) -> None:
    """Attach the signature record for the ArrayRecord ``content[arrays_key]`` and the example
    count ``content``'s metrics report under ``examples_key``."""
    flat = flatten(content.array_records[arrays_key])
    examples = check_examples(reply_metrics(content).get(examples_key), MAX_EXAMPLES, examples_key)
    statement = update_statement(round_number, identity.node_id, update_digest(flat), examples)
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
    *,
    examples_key: str = EXAMPLES_KEY,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> VerifiedUpdate:
    """Check a reply's signature record and its signed example count (at most
    ``max_examples``); raise :class:`SignatureInvalid`, or :class:`InvalidValue` naming
    ``examples_key``, when they fail."""
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
    examples = check_examples(reply_metrics(content).get(examples_key), max_examples, examples_key)
    digest = update_digest(flat)
    statement = update_statement(round_number, node_id, digest, examples)
    try:
        verify_signature(public_key, statement, signature)
    except SignatureInvalid:
        try:
            verify_signature(public_key, update_statement(round_number, node_id, digest), signature)
        except SignatureInvalid:
            raise SignatureInvalid("signature does not verify") from None
        raise SignatureInvalid(f"signature does not cover {examples_key}") from None
    return VerifiedUpdate(node_id, public_key, flat, statement, examples)
