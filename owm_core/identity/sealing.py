"""Sealed task inputs and outputs: NaCl box from one identity to another (SRS-SEC-02).

A task's input travels from the coordinator to the node it was assigned to, and its output from
that node back to the coordinator, sealed to the recipient's Ed25519 identity key. Both keys
are converted to Curve25519 (:meth:`Identity.box_with`), so the one identity a node registered
is also the key its work is encrypted to, and a sealed message also proves its sender: only the
holder of the sender's key (or of the recipient's) can build a box that opens.

The sealed form is::

    sealed = MAGIC (4 bytes "OWMS") ‖ VERSION (1 byte) ‖ nonce (24 bytes) ‖ box

    box    = XSalsa20-Poly1305(sender → recipient, nonce)( len(context) (2 bytes, big endian)
                                                            ‖ context (UTF-8) ‖ plaintext )

``context`` names what the bytes are for (:func:`input_context`, :func:`output_context`: the
replica id; :func:`result_context`: the task id of a verified output handed to its submitter);
it is inside the box, so a sealed input cannot be replayed as another replica's input or as an
output. Changing any byte of
the sealed form — header, nonce, box — makes :func:`open_sealed` fail, as does opening with any
key pair other than the one it was sealed between. Failures are :class:`InvalidValue` errors
naming the field and never carrying key material.

Randomness is an argument, as everywhere in the core: the caller draws the 24-byte nonce from
the operating system (``secrets.token_bytes(NONCE_BYTES)``) for every message.
"""

from __future__ import annotations

from nacl.exceptions import CryptoError

from owm_core.errors import InvalidValue
from owm_core.identity.keys import Identity

MAGIC = b"OWMS"
VERSION = 1
HEADER = MAGIC + bytes([VERSION])
NONCE_BYTES = 24
MAC_BYTES = 16
MAX_CONTEXT_BYTES = 255
OVERHEAD_BYTES = len(HEADER) + NONCE_BYTES + MAC_BYTES + 2


def input_context(replica_id: str) -> str:
    """The context a replica's input is sealed under, coordinator → assigned node."""
    return f"task-input/{replica_id}"


def output_context(replica_id: str) -> str:
    """The context a replica's output is sealed under, node → coordinator."""
    return f"task-output/{replica_id}"


def result_context(task_id: str) -> str:
    """The context a task's verified output is sealed under, coordinator → its submitter."""
    return f"task-result/{task_id}"


def is_sealed(data: bytes) -> bool:
    """Whether ``data`` starts like a sealed message of a version this module knows."""
    return data[: len(HEADER)] == HEADER


def seal(
    plaintext: bytes, *, sender: Identity, recipient_public_key: str, context: str, nonce: bytes
) -> bytes:
    """Seal ``plaintext`` from ``sender`` to the Ed25519 key ``recipient_public_key`` (SRS-SEC-02).

    ``nonce`` must be 24 fresh random bytes: reusing one between the same two keys reveals the
    XOR of the two plaintexts.
    """
    if not isinstance(plaintext, bytes):
        raise InvalidValue("plaintext", f"must be bytes, got {type(plaintext).__name__}")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise InvalidValue("nonce", f"must be {NONCE_BYTES} bytes")
    label = _context_bytes(context)
    box = sender.box_with(recipient_public_key)
    framed = len(label).to_bytes(2, "big") + label + plaintext
    return HEADER + bytes(box.encrypt(framed, nonce))


def open_sealed(
    sealed: bytes,
    *,
    recipient: Identity,
    sender_public_key: str,
    context: str,
    field: str = "sealed",
) -> bytes:
    """The plaintext of ``sealed``, checked to come from ``sender_public_key`` for ``context``.

    Raises :class:`InvalidValue` naming ``field`` when the bytes are not a sealed message, were
    changed, were sealed between other keys, or were sealed for another context.
    """
    if not isinstance(sealed, bytes):
        raise InvalidValue(field, f"must be bytes, got {type(sealed).__name__}")
    if len(sealed) < OVERHEAD_BYTES or not sealed.startswith(MAGIC):
        raise InvalidValue(field, "is not a sealed message")
    if not is_sealed(sealed):
        raise InvalidValue(field, "was sealed with an unknown version")
    label = _context_bytes(context)
    box = recipient.box_with(sender_public_key)
    try:
        framed = box.decrypt(sealed[len(HEADER) :])
    except CryptoError:
        raise InvalidValue(
            field, "does not open: it was changed, or sealed between other keys"
        ) from None
    size = int.from_bytes(framed[:2], "big")
    if size != len(label) or framed[2 : 2 + size] != label:
        raise InvalidValue(field, "was sealed for another purpose")
    return framed[2 + size :]


def _context_bytes(context: str) -> bytes:
    if not isinstance(context, str) or not context:
        raise InvalidValue("context", "must be non-empty text")
    label = context.encode("utf-8")
    if len(label) > MAX_CONTEXT_BYTES:
        raise InvalidValue("context", f"must be at most {MAX_CONTEXT_BYTES} bytes")
    return label
