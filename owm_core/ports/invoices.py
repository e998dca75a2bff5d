"""The invoice-source port: how the coordinator gets a payee's BOLT11 invoice (SRS-LN-04/08).

Paying a node means paying an invoice *the node's own Lightning node* issued for the reward
amount; only a bare node that has none to give is paid by keysend instead
(``owm_core.payments.keysend``: the source raising ``LightningUnavailable`` is "none to give").
An :class:`InvoiceSource` asks the Lightning node behind a public key (the node's registered
``ln_node_uri``, or a bounty contributor's node) for such an invoice. The invoice's payment hash
becomes the outbox record's idempotency key. When an invoice expires unpaid the same source is
asked again, with the same payee, amount and memo (``owm_core.payments.renewals``).

Adapters: ``owm_adapters.services.payouts.LedgerInvoiceSource`` (the embedded simulated network:
the payee's simulated node signs the invoice) and
``owm_adapters.lightning.node_invoices.NodeInvoiceSource`` (nodes on LND or Core Lightning hand
their invoices in over the control plane).
"""

from __future__ import annotations

from typing import Protocol

from owm_core.payments.lightning import Invoice


class InvoiceSource(Protocol):
    """Obtains invoices from payees' Lightning nodes."""

    def invoice_for(self, payee_pubkey: str, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        """An open invoice of ``amount_msat`` issued by the Lightning node ``payee_pubkey``."""
        ...
