"""The header hasher port: where owm-mine's double SHA-256 runs (SRS-NODE-13, SRS-POOL-03).

owm-mine asks one question of its hashing hardware: which nonces of this block header meet
this target. The CPU adapter answers it with ``hashlib`` one header at a time; the torch
adapter answers it for a batch of nonces at once as tensors, on a CUDA GPU when one is found
at run time, else on the CPU (``owm_adapters/hashing/``). Any other GPU or FPGA miner plugs in
by implementing the same method.
"""

from __future__ import annotations

from typing import Protocol


class HeaderHasher(Protocol):
    """Searches a range of nonces of one 80-byte block header for shares."""

    @property
    def name(self) -> str:
        """What hashes, for logs and the CLI: ``"cpu"``, ``"torch:cuda"``, ``"torch:cpu"``."""
        ...

    @property
    def batch(self) -> int:
        """How many nonces one :meth:`search` should cover to keep the hardware busy."""
        ...

    def search(self, prefix: bytes, start: int, count: int, target: int) -> list[int]:
        """Every nonce ``n`` with ``start <= n < start + count`` and ``n < 2**32`` whose header
        ``prefix + n.to_bytes(4, "little")`` (``prefix`` is the header's first 76 bytes) has a
        double SHA-256, read as a little-endian integer, of at most ``target``; ascending."""
        ...
