"""A local HTTP server that speaks bitcoind's JSON-RPC wire format, backed by a chain port.

What it reproduces of Bitcoin Core 27/28 (``src/httprpc.cpp``, ``src/rpc/blockchain.cpp``,
``src/rpc/mining.cpp``):

* HTTP basic authentication; a wrong or missing ``Authorization`` gets HTTP 401 with
  ``WWW-Authenticate: Basic realm="jsonrpc"`` and an empty body;
* JSON-RPC 1.0 envelope ``{"result": …, "error": null, "id": …}``; errors come with HTTP 500
  (HTTP 404 for an unknown method) and ``{"result": null, "error": {"code", "message"}}``;
  a request marked ``"jsonrpc": "2.0"`` gets the 2.0 envelope with HTTP 200 and only one of
  ``result``/``error``; batches (JSON arrays) are answered with HTTP 200 and an array;
* ``getblockcount``, ``getblockhash`` (-8 "Block height out of range"), ``getblockheader``
  (verbose or hex; -5 "Block not found"; -8 for a malformed hash), ``getblocktemplate``
  (-8 without the segwit rule), ``submitblock`` (null, or the rejection reason as the result;
  -22 "Block decode failed") and ``getblockchaininfo``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from owm_core.errors import BlockRejected, TransactionRejected, UnknownBlock
from owm_core.pool.bitcoin import BlockHeader, compact_to_target, difficulty_of_target
from owm_core.ports.chain import Chain, WalletChain

_HASH = re.compile(r"[0-9a-fA-F]{64}")


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FakeBitcoind:
    """bitcoind's RPC interface on 127.0.0.1:<free port>, answering from ``chain``."""

    def __init__(
        self, chain: Chain, user: str = "owm", password: str = "s3cret-rpc-pass",
        chain_name: str = "regtest",
    ) -> None:
        self.chain = chain
        #: The coins ``scantxoutset`` and ``sendrawtransaction`` answer from (a LocalLedger).
        self.wallet: WalletChain | None = None
        self.user = user
        self.password = password
        self.chain_name = chain_name
        self.calls: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/`` without credentials."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> FakeBitcoind:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ----------------------------------------------------------------- methods

    def dispatch(self, method: str, params: list[Any]) -> Any:
        self.calls.append(method)
        handler = getattr(self, f"rpc_{method}", None)
        if handler is None:
            raise RpcError(-32601, "Method not found")
        return handler(*params)

    def rpc_getblockcount(self) -> int:
        return self.chain.tip_height()

    def rpc_getblockhash(self, height: Any = None) -> str:
        if not isinstance(height, int) or isinstance(height, bool):
            raise RpcError(-3, "JSON value of type string is not of expected type number")
        try:
            return self.chain.block_hash(height)
        except UnknownBlock as exc:
            raise RpcError(-8, "Block height out of range") from exc

    def rpc_getblockheader(self, block_hash: Any = None, verbose: bool = True) -> Any:
        if not isinstance(block_hash, str) or not _HASH.fullmatch(block_hash):
            length = len(block_hash) if isinstance(block_hash, str) else 0
            raise RpcError(-8, f"blockhash must be of length 64 (not {length}, for "
                               f"'{block_hash}')")
        try:
            raw = self.chain.block_header(block_hash.lower())
        except UnknownBlock as exc:
            raise RpcError(-5, "Block not found") from exc
        if not verbose:
            return raw.hex()
        header = BlockHeader.parse(raw)
        answer: dict[str, Any] = {
            "hash": header.hash_hex(),
            "version": header.version,
            "versionHex": f"{header.version & 0xFFFFFFFF:08x}",
            "merkleroot": header.merkle_root[::-1].hex(),
            "time": header.time,
            "nonce": header.nonce,
            "bits": f"{header.bits:08x}",
            "difficulty": float(difficulty_of_target(compact_to_target(header.bits))),
        }
        if header.prev_hash != bytes(32):
            answer["previousblockhash"] = header.prev_hash[::-1].hex()
        height_of = getattr(self.chain, "block_height", None)
        if height_of is not None:
            answer["height"] = height_of(block_hash.lower())
            answer["confirmations"] = self.chain.tip_height() - answer["height"] + 1
        return answer

    def rpc_getblocktemplate(self, request: Any = None) -> dict[str, Any]:
        rules = request.get("rules", []) if isinstance(request, dict) else []
        if "segwit" not in rules:
            raise RpcError(-8, 'getblocktemplate must be called with the segwit rule set '
                               '(call with {"rules": ["segwit"]})')
        template = self.chain.block_template()
        return {
            "version": template.version,
            "rules": ["csv", "!segwit", "taproot"],
            "previousblockhash": template.previous_block_hash,
            "transactions": [{"data": tx} for tx in template.transactions],
            "coinbasevalue": template.coinbase_value_sat,
            "target": f"{compact_to_target(template.bits):064x}",
            "mintime": template.mintime,
            "mutable": ["time", "transactions", "prevblock"],
            "noncerange": "00000000ffffffff",
            "curtime": template.curtime,
            "bits": f"{template.bits:08x}",
            "height": template.height,
        }

    def rpc_submitblock(self, hexdata: Any = None) -> str | None:
        try:
            raw = bytes.fromhex(hexdata)
        except (TypeError, ValueError) as exc:
            raise RpcError(-22, "Block decode failed") from exc
        try:
            self.chain.submit_block(raw)
        except BlockRejected as exc:
            if exc.reason == "block-decode-failed":
                raise RpcError(-22, "Block decode failed") from exc
            return exc.reason
        return None

    def rpc_scantxoutset(self, action: Any = None, scanobjects: Any = None) -> dict[str, Any]:
        """``scantxoutset start ["raw(<hex>)"]`` over ``self.wallet`` (a wallet-chain twin)."""
        if action != "start" or not isinstance(scanobjects, list):
            raise RpcError(-8, "Invalid action")
        found = []
        for descriptor in scanobjects:
            script = bytes.fromhex(str(descriptor)[4:-1])  # raw(<hex>)
            for utxo in self.wallet.unspent(script):  # type: ignore[union-attr]
                # bitcoind answers amounts as BTC numbers (ValueFromAmount)
                found.append({"txid": utxo.txid, "vout": utxo.vout,
                              "amount": utxo.amount_sat / 100_000_000,
                              "scriptPubKey": script.hex(), "height": 1})
        total = sum(u["amount"] for u in found)
        return {"success": True, "unspents": found, "total_amount": total}

    def rpc_sendrawtransaction(self, hexstring: Any = None, *_: Any) -> str:
        """``sendrawtransaction``: the txid, or RPC_VERIFY_REJECTED (-26) with the reason."""
        try:
            return str(self.wallet.broadcast(bytes.fromhex(hexstring)))  # type: ignore[union-attr]
        except TransactionRejected as exc:
            raise RpcError(-26, exc.message) from exc
        except ValueError as exc:
            raise RpcError(-22, "TX decode failed") from exc

    def rpc_getblockchaininfo(self) -> dict[str, Any]:
        tip = self.chain.tip_height()
        return {"chain": self.chain_name, "blocks": tip, "headers": tip,
                "bestblockhash": self.chain.block_hash(tip)}

    # ----------------------------------------------------------------- HTTP

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "bitcoind-fake"

            def log_message(self, *_args: object) -> None:
                return

            def _send(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                expected = "Basic " + base64.b64encode(
                    f"{fake.user}:{fake.password}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._send(401, b"", {"WWW-Authenticate": 'Basic realm="jsonrpc"'})
                    return
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    request = json.loads(self.rfile.read(length))
                except ValueError:
                    body = {"result": None, "error": {"code": -32700, "message": "Parse error"},
                            "id": None}
                    self._send(500, json.dumps(body).encode())
                    return
                if isinstance(request, list):
                    replies = [self._one(item)[1] for item in request]
                    self._send(200, json.dumps(replies).encode())
                    return
                status, reply = self._one(request)
                self._send(status, json.dumps(reply).encode())

            def _one(self, request: Any) -> tuple[int, dict[str, Any]]:
                if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                    return 400, {"result": None, "id": None,
                                 "error": {"code": -32600, "message": "Invalid Request object"}}
                two = request.get("jsonrpc") == "2.0"
                request_id = request.get("id")
                params = request.get("params") or []
                try:
                    result = fake.dispatch(request["method"], list(params))
                except RpcError as exc:
                    error = {"code": exc.code, "message": exc.message}
                    if two:
                        return 200, {"jsonrpc": "2.0", "error": error, "id": request_id}
                    status = 404 if exc.code == -32601 else 500
                    return status, {"result": None, "error": error, "id": request_id}
                except TypeError:
                    error = {"code": -1, "message": f"{request['method']}: wrong parameters"}
                    if two:
                        return 200, {"jsonrpc": "2.0", "error": error, "id": request_id}
                    return 500, {"result": None, "error": error, "id": request_id}
                if two:
                    return 200, {"jsonrpc": "2.0", "result": result, "id": request_id}
                return 200, {"result": result, "error": None, "id": request_id}

        return Handler


class HeaderChain:
    """A chain port that knows only some headers by height (e.g. real mainnet headers).

    Enough for verifying proofs: ``block_template``/``submit_block`` are refused.
    """

    def __init__(self, headers: dict[int, bytes]) -> None:
        self.headers = dict(headers)

    def tip_height(self) -> int:
        return max(self.headers)

    def block_hash(self, height: int) -> str:
        if height not in self.headers:
            raise UnknownBlock(f"Block height out of range: {height}")
        return BlockHeader.parse(self.headers[height]).hash_hex()

    def block_header(self, block_hash: str) -> bytes:
        for header in self.headers.values():
            if BlockHeader.parse(header).hash_hex() == block_hash:
                return header
        raise UnknownBlock(f"Block not found: {block_hash}")

    def block_template(self) -> Any:
        raise BlockRejected("unsupported", "a header-only chain cannot make templates")

    def submit_block(self, raw_block: bytes) -> None:
        raise BlockRejected("unsupported", "a header-only chain cannot take blocks")
