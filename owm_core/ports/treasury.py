"""The treasury wallet port: the 3-of-5 multisig as PSBTs (SRS-LN-09, SRS-SEC-12).

Implemented over embit by :mod:`owm_adapters.treasury.wallet`. PSBTs cross this port as
base64 text (what hardware wallets and ``bitcoin-cli`` exchange); keys as compressed
secp256k1 hex.
"""

from __future__ import annotations

from typing import Protocol

from owm_core.governance.treasury import SpendPlan


class TreasuryWallet(Protocol):
    """What the treasury needs from its multisig wallet."""

    descriptor: str
    script_pubkey: bytes
    quorum: int

    @property
    def address(self) -> str:
        """The wallet's receiving address."""
        ...

    def payout_script(self, address: str, field: str = "payout_address") -> bytes:
        """The output script paying ``address``; InvalidValue naming ``field`` if foreign."""
        ...

    def create_psbt(self, plan: SpendPlan, payee_address: str) -> str:
        """The unsigned PSBT paying ``plan`` to ``payee_address``, change to the wallet."""
        ...

    def signers(self, psbt_text: str) -> frozenset[str]:
        """The holder keys whose valid signatures cover every input."""
        ...

    def merge(self, current_text: str, signed_text: str) -> tuple[str, frozenset[str]]:
        """``current`` with the verified signatures of a signed copy; and who has signed."""
        ...

    def finalise(self, psbt_text: str) -> tuple[bytes, str]:
        """The signed transaction and its txid, once the quorum signed; PolicyViolation
        before."""
        ...

    def payments(self, psbt_text: str) -> list[tuple[bytes, int]]:
        """The PSBT's outputs as (script, amount sat)."""
        ...
