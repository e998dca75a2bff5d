"""Keysend payouts: paying a bare Lightning node that hands in no invoice (SRS-LN-04, SRS-LN-08).

A GitHub contributor (a bounty, a contribution reward), a sponsor's refund or a data
contributor is paid at a Lightning node's public key. When that node runs no OWM node daemon it
hands in no invoice, so the payout is sent by *keysend*: a spontaneous payment whose preimage
travels to the payee in the onion's custom record :data:`KEYSEND_RECORD` (5482373484), with
``payment_hash = sha256(preimage)``. These are the rules; the dispatcher
(``owm_adapters.services.payouts``) and the Lightning adapters do the I/O.

* **Which way.** :func:`choose_method` is the one place that decides: keysend only when the
  payee's invoice source has no invoice to give, the payee is a bare node public key (not a
  node of the network, whose daemon hands invoices in: those stay on invoices, SRS-LN-04) and
  keysend is switched on (``[lightning] keysend``); an invoice otherwise.
* **Exactly once.** The preimage is not drawn at random: it is
  ``HMAC-SHA256(secret, "owm/keysend-preimage/v1" ‖ 0x00 ‖ payment_id)``
  (:meth:`KeysendKey.preimage`) under a secret only the coordinator holds (derived from its
  signing key, :meth:`KeysendKey.from_signature`). A payout's ``payment_id`` is deterministic
  (``owm_core.payments.outbox``), so its payment hash is fixed before anything is sent and
  every retry, after any crash, on any coordinator sharing the key, sends the *same* hash:
  LND refuses a second payment of a hash that succeeded or is in flight, and the outbox looks
  the hash up before any resend (``outbox.decide``), as for an invoice. The preimage is never
  stored nor logged; it is derived again when the payment is sent. Because the payee learns
  the preimage only by being paid, a preimage does not prove payment to a third party the way
  an invoice's does; the outbox record and the backend's payment are the evidence.
* **Another key.** The secret follows the coordinator's signing key, so a replaced key derives
  other hashes. A keysend payout recorded under the old key is moved to the new key's hash
  once its own hash is known failed or never sent (looked up first, like an expired
  invoice's: :func:`owm_core.payments.renewals.rekeyable`); the old hash stays on the record
  and is looked up before every send, so an attempt made under the old key is never paid a
  second time under the new one.
* **A payee that refuses keysend.** A keysend attempt that fails because the payee's node does
  not take keysend payments (:func:`refuses_keysend`: LND's
  ``FAILURE_REASON_INCORRECT_PAYMENT_DETAILS``, CLN's ``WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS``
  or "does not support keysend", the embedded ledger's "incorrect payment details") marks the
  record ``keysend_refused`` (:func:`refused`), and its ``last_error`` says so for people
  (:data:`KEYSEND_REFUSED` in front of the reason, :func:`refusal_reason`); the rules read the
  field, never the text. Keysend is given up for that payout at once (the payee's node said
  no; asking again only repeats the answer): the payout goes back to waiting for an invoice
  from its invoice source (:func:`owm_core.payments.renewals.renewal`), looked up by the
  keysend hash first.

Pure: no I/O; the secret is given by the caller.
"""

from __future__ import annotations

import enum
import hashlib
import hmac

from owm_core.errors import InvalidValue
from owm_core.payments.records import PayoutMethod, RewardPayment

KEYSEND_RECORD = 5_482_373_484
"""The onion custom record (TLV type) that carries a keysend payment's preimage."""
PREIMAGE_DOMAIN = b"owm/keysend-preimage/v1"
SECRET_DOMAIN = b"owm/keysend-secret/v1"
"""What the coordinator signs to derive its keysend secret (:meth:`KeysendKey.from_signature`)."""
MIN_SECRET_BYTES = 32
KEYSEND_REFUSED = "keysend refused by the payee"
"""How ``last_error`` of a keysend payout whose payee's node refuses keysend begins, for people
(the rules read ``RewardPayment.keysend_refused``; module docstring)."""
_REFUSALS = (
    "incorrect payment details",
    "incorrect or unknown payment details",
    "does not support keysend",
    "keysend not supported",
    "keysend payments are not supported",
    "required node feature missing",
    "no such feature",
)
"""How the backends say a payee's node takes no keysend (lower case, ``_`` read as a space)."""


class PayeeKind(enum.Enum):
    """Who a payout is owed to, as far as choosing how to pay it goes."""

    NETWORK_NODE = "network_node"
    """A registered OWM node's Lightning node (rewards, miners' FPPS payouts): its daemon
    hands in invoices (SRS-LN-04)."""
    BARE_NODE = "bare_node"
    """A Lightning node's public key that is no registered node's (GitHub payees, sponsors,
    data contributors)."""


def choose_method(
    *, invoice_available: bool, payee: PayeeKind, keysend_enabled: bool
) -> PayoutMethod:
    """How to pay one payout: KEYSEND only for a bare node that has no invoice to give while
    keysend is on; INVOICE otherwise (module docstring)."""
    if invoice_available or payee is not PayeeKind.BARE_NODE or not keysend_enabled:
        return PayoutMethod.INVOICE
    return PayoutMethod.KEYSEND


