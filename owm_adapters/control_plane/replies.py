"""Sign and check control-plane replies as protobuf messages (SRS-SEC-01/03).

The coordinator's servicer signs each reply to a node (:func:`sign`); the node's gRPC client
checks it against the pinned ``[coordinator] public_key`` before using it (:func:`check`). The
statement is :mod:`owm_core.identity.replies`' over the deterministic serialization of the
request and of the reply with ``coordinator_signature`` empty.
"""

from __future__ import annotations

from typing import Any

from owm_core.identity.keys import Identity
from owm_core.identity.replies import check_reply, sign_reply

SIGNATURE_FIELD = "coordinator_signature"


def _bytes(message: Any) -> bytes:
    return bytes(message.SerializeToString(deterministic=True))


def _unsigned(reply: Any) -> bytes:
    copy = type(reply)()
    copy.CopyFrom(reply)
    copy.ClearField(SIGNATURE_FIELD)
    return _bytes(copy)


def sign(coordinator: Identity, method: str, request: Any, reply: Any) -> None:
    """Fill ``reply.coordinator_signature`` over (``method``, ``request``, ``reply``)."""
    reply.ClearField(SIGNATURE_FIELD)
    setattr(reply, SIGNATURE_FIELD, sign_reply(coordinator, method, _bytes(request), _bytes(reply)))


def check(coordinator_public_key_hex: str, method: str, request: Any, reply: Any) -> None:
    """Raise ``SignatureInvalid`` unless the pinned coordinator key signed ``reply`` to
    ``request`` of ``method``."""
    check_reply(coordinator_public_key_hex, method, _bytes(request), _unsigned(reply),
                getattr(reply, SIGNATURE_FIELD))
