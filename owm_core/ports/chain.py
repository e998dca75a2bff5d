"""The chain port: what OWM needs from a Bitcoin node (Bitcoin Core / Knots, or a local chain).

Block hashes cross this port as display hex (byte-reversed, as ``bitcoin-cli`` prints them);
headers and blocks as raw serialised bytes. The timestamp verifier reads heights, hashes and
headers; the calendar and the pool build blocks from templates and submit them (SRS-POOL-05).
"""

from __future__ import annotations

from typing import Protocol

import attrs

from owm_core import fields


@attrs.frozen
class BlockTemplate:
    """The part of ``getblocktemplate``'s answer needed to build a block on the current tip.

    ``previous_block_hash`` is display hex, ``bits`` the compact target, ``transactions`` the
    raw hex of the mempool transactions to include after the coinbase (may be empty).
    """

    height: int = attrs.field(validator=fields.integer(minimum=0))
    previous_block_hash: str = attrs.field(validator=fields.hex_digest(32))
    bits: int = attrs.field(validator=fields.integer(0, 0xFFFFFFFF))
    curtime: int = attrs.field(validator=fields.timestamp())
    version: int = attrs.field(validator=fields.integer(-(2**31), 2**31 - 1))
    coinbase_value_sat: int = attrs.field(validator=fields.money())
    transactions: tuple[str, ...] = ()
    mintime: int = attrs.field(default=0, validator=fields.timestamp())


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
