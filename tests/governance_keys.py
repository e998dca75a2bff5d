"""Fixed governance keys for tests: two maintainers, five holders (Ed25519 + secp256k1)."""

from __future__ import annotations

import os
from typing import Any

from owm_adapters.treasury.wallet import public_key_of
from owm_core.governance.roles import GovernanceRoles, Holder
from owm_core.identity.envelopes import Envelope, EnvelopeKind, GovernanceStatement, seal
from owm_core.identity.keys import Identity

MAINTAINERS = [Identity.from_seed(bytes([0x40 + i]) * 32) for i in range(2)]
HOLDER_IDS = [Identity.from_seed(bytes([0x50 + i]) * 32) for i in range(5)]
HOLDER_SECRETS = [bytes([0x60 + i]) * 32 for i in range(5)]
HOLDERS = [
    Holder(statement_key=h.public_key_hex, multisig_key=public_key_of(s))
    for h, s in zip(HOLDER_IDS, HOLDER_SECRETS, strict=True)
]
ROLES = GovernanceRoles(maintainers=[m.public_key_hex for m in MAINTAINERS], holders=HOLDERS)
STRANGER = Identity.from_seed(b"\x77" * 32)
COORDINATOR = Identity.from_seed(b"\x33" * 32)
"""The coordinator of the service and log tests: statements are addressed to it by default."""


def statement(
    identity: Identity, action: str, proposal_id: str = "", at: int = 0,
    nonce: str | None = None, *, to: str = COORDINATOR.public_key_hex, **args: Any,
) -> Envelope:  # fmt: skip
    """A governance statement signed by ``identity`` for the coordinator whose key is ``to``
    (``nonce``: a portal's challenge)."""
    body = GovernanceStatement(action=action, proposal_id=proposal_id, args=dict(args),
                               coordinator=to)  # fmt: skip
    return seal(identity, EnvelopeKind.GOVERNANCE_STATEMENT, body, nonce or os.urandom(16), at,
                audience=to)  # fmt: skip
