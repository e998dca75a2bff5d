"""SHA-256d of block headers over a batch of nonces as torch tensors (SRS-NODE-13, SRS-POOL-03).

Each 32-bit word is held in an ``int64`` tensor and masked back to 32 bits after every sum, so
the arithmetic is exact on any device torch runs on. The header's first 64 bytes are the same
for every nonce: their compression (the midstate) is computed once, then each batch runs the
second block (the last 12 header bytes, the nonce and the padding) and the second SHA-256 over
the 32-byte digest, one element per nonce. The digests are compared with the target as 256-bit
little-endian integers, limb by limb, so the answer is exactly the CPU hasher's.

The device is chosen at run time: CUDA when ``torch.cuda.is_available()``, else the CPU (where
it is slower than ``hashlib`` and is used for tests and for checking the GPU path's arithmetic).
"""

from __future__ import annotations

import struct
from typing import Any

import torch

from owm_core.errors import HasherUnavailable

_MASK = 0xFFFFFFFF
_MAX_NONCE = 1 << 32
_K = (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
)  # fmt: skip
_IV = (
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
)  # fmt: skip

#: Nonces hashed per tensor batch on each kind of device (on the CPU, larger batches fall out of
#: the cache: 1 << 16 ran ten times slower than 1 << 14 on the development machine). On CUDA a
#: batch holds some 80 live int64 tensors of its size: 1 << 20 nonces is about 0.7 GB.
BATCH = {"cuda": 1 << 20, "cpu": 1 << 14}

Word = Any  # an int64 tensor of 32-bit values, or a Python int broadcast against one


def _sigma(x: Word, a: int, b: int, c: int) -> Word:
    """``rotr(x, a) ^ rotr(x, b) ^ rotr(x, c)``: with x copied into the high half, a right
    shift of the 64-bit value is the 32-bit rotation (fewer tensor operations)."""
    doubled = x | (x << 32)
    return ((doubled >> a) ^ (doubled >> b) ^ (doubled >> c)) & _MASK


def _small_sigma(x: Word, a: int, b: int, c: int) -> Word:
    """``rotr(x, a) ^ rotr(x, b) ^ (x >> c)``, the message schedule's mixing."""
    doubled = x | (x << 32)
    return ((doubled >> a) ^ (doubled >> b) ^ (x >> c)) & _MASK


def _compress(state: list[Word], block: list[Word]) -> list[Word]:
    """SHA-256's compression of one 16-word block into ``state`` (eight words). Works on
    Python ints and tensors alike: words that do not depend on the nonce stay ints, so the
    work that is the same for every nonce is done once. Sums are masked only where a word
    enters a bitwise operation (an int64 holds a sum of five 32-bit words)."""
    w = list(block)
    for t in range(16, 64):
        s0 = _small_sigma(w[t - 15], 7, 18, 3)
        s1 = _small_sigma(w[t - 2], 17, 19, 10)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & _MASK)
    a, b, c, d, e, f, g, h = state
    for t in range(64):
        t1 = h + _sigma(e, 6, 11, 25) + (g ^ (e & (f ^ g))) + (_K[t] + w[t])
        t2 = _sigma(a, 2, 13, 22) + ((a & b) | (c & (a | b)))
        h, g, f, e = g, f, e, (d + t1) & _MASK
        d, c, b, a = c, b, a, (t1 + t2) & _MASK
    return [(s + x) & _MASK for s, x in zip(state, (a, b, c, d, e, f, g, h), strict=True)]


def _byteswap(x: torch.Tensor) -> torch.Tensor:
    return ((x & 0xFF) << 24) | ((x & 0xFF00) << 8) | ((x >> 8) & 0xFF00) | ((x >> 24) & 0xFF)


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU now (asked at run time, not at install time)."""
    return bool(torch.cuda.is_available())


class TorchHasher:
    """SHA-256d over tensors of nonces, on CUDA when available at run time, else the CPU."""

    def __init__(self, device: str | None = None, batch: int | None = None) -> None:
        kind = device or ("cuda" if cuda_available() else "cpu")
        self.device = torch.device(kind)
        self.batch = batch or BATCH.get(self.device.type, BATCH["cpu"])

    @property
    def name(self) -> str:
        return f"torch:{self.device.type}"

    def search(self, prefix: bytes, start: int, count: int, target: int) -> list[int]:
        if len(prefix) != 76:
            raise ValueError(f"a header prefix is 76 bytes, not {len(prefix)}")
        words = struct.unpack(">19I", prefix)
        midstate = _compress(list(_IV), list(words[:16]))
        limbs = [(target >> (32 * i)) & _MASK for i in range(8)] if target < 1 << 256 else None
        found: list[int] = []
        low, high = max(start, 0), min(start + count, _MAX_NONCE)
        try:
            with torch.inference_mode():
                for begin in range(low, high, self.batch):
                    end = min(begin + self.batch, high)
                    nonces = torch.arange(begin, end, dtype=torch.int64, device=self.device)
                    digest = self._sha256d(midstate, words[16:], nonces)
                    hits = self._meets(digest, limbs) if limbs else torch.ones_like(nonces).bool()
                    found.extend(nonces[hits].tolist())
        except RuntimeError as error:  # a CUDA fault (out of memory, a lost device)
            raise HasherUnavailable(
                f"the torch hasher failed on {self.device.type}: {str(error).splitlines()[0]}"
            ) from error
        return found

    @staticmethod
    def _sha256d(midstate: list[Word], tail: tuple[int, ...], nonces: torch.Tensor) -> list[Word]:
        second = [*tail, _byteswap(nonces), 0x80000000, *([0] * 10), 640]
        inner = _compress(midstate, second)
        outer = [*inner, 0x80000000, *([0] * 6), 256]
        return _compress(list(_IV), outer)

    @staticmethod
    def _meets(digest: list[Word], limbs: list[int]) -> torch.Tensor:
        """digest (big-endian words) read as a little-endian 256-bit integer <= the target:
        compared from the most significant limb, the byte-swapped last word, down."""
        below = torch.zeros_like(digest[7], dtype=torch.bool)
        equal = torch.ones_like(below)
        for index in range(7, -1, -1):
            limb = _byteswap(digest[index])
            below |= equal & (limb < limbs[index])
            equal &= limb == limbs[index]
        return below | equal
