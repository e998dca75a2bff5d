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
from typing import Any, Protocol

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


class ChallengeStore(Protocol):
    """Where outstanding challenges wait for their answer: this process's memory
    (:class:`OpenChallenges`) or a store every coordinator shares
    (:class:`owm_core.ports.repositories.ChallengeRepository`, SRS-COORD-05)."""

    def __len__(self) -> int:
        """How many challenges are outstanding (expired ones not yet forgotten included)."""
        ...

    def add(self, challenge: Challenge, keep: int) -> None:
        """Hold ``challenge``; then at most ``keep`` challenges, the oldest dropped first."""
        ...

    def take(self, nonce: str) -> Challenge | None:
        """Remove and return the challenge with ``nonce`` (None if none): one use only."""
        ...

    def forget_expired(self, now: int) -> int:
        """Drop every challenge that expired before ``now``; how many."""
        ...


@attrs.define
class OpenChallenges:
    """Outstanding challenges in this process's memory, oldest first (one coordinator)."""

    _open: OrderedDict[str, Challenge] = attrs.field(init=False, factory=OrderedDict)

    def __len__(self) -> int:
        """How many challenges are outstanding."""
        return len(self._open)

    def add(self, challenge: Challenge, keep: int) -> None:
        """Hold ``challenge``; then at most ``keep`` challenges, the oldest dropped first."""
        self._open[challenge.nonce] = challenge
        while len(self._open) > keep:
            self._open.popitem(last=False)

    def take(self, nonce: str) -> Challenge | None:
        """Remove and return the challenge with ``nonce`` (None if none)."""
        return self._open.pop(nonce, None)

    def forget_expired(self, now: int) -> int:
        """Drop every challenge that expired before ``now``; how many."""
        dropped = 0
        while self._open:
            first = next(iter(self._open.values()))
            if first.expires_at >= now:
                break
            self._open.popitem(last=False)
            dropped += 1
        return dropped


@attrs.define
class ChallengeBook:
    """Outstanding challenges: issue, then redeem once (SRS-SEC-03).

    They wait in ``store``: this process's memory by default, or the store every coordinator
    on one database shares, so a challenge issued by one coordinator can be answered at
    another (SRS-COORD-05). Memory is bounded by ``max_outstanding``; expired challenges are
    forgotten as time passes. A redeemed challenge is gone even when the answer was wrong,
    so answers cannot be guessed.
    """

    ttl_s: int = attrs.field(default=DEFAULT_CHALLENGE_TTL_S, validator=fields.integer(1, 3600))
    max_outstanding: int = attrs.field(default=100_000, validator=fields.integer(minimum=1))
    store: ChallengeStore = attrs.field(factory=OpenChallenges)

    def __len__(self) -> int:
        return len(self.store)

    def issue(
        self, public_key: str, purpose: ChallengePurpose, nonce: bytes, now: int
    ) -> Challenge:
        """A new challenge for ``public_key`` and ``purpose``; ``nonce`` is 32 random bytes."""
        parse_public_key(public_key)
        if not isinstance(nonce, bytes) or len(nonce) != CHALLENGE_NONCE_BYTES:
            raise InvalidValue("nonce", f"must be {CHALLENGE_NONCE_BYTES} random bytes")
        self.store.forget_expired(now)
        challenge = Challenge(public_key, purpose, nonce.hex(), now, now + self.ttl_s)
        self.store.add(challenge, self.max_outstanding)
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
        challenge = self.store.take(nonce) if isinstance(nonce, str) else None
        if challenge is None or now > challenge.expires_at:
            raise SignatureInvalid("unknown or expired challenge; ask for a new one")
        if challenge.public_key != public_key or challenge.purpose is not purpose:
            raise SignatureInvalid("challenge was issued for another key or purpose")
        try:
            raw = bytes.fromhex(signature)
        except (TypeError, ValueError):
            raise SignatureInvalid("signature must be 128 hex characters") from None
        verify_signature(public_key, challenge_message(challenge, details), raw)
        return challenge
