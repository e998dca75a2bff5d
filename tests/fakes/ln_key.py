"""A Lightning node identity key for tests: what an operator's LND or CLN signs with.

It satisfies :class:`owm_core.ports.control_plane.MessageSigner`, so a test node can prove
control of its ``ln_node_uri`` at registration (SRS-STAKE-01) without running a node.
"""

from __future__ import annotations

import attrs
from coincurve import PrivateKey

from owm_adapters.lightning import message_signing
from owm_core.coordination.registration import ln_control_message


@attrs.frozen
class LnKey:
    """One Lightning node's secret key, its pubkey and its message signatures."""

    secret: bytes

    @classmethod
    def fresh(cls) -> LnKey:
        return cls(PrivateKey().secret)

    @property
    def pubkey(self) -> str:
        return str(PrivateKey(self.secret).public_key.format(compressed=True).hex())

    def sign_message(self, message: str) -> str:
        return message_signing.sign_message(self.secret, message)

    def sign_registration(self, public_key: str, challenge_nonce: str) -> str:
        """The ``ln_signature`` of a registration by ``public_key`` with ``challenge_nonce``."""
        return self.sign_message(ln_control_message(public_key, challenge_nonce, self.pubkey))