def refuses_keysend(failure_reason: str | None) -> bool:
    """Whether a failed keysend's ``failure_reason`` says the payee's node takes no keysend
    payments (LND ``FAILURE_REASON_INCORRECT_PAYMENT_DETAILS``, CLN
    ``WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS`` or "does not support keysend", a missing
    feature), as opposed to a failure to route, which is retried by keysend."""
    if not failure_reason:
        return False
    text = " ".join(failure_reason.lower().replace("_", " ").split())
    return any(refusal in text for refusal in _REFUSALS)


def refused(payment: RewardPayment, failure_reason: str | None) -> bool:
    """Whether ``payment``'s attempt that failed with ``failure_reason`` was a keysend its
    payee refused (:func:`refuses_keysend`); an invoice's failure never is."""
    return payment.method is PayoutMethod.KEYSEND and refuses_keysend(failure_reason)


def refusal_reason(payment: RewardPayment, failure_reason: str | None) -> str:
    """The ``last_error`` to record for ``payment``'s failed attempt: the reason, behind
    :data:`KEYSEND_REFUSED` when a keysend payout's payee refuses keysend."""
    reason = failure_reason or "payment failed"
    if refused(payment, failure_reason):
        return f"{KEYSEND_REFUSED}: {reason}"
    return reason


def is_keysend_refused(payment: RewardPayment) -> bool:
    """Whether ``payment`` is a keysend payout whose payee refused keysend (and that has not
    been paid): then it waits for an invoice instead of being sent by keysend again."""
    return (
        payment.method is PayoutMethod.KEYSEND
        and not payment.settled
        and payment.keysend_refused
    )


def payment_hash_of(preimage_hex: str) -> str:
    """``sha256(preimage)`` as 64 lower-case hex; InvalidValue unless 32 bytes of hex."""
    try:
        raw = bytes.fromhex(preimage_hex)
    except ValueError:
        raw = b""
    if len(raw) != 32 or preimage_hex != preimage_hex.lower():
        raise InvalidValue("preimage", "must be 64 lower-case hex characters")
    return hashlib.sha256(raw).hexdigest()


class KeysendKey:
    """The coordinator's keysend secret: derives each payout's preimage (module docstring).

    Holds the secret privately; ``repr`` shows nothing of it (SRS-SEC-07).
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise InvalidValue("secret", f"must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret

    @classmethod
    def from_signature(cls, signature: bytes) -> KeysendKey:
        """The key derived from the coordinator's signature over :data:`SECRET_DOMAIN`.

        Ed25519 signatures are deterministic (RFC 8032), so every coordinator holding the
        signing key derives the same secret, and nobody without it can.
        """
        if len(signature) < MIN_SECRET_BYTES:
            raise InvalidValue("signature", "is too short to derive a secret from")
        return cls(hashlib.sha256(SECRET_DOMAIN + b"\x00" + signature).digest())

    def __repr__(self) -> str:
        return "KeysendKey(<secret>)"

    def preimage(self, payment_id: str) -> str:
        """The 32-byte preimage of the payout ``payment_id``, as hex (never log it)."""
        if not payment_id:
            raise InvalidValue("payment_id", "must not be empty")
        message = PREIMAGE_DOMAIN + b"\x00" + payment_id.encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def payment_hash(self, payment_id: str) -> str:
        """The payment hash every keysend attempt of ``payment_id`` carries."""
        return payment_hash_of(self.preimage(payment_id))


def keysend_payment(
    key: KeysendKey,
    *,
    payment_id: str,
    task_id: str,
    payee_pubkey: str,
    amount_msat: int,
    now: int,
    memo: str = "",
) -> RewardPayment:
    """The pending outbox record of a keysend payout to ``payee_pubkey`` (its node id too)."""
    return RewardPayment(
        payment_id=payment_id,
        task_id=task_id,
        node_id=payee_pubkey,
        amount_msat=amount_msat,
        payment_hash=key.payment_hash(payment_id),
        created_at=now,
        updated_at=now,
        payee_pubkey=payee_pubkey,
        memo=memo[:640],
        method=PayoutMethod.KEYSEND,
    )


def checked_preimage(key: KeysendKey, payment: RewardPayment) -> str:
    """The preimage to send for the keysend ``payment``; InvalidValue when it does not hash to
    the record's payment hash (the coordinator's key changed since the record was made): then
    nothing may be sent under the record's hash, and another hash could pay the payout a second
    time unless the record moves to it first, once its own hash is known failed or unsent
    (:func:`owm_core.payments.renewals.rekeyable`). This refusal is what is left when it cannot
    move: this key's hash was used by the payout before."""
    if payment.method is not PayoutMethod.KEYSEND:
        raise InvalidValue("method", f"payment {payment.payment_id} is not a keysend payout")
    preimage = key.preimage(payment.payment_id)
    if payment_hash_of(preimage) != payment.payment_hash:
        raise InvalidValue(
            "payment_hash",
            f"keysend payout {payment.payment_id} was recorded under another coordinator key "
            "and used this key's hash before; restore the key that made it (nothing is sent "
            "under a new hash)",
        )
    return preimage


__all__ = [
    "KEYSEND_RECORD",
    "KEYSEND_REFUSED",
    "KeysendKey",
    "PayeeKind",
    "checked_preimage",
    "choose_method",
    "is_keysend_refused",
    "keysend_payment",
    "payment_hash_of",
    "refusal_reason",
    "refused",
    "refuses_keysend",
]
