"""What OWM's embedded calendar and chain answer over HTTP, so the reference tools work on a
devnet (``ots stamp --calendar URL``, ``ots upgrade``, ``ots verify --bitcoin-node URL``).

:class:`CalendarEndpoints` holds the answers, without HTTP (the shell is
``owm_server.http.ots_calendar``):

* the OpenTimestamps calendar protocol of the public calendars (``opentimestamps-server``):
  :meth:`~CalendarEndpoints.digest` for ``POST /digest`` (the raw digest in, the serialised
  timestamp from it to ``PendingAttestation(url)`` out) and
  :meth:`~CalendarEndpoints.timestamp` for ``GET /timestamp/<hex commitment>`` (the path to the
  Bitcoin attestation once committed; None, HTTP 404, while pending);
* a read-only subset of Bitcoin Core's JSON-RPC over the embedded chain
  (:meth:`~CalendarEndpoints.rpc`): ``getblockcount``, ``getbestblockhash``,
  ``getblockhash``, ``getblockheader`` (hex or verbose), ``getblock`` (verbosity 0: hex),
  ``getblockchaininfo`` — what ``ots verify --bitcoin-node`` (python-bitcoinlib's ``Proxy``)
  and OWM's own :class:`~owm_adapters.chain.bitcoin_rpc.BitcoinRpc` call, with Bitcoin Core's
  error codes (-8 height out of range or malformed hash, -5 block not found, -32601 unknown
  method). Nothing that writes (``submitblock``, ``getblocktemplate``) is offered: the chain
  is public data, mined by the calendar alone.
"""

from __future__ import annotations

import re
from typing import Any

from opentimestamps.core.serialize import BytesSerializationContext

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.provenance.ots_calendar import Calendar
from owm_core.errors import InvalidValue, UnknownBlock
from owm_core.pool.bitcoin import BlockHeader, compact_to_target, difficulty_of_target

_HASH = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"([0-9a-f]{2}){20,64}")
MAX_DIGEST_BYTES = 64
MEDIAN_SPAN = 11


class RpcError(Exception):
    """A JSON-RPC error with Bitcoin Core's code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CalendarEndpoints:
    """The HTTP answers of the embedded calendar and chain (module docstring)."""

    def __init__(self, calendar: Calendar, chain: LocalChain) -> None:
        self.calendar = calendar
        self.chain = chain

    # ----------------------------------------------------------------- calendar protocol

    def digest(self, body: bytes) -> bytes:
        """``POST /digest``: accept ``body`` (20 to 64 bytes) now (SRS-PERF-10)."""
        if not 20 <= len(body) <= MAX_DIGEST_BYTES:
            raise InvalidValue("digest", f"must be 20 to {MAX_DIGEST_BYTES} bytes")
        ctx = BytesSerializationContext()
        self.calendar.submit(body).serialize(ctx)
        return bytes(ctx.getbytes())

    def timestamp(self, commitment_hex: str) -> bytes | None:
        """``GET /timestamp/<hex>``: the rest of the path, or None while pending/unknown."""
        if not _HEX.fullmatch(commitment_hex):
            raise InvalidValue("commitment", "must be 20 to 64 bytes of lower-case hex")
        try:
            found = self.calendar.get_timestamp(bytes.fromhex(commitment_hex))
        except KeyError:
            return None
        ctx = BytesSerializationContext()
        found.serialize(ctx)
        return bytes(ctx.getbytes())

    # ----------------------------------------------------------------- JSON-RPC

    def rpc(self, method: str, params: list[Any]) -> Any:
        """The result of ``method(params)``; :class:`RpcError` as Bitcoin Core would raise."""
        handler = getattr(self, f"_rpc_{method}", None)
        if handler is None:
            raise RpcError(-32601, "Method not found")
        try:
            return handler(*params)
        except TypeError:
            raise RpcError(-1, f"wrong parameters for {method}") from None

    def _rpc_getblockcount(self) -> int:
        return self.chain.tip_height()

    def _rpc_getbestblockhash(self) -> str:
        return self.chain.block_hash(self.chain.tip_height())

    def _rpc_getblockhash(self, height: Any) -> str:
        if not isinstance(height, int) or isinstance(height, bool):
            raise RpcError(-3, "JSON value is not of expected type number")
        try:
            return self.chain.block_hash(height)
        except UnknownBlock:
            raise RpcError(-8, "Block height out of range") from None

    def _known(self, block_hash: Any) -> tuple[str, int]:
        if not isinstance(block_hash, str) or not _HASH.fullmatch(block_hash.lower()):
            raise RpcError(-8, "blockhash must be of length 64 (hex)")
        try:
            return block_hash.lower(), self.chain.block_height(block_hash.lower())
        except UnknownBlock:
            raise RpcError(-5, "Block not found") from None

    def _rpc_getblockheader(self, block_hash: Any, verbose: bool = True) -> Any:
        known, height = self._known(block_hash)
        raw = self.chain.block_header(known)
        return self._verbose_header(raw, height) if verbose else raw.hex()

    def _rpc_getblock(self, block_hash: Any, verbosity: int = 1) -> Any:
        known, height = self._known(block_hash)
        if verbosity == 0:
            return self.chain.raw_block(known).hex()
        return self._verbose_header(self.chain.block_header(known), height)

    def _rpc_getblockchaininfo(self) -> dict[str, Any]:
        tip = self.chain.tip_height()
        return {"chain": "regtest", "blocks": tip, "headers": tip,
                "bestblockhash": self.chain.block_hash(tip),
                "mediantime": self._median_time(tip), "chainwork": f"{self._work(tip):064x}"}

    def _header_at(self, height: int) -> BlockHeader:
        return BlockHeader.parse(self.chain.block_header(self.chain.block_hash(height)))

    def _median_time(self, height: int) -> int:
        times = sorted(self._header_at(h).time
                       for h in range(max(0, height - MEDIAN_SPAN + 1), height + 1))
        return times[len(times) // 2]

    def _work(self, height: int) -> int:
        return sum((1 << 256) // (compact_to_target(self._header_at(h).bits) + 1)
                   for h in range(height + 1))

    def _verbose_header(self, raw: bytes, height: int) -> dict[str, Any]:
        header = BlockHeader.parse(raw)
        tip = self.chain.tip_height()
        answer: dict[str, Any] = {
            "hash": header.hash_hex(), "confirmations": tip - height + 1, "height": height,
            "version": header.version, "versionHex": f"{header.version & 0xFFFFFFFF:08x}",
            "merkleroot": header.merkle_root[::-1].hex(), "time": header.time,
            "mediantime": self._median_time(height), "nonce": header.nonce,
            "bits": f"{header.bits:08x}",
            "difficulty": float(difficulty_of_target(compact_to_target(header.bits))),
            "chainwork": f"{self._work(height):064x}",
        }
        if height > 0:
            answer["previousblockhash"] = header.prev_hash[::-1].hex()
        if height < tip:
            answer["nextblockhash"] = self.chain.block_hash(height + 1)
        return answer
