"""The CPU header hasher: ``hashlib``'s SHA-256 twice per nonce (SRS-NODE-13).

About a million headers a second on one core: enough for tests and devnets (where a regtest
share needs about two hashes), and the reference the torch hasher is tested against.
"""

from __future__ import annotations

import hashlib

_MAX_NONCE = 1 << 32


class CpuHasher:
    """One header at a time, in this thread."""

    name = "cpu"
    batch = 1 << 16

    def search(self, prefix: bytes, start: int, count: int, target: int) -> list[int]:
        if len(prefix) != 76:
            raise ValueError(f"a header prefix is 76 bytes, not {len(prefix)}")
        sha256 = hashlib.sha256
        found = []
        # The prefix's first 64 bytes are hashed once; each nonce copies that midstate.
        midstate = sha256(prefix[:64])
        tail = prefix[64:]
        for nonce in range(max(start, 0), min(start + count, _MAX_NONCE)):
            inner = midstate.copy()
            inner.update(tail + nonce.to_bytes(4, "little"))
            if int.from_bytes(sha256(inner.digest()).digest(), "little") <= target:
                found.append(nonce)
        return found
