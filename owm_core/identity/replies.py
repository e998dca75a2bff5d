"""Signed control-plane replies (SRS-SEC-01/03): every reply the coordinator sends a node.

Besides task assignments and payout requests (:mod:`.coordinator_signed`), each unary reply to a
node carries the coordinator's signature over
``REPLY_DOMAIN ‖ lp(method) ‖ SHA-256(request bytes) ‖ reply bytes``, where the bytes are the
deterministic protobuf serialization of the request and of the reply with its signature field
empty. A reply thus cannot be changed or forged without the coordinator key (even by whoever
holds a mis-issued TLS certificate), nor replayed as the answer to another request or method.
Pure: the adapters serialize, this module only builds and checks the statement.
"""

from __future__ import annotations

import hashlib

from owm_core.errors import SignatureInvalid
from owm_core.identity import coordinator_signed
from owm_core.identity.keys import Identity

REPLY_DOMAIN = b"owm/coordinator-reply/v1\x00"


def reply_statement(method: str, request: bytes, reply: bytes) -> bytes:
    """The bytes the coordinator signs for ``reply`` to ``request`` of RPC ``method``."""
    name = method.encode()
    return (
        REPLY_DOMAIN
        + len(name).to_bytes(4, "big")
        + name
        + hashlib.sha256(request).digest()
        + reply
    )


def sign_reply(coordinator: Identity, method: str, request: bytes, reply: bytes) -> bytes:
    """The coordinator's signature of ``reply`` (unsigned bytes) to ``request``."""
    return coordinator.sign(reply_statement(method, request, reply))


def check_reply(
    coordinator_public_key_hex: str, method: str, request: bytes, reply: bytes, signature: bytes
) -> None:
    """Raise :class:`SignatureInvalid` unless the pinned coordinator key signed this reply to
    this request of ``method``."""
    message = f"the {method} reply is not signed by the pinned coordinator key"
    try:
        coordinator_signed.check(
            coordinator_public_key_hex, reply_statement(method, request, reply), signature,
            f"{method} reply",
        )
    except SignatureInvalid:
        raise SignatureInvalid(message) from None
