"""The chain port: what OWM needs from a Bitcoin node (Bitcoin Core / Knots, or a local chain).

Block hashes cross this port as display hex (byte-reversed, as ``bitcoin-cli`` prints them);
headers and blocks as raw serialised bytes. The timestamp verifier reads heights, hashes and
headers; the calendar and the pool build blocks from templates and submit them (SRS-POOL-05).
"""

from __future__ import annotations

from typing import Protocol

from owm_core.governance.treasury import Utxo
from owm_core.pool.bitcoin import BlockTemplate


class Chain(Protocol):
    """A Bitcoin node's view of the best chain, and the way to extend it."""

    def tip_height(self) -> int:
        """Height of the best block (``getblockcount``)."""
        ...

    def block_hash(self, height: int) -> str:
        """Display-hex hash of the best-chain block at ``height``; ``UnknownBlock`` if none."""
        ...

    def block_header(self, block_hash: str) -> bytes:
        """The 80 serialised header bytes of the block ``block_hash``; ``UnknownBlock`` if none."""
        ...

    def block_template(self) -> BlockTemplate:
        """A template for the next block on the current tip (``getblocktemplate``)."""
        ...

    def submit_block(self, raw_block: bytes) -> None:
        """Offer a fully serialised block; ``BlockRejected`` with bitcoind's reason if refused."""
        ...


class WalletChain(Protocol):
    """What the treasury wallet needs from a Bitcoin node: its coins, and a way to spend them
    (SRS-LN-09, SRS-GOV-06). Bitcoin Core / Knots answer with ``scantxoutset`` and
    ``sendrawtransaction``; a devnet with the embedded ledger."""

    def unspent(self, script_pubkey: bytes) -> list[Utxo]:
        """The confirmed unspent outputs paying ``script_pubkey``."""
        ...

    def broadcast(self, raw_tx: bytes) -> str:
        """Send a signed transaction; its txid (display hex). ``TransactionRejected`` with the
        node's reason if refused."""
        ...
