"""Sending one payout the way its outbox record says: by paying its invoice, or by keysend to
a bare Lightning node that hands in no invoice (SRS-LN-04, SRS-LN-08).

The rules are :mod:`owm_core.payments.keysend`; :class:`PayoutSender` is what the payment
dispatcher (:class:`~owm_adapters.services.payouts.PayoutDispatcher`) asks:

* :meth:`PayoutSender.keysend_record` — when a payee's invoice source has no invoice to give,
  the pending record of a keysend payout (its hash fixed by the payout's id), or None when
  keysend is off (``[lightning] keysend = false``, or no coordinator key): then the payout
  waits for an invoice as before.
* :meth:`PayoutSender.refusal` — before anything is sent: a keysend payout whose preimage
  cannot be derived to the record's hash (another coordinator key) is failed with why and
  never sent, since another hash could pay it twice. The renewals move such a record to this
  key's hash first, once its own is known unpaid
  (:class:`~owm_adapters.services.payout_renewals.InvoiceRenewals`); what reaches this refusal
  is a record that cannot move (it used this key's hash before).
* :meth:`PayoutSender.send` — ``Lightning.pay`` for an invoice, ``Lightning.keysend`` with the
  derived preimage for a keysend payout; the routing-fee cap is the same
  (:func:`~owm_core.payments.outbox.max_fee_msat`). The preimage is derived when sending and
  never stored or logged (SRS-SEC-07).
"""

from __future__ import annotations

import attrs

from owm_core.errors import InvalidValue
from owm_core.payments.keysend import (
    KeysendKey,
    PayeeKind,
    checked_preimage,
    choose_method,
    keysend_payment,
)
from owm_core.payments.lightning import PaymentResult
from owm_core.payments.outbox import max_fee_msat
from owm_core.payments.records import PayoutMethod, RewardPayment, fail
from owm_core.ports.lightning import Lightning

PAY_TIMEOUT_S = 60.0


@attrs.define(eq=False)
class PayoutSender:
    """Sends payouts by invoice or keysend through the treasury's node (module docstring)."""

    lightning: Lightning
    keysend_key: KeysendKey | None = None
    #: ``[lightning] keysend``: whether new payouts may be sent by keysend.
    keysend: bool = True

    def keysend_record(
        self, payment_id: str, task_id: str, pubkey: str, amount_msat: int, memo: str, now: int,
        payee: PayeeKind = PayeeKind.BARE_NODE,
    ) -> RewardPayment | None:
        """The pending keysend record of a payout to the node ``pubkey`` that has no invoice to
        give; None when it is paid by invoice only (a node of the network) or keysend is off:
        the payout then waits for an invoice."""
        method = choose_method(invoice_available=False, payee=payee,
                               keysend_enabled=self.keysend and self.keysend_key is not None)
        if method is not PayoutMethod.KEYSEND or self.keysend_key is None:
            return None
        return keysend_payment(self.keysend_key, payment_id=payment_id, task_id=task_id,
                               payee_pubkey=pubkey, amount_msat=amount_msat, now=now, memo=memo)

    def _preimage(self, payment: RewardPayment) -> str | None:
        if payment.method is not PayoutMethod.KEYSEND:
            return None
        if self.keysend_key is None:
            raise InvalidValue("keysend", "this keysend payout waits for the coordinator's "
                               "keysend key (none configured); nothing was sent")
        return checked_preimage(self.keysend_key, payment)

    def refusal(self, payment: RewardPayment, now: int) -> RewardPayment | None:
        """The in-flight ``payment`` failed with why, when it may not be sent; else None."""
        try:
            self._preimage(payment)
        except InvalidValue as exc:
            return fail(payment, now, exc.message)
        return None

    def send(self, payment: RewardPayment) -> PaymentResult:
        """Pay ``payment``: its invoice, or by keysend to its payee's node."""
        fee = max_fee_msat(payment.amount_msat)
        preimage = self._preimage(payment)
        if preimage is not None and payment.payee_pubkey is not None:
            return self.lightning.keysend(payment.payee_pubkey, payment.amount_msat, preimage,
                                          fee, PAY_TIMEOUT_S)
        return self.lightning.pay(payment.bolt11 or "", fee, PAY_TIMEOUT_S)


__all__ = ["PAY_TIMEOUT_S", "PayoutSender"]
