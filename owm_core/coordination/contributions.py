"""The ownership record of a merged contribution: what was contributed, by whom, when, and
what it earned — signed by the coordinator and anchored in Bitcoin with OpenTimestamps
(seed 000/001: push → validate → store → record ownership → analysis → reward → announce).

A :class:`ContributionRecord` names the repository, pull request, author, merge commit and the
SHA-256 of the archive kept in the content store; :func:`sign_record` makes the
:class:`SignedContribution` whose ``record_digest`` is what the OTS proof attests. Anyone can
check it with the coordinator's public key (:func:`verify_contribution`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs

from owm_core import fields
from owm_core.identity.envelopes import canonical_bytes
from owm_core.identity.keys import Identity, verify_signature

DOMAIN = b"owm/contribution/v1\x00"


@attrs.frozen
class ContributionRecord:
    """One merged pull request as the coordinator recorded it."""

    repository: str = attrs.field(validator=fields.text(max_len=140))
    pull_number: int = attrs.field(validator=fields.integer(1))
    author: str = attrs.field(validator=fields.text(max_len=64))
    merge_sha: str = attrs.field(validator=fields.text(max_len=64))
    archive_sha256: str = attrs.field(validator=fields.hex_digest())
    score: int = attrs.field(validator=fields.integer(0, 100))
    reward_msat: int = attrs.field(validator=fields.money())
    recorded_at: int = attrs.field(validator=fields.timestamp())

    def as_dict(self) -> dict[str, Any]:
        """The record as canonical JSON's input."""
        return attrs.asdict(self)

    def digest(self) -> str:
        """SHA-256 of the domain-separated canonical record: what is signed and stamped."""
        return hashlib.sha256(DOMAIN + canonical_bytes(self.as_dict())).hexdigest()


@attrs.frozen
class SignedContribution:
    """A record, the coordinator's key and its Ed25519 signature over the record's digest."""

    record: ContributionRecord
    coordinator_key: str
    signature: str

    def as_dict(self) -> dict[str, Any]:
        """For storing and serving (the OTS proof travels beside it)."""
        return {
            "record": self.record.as_dict(),
            "record_digest": self.record.digest(),
            "coordinator_key": self.coordinator_key,
            "signature": self.signature,
        }


def sign_record(coordinator: Identity, record: ContributionRecord) -> SignedContribution:
    """The coordinator's signature over ``record``."""
    signature = coordinator.sign(bytes.fromhex(record.digest()))
    return SignedContribution(record, coordinator.public_key_hex, signature.hex())


def verify_contribution(signed: SignedContribution, coordinator_key: str) -> None:
    """SignatureInvalid unless ``signed`` carries ``coordinator_key``'s signature over its
    record."""
    verify_signature(coordinator_key, bytes.fromhex(signed.record.digest()),
                     bytes.fromhex(signed.signature))


def reward_msat(score: int, base_sat: int) -> int:
    """What a merged contribution earns: ``base_sat`` scaled by its score (0..100), in msat."""
    return base_sat * 1_000 * max(0, min(100, score)) // 100
