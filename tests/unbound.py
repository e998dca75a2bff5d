"""Test helper: an envelope signed as before envelopes named their coordinator (SRS-SEC-03)."""

from __future__ import annotations

import attrs

from owm_core.identity.envelopes import UNBOUND_ENVELOPE_DOMAIN, Envelope, canonical_bytes
from owm_core.identity.keys import Identity


def unbound(envelope: Envelope, signer: Identity) -> Envelope:
    """``envelope`` re-signed by ``signer`` with the old unbound (version 1) signature, over
    ``b"owm/envelope/v1\\x00" + kind + b"\\x00" + canonical(unsigned fields)``: what a log or a
    store holds from before the binding."""
    message = (
        UNBOUND_ENVELOPE_DOMAIN + envelope.kind.value.encode("ascii") + b"\x00"
        + canonical_bytes(envelope.unsigned())
    )
    return attrs.evolve(envelope, signature=signer.sign(message).hex())
