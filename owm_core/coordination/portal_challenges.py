"""The challenges the governance portal hands out for signed statements (SRS-GOV-02/03).

In the portal a node operator (or a maintainer, or a holder) acts by signing a statement with
their own key, offline — ``owm gov … --sign-only --challenge C`` — and pasting it: no key
reaches the browser or the coordinator. ``C``, shown on the page, is a challenge the
coordinator chose and the statement's nonce: 4 bytes of its issue time, 4 random bytes and the
first 8 bytes of the coordinator's Ed25519 signature over both (Ed25519 signatures are
deterministic, so the coordinator's key recomputes them). The coordinator recognises its own
challenge without storing it — so does every coordinator sharing its key behind a load
balancer — refuses one issued more than :data:`CHALLENGE_LIFE_S` ago or made up by anyone
else, and its governance log refuses a statement accepted before: a pasted statement is the
answer to a challenge this coordinator issued within five minutes, used once.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable

from owm_core.errors import InvalidValue

CHALLENGE_LIFE_S = 300
"""How long after it was issued a challenge may be answered."""
_DOMAIN = b"owm-governance-portal-challenge/1|"

Sign = Callable[[bytes], bytes]
"""The coordinator's Ed25519 signing (deterministic): message → 64-byte signature."""


def _tag(sign: Sign, head: bytes) -> bytes:
    return sign(_DOMAIN + head)[:8]


def issue_challenge(sign: Sign, random4: bytes, now: int) -> str:
    """A challenge issued at ``now``: 32 hex characters, a statement's nonce."""
    if len(random4) != 4:
        raise InvalidValue("random4", "must be 4 bytes")
    head = struct.pack(">I", now % 2**32) + random4
    return (head + _tag(sign, head)).hex()


def check_challenge(sign: Sign, nonce: str, now: int, life_s: int = CHALLENGE_LIFE_S) -> None:
    """InvalidValue naming ``statement`` unless ``nonce`` is a challenge ``sign``'s key issued
    at most ``life_s`` seconds before ``now`` (and not after it)."""
    try:
        raw = bytes.fromhex(nonce)
    except ValueError:
        raw = b""
    if len(raw) != 16 or not hmac.compare_digest(_tag(sign, raw[:8]), raw[8:]):
        raise InvalidValue(
            "statement", "answers no challenge of this portal: sign it with the `--challenge` "
            "the page shows"
        )  # fmt: skip
    age = (now - struct.unpack(">I", raw[:4])[0]) % 2**32
    if age > life_s:
        raise InvalidValue(
            "statement", f"answers a challenge issued more than {life_s} s ago: reload the "
            "page and sign again with its new `--challenge`"
        )  # fmt: skip
