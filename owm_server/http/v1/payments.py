"""The payment endpoints of v1: buying API access over Lightning and a node's earnings.

``GET /v1/payments/invoice`` sells 24 hours of commercial access: pay the invoice, then send
``Authorization: L402 <macaroon>:<preimage>`` (SRS-API-03, SRS-LN-07).
``GET /v1/payments/history`` is the signing node operator's earnings (SRS-LN-10).
No rule lives here: parse, call the service, render.
"""

from __future__ import annotations

import base64

from starlette.responses import Response

from owm_server.http.call import Call
from owm_server.http.contract import Access, Operation, Reply, Schema, Tag, problem
from owm_server.http.v1.render import earnings, json
from owm_server.http.v1.schemas import EARNINGS, INT, LIMIT, STR, obj

ACCESS_OFFER: Schema = obj(
    {
        "invoice": STR,
        "payment_hash": STR,
        "amount_msat": INT,
        "expires_at": INT,
        "macaroon": STR,
        "valid_for_s": INT,
        "www_authenticate": STR,
    }
)


def payments_invoice(call: Call) -> Response:
    offer = call.services.access.offer_access(call.client_ip)
    return json(
        {
            "invoice": offer.invoice.bolt11,
            "payment_hash": offer.invoice.payment_hash,
            "amount_msat": offer.invoice.amount_msat,
            "expires_at": offer.invoice.expires_at,
            "macaroon": base64.b64encode(offer.macaroon.serialize()).decode(),
            "valid_for_s": offer.valid_for_s,
            "www_authenticate": offer.www_authenticate,
        },
        headers={"Cache-Control": "no-store"},
    )


def payments_history(call: Call) -> Response:
    return earnings(call, call.who().subject)


def operations() -> list[Operation]:
    """The access invoice and the node operator's payment history."""
    payments = Tag("payments")
    return [
        payments(
            "GET", "/payments/invoice", "paymentsInvoice",
            "Generate a Lightning invoice for 24 h of API access (L402)", Access.PUBLIC,
            payments_invoice,
            {
                200: Reply(
                    "Pay `invoice`, then send `Authorization: L402 <macaroon>:<preimage>`.",
                    ACCESS_OFFER,
                ),
                429: problem("This address asked for too many invoices (`Retry-After`)."),
            },
        ),
        payments(
            "GET", "/payments/history", "paymentsHistory",
            "Node operator earnings history (SRS-LN-10)", Access.NODE, payments_history,
            {200: Reply("The signing node's payments.", EARNINGS)}, params=(LIMIT,),
        ),
    ]
