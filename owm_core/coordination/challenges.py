"""Challenge–response authentication of node keys (SRS-SEC-03).

This module owns how the coordinator proves that a request comes from the holder of a node key
without the key ever leaving the node. :class:`ChallengeBook` issues a random challenge bound
to one public key and one :class:`ChallengePurpose`, valid for ``ttl_s`` seconds and for one
use. The node signs :func:`challenge_message` — the challenge plus the request's ``details``
(for registration: the manifest digest and Lightning URI, see
:func:`owm_core.coordination.registration.registration_details`), so a signature cannot be
lifted onto other details. Time (``now``, int POSIX seconds) and the nonce bytes are passed in.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue, SignatureInvalid
from owm_core.identity.envelopes import canonical_bytes
from owm_core.identity.keys import parse_public_key, verify_signature

CHALLENGE_DOMAIN = b"owm/challenge/v1\x00"
CHALLENGE_NONCE_BYTES = 32
DEFAULT_CHALLENGE_TTL_S = 120
"""A challenge must be answered within two minutes."""


class ChallengePurpose(enum.Enum):
    """What an answered challenge authorises; part of the signed message."""

    REGISTER = "register"
    TASK_STREAM = "task_stream"
    DEREGISTER = "deregister"


def _purpose(value: object) -> object:
    if isinstance(value, str):
        try:
            return ChallengePurpose(value)
        except ValueError:
            raise InvalidValue("purpose", f"unknown purpose {value!r}") from None
    return value


@attrs.frozen
class Challenge:
    """A random challenge the coordinator issued to one key for one purpose (SRS-SEC-03)."""

    public_key: str = attrs.field(validator=fields.hex_digest(32))
    purpose: ChallengePurpose = attrs.field(
        converter=_purpose, validator=fields.instance_of(ChallengePurpose)
    )
    nonce: str = attrs.field(validator=fields.hex_digest(CHALLENGE_NONCE_BYTES))
    issued_at: int = attrs.field(validator=fields.timestamp())
    expires_at: int = attrs.field(validator=fields.timestamp())


def challenge_message(challenge: Challenge, details: Mapping[str, Any]) -> bytes:
    """The bytes a node signs to answer ``challenge`` for a request carrying ``details``.

    ``b"owm/challenge/v1\\x00" + canonical({"details", "expires_at", "issued_at", "nonce",
    "public_key", "purpose"})`` — domain-separated from envelopes, bound to the key, the
    purpose and the request's details.
    """
    return CHALLENGE_DOMAIN + canonical_bytes(
        {
            "details": dict(details),
            "expires_at": challenge.expires_at,
            "issued_at": challenge.issued_at,
            "nonce": challenge.nonce,
            "public_key": challenge.public_key,
            "purpose": challenge.purpose.value,
        },
        "details",
    )


@attrs.define
class ChallengeBook:
    """Outstanding challenges (in memory, one per coordinator process): issue, then redeem once.

    Memory is bounded by ``max_outstanding``; expired challenges are forgotten as time passes.
    A redeemed challenge is gone even when the answer was wrong, so answers cannot be guessed.
    """

    ttl_s: int = attrs.field(default=DEFAULT_CHALLENGE_TTL_S, validator=fields.integer(1, 3600))
    max_outstanding: int = attrs.field(default=100_000, validator=fields.integer(minimum=1))
    _open: OrderedDict[str, Challenge] = attrs.field(init=False, factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._open)

    def issue(
        self, public_key: str, purpose: ChallengePurpose, nonce: bytes, now: int
    ) -> Challenge:
        """A new challenge for ``public_key`` and ``purpose``; ``nonce`` is 32 random bytes."""
        parse_public_key(public_key)
        if not isinstance(nonce, bytes) or len(nonce) != CHALLENGE_NONCE_BYTES:
            raise InvalidValue("nonce", f"must be {CHALLENGE_NONCE_BYTES} random bytes")
        self._forget_expired(now)
        while len(self._open) >= self.max_outstanding:
            self._open.popitem(last=False)
        challenge = Challenge(public_key, purpose, nonce.hex(), now, now + self.ttl_s)
        self._open[challenge.nonce] = challenge
        return challenge

    def redeem(
        self,
        public_key: str,
        purpose: ChallengePurpose,
        nonce: str,
        signature: str,
        details: Mapping[str, Any],
        now: int,
    ) -> Challenge:
        """Check the answer to a challenge and use it up; SignatureInvalid if anything is off."""
        parse_public_key(public_key)
        self._forget_expired(now)
        challenge = self._open.pop(nonce, None) if isinstance(nonce, str) else None
        if challenge is None:
            raise SignatureInvalid("unknown or expired challenge; ask for a new one")
        if challenge.public_key != public_key or challenge.purpose is not purpose:
            raise SignatureInvalid("challenge was issued for another key or purpose")
        if now > challenge.expires_at:
            raise SignatureInvalid("challenge expired; ask for a new one")
        try:
            raw = bytes.fromhex(signature)
        except (TypeError, ValueError):
            raise SignatureInvalid("signature must be 128 hex characters") from None
        verify_signature(public_key, challenge_message(challenge, details), raw)
        return challenge

    def _forget_expired(self, now: int) -> None:
        while self._open:
            first = next(iter(self._open.values()))
            if first.expires_at >= now:
                break
            self._open.popitem(last=False)
