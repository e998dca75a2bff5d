"""The chain port over Bitcoin Core / Bitcoin Knots JSON-RPC (27+; same interface).

Speaks JSON-RPC 1.0 (bitcoind's legacy envelope: HTTP 500 with ``{"result": null, "error":
{...}, "id": …}`` on errors) and 2.0 (Bitcoin Core 28+: HTTP 200, ``error`` or ``result``) over
HTTP with basic authentication, from ``user``/``password`` or bitcoind's ``.cookie`` file
(re-read on every call, since bitcoind writes a new one at each start). Every failure becomes a
domain error: unknown heights/hashes (RPC codes -8/-5) :class:`~owm_core.errors.UnknownBlock`,
refused blocks :class:`~owm_core.errors.BlockRejected`, everything else (unreachable, HTTP 401,
warming up, nonsense) :class:`~owm_core.errors.ChainUnavailable`. The password never appears in
messages, ``repr`` or logs: the endpoint is always shown without credentials.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from owm_core.errors import BlockRejected, ChainUnavailable, TransactionRejected, UnknownBlock
from owm_core.governance.treasury import Utxo
from owm_core.pool.bitcoin import BlockTemplate
from owm_core.provenance.versions import Network

log = logging.getLogger(__name__)

RPC_MISC_ERROR = -1
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_INVALID_PARAMETER = -8
RPC_DESERIALIZATION_ERROR = -22
RPC_IN_WARMUP = -28
_UNKNOWN_BLOCK_CODES = {RPC_INVALID_ADDRESS_OR_KEY, RPC_INVALID_PARAMETER}
# RPC_VERIFY_ERROR, RPC_VERIFY_REJECTED, RPC_VERIFY_ALREADY_IN_CHAIN, RPC_DESERIALIZATION_ERROR
_TX_REFUSED_CODES = {-25, -26, -27, RPC_DESERIALIZATION_ERROR}
SAT_PER_BTC = 100_000_000


class BitcoinRpc:
    """A Bitcoin Core / Knots node behind the chain port (``getblockhash``, ``getblockheader``,
    ``getblocktemplate``, ``submitblock``, ``getblockcount``, ``getblockchaininfo``) and the
    wallet-chain port (``scantxoutset``, ``sendrawtransaction``)."""

    def __init__(
        self,
        url: str,
        user: str | None = None,
        password: str | None = None,
        cookie_file: str | Path | None = None,
        timeout_s: float = 30.0,
        jsonrpc: str = "1.0",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChainUnavailable(f"bitcoin RPC URL must be http(s)://host:port, got {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 8332)
        self._path = parts.path or "/"
        self._user = user if user is not None else unquote(parts.username or "") or None
        self._password = password if password is not None else unquote(parts.password or "")
        self._cookie_file = Path(cookie_file) if cookie_file is not None else None
        self._timeout_s = timeout_s
        self._jsonrpc = jsonrpc
        self._ids = itertools.count(1)

    @property
    def endpoint(self) -> str:
        """The node's address without credentials, safe to print."""
        return f"{'https' if self._https else 'http'}://{self._host}:{self._port}{self._path}"

    def __repr__(self) -> str:
        return f"BitcoinRpc({self.endpoint!r})"

    # ----------------------------------------------------------------- transport

    def _authorization(self) -> str | None:
        if self._cookie_file is not None:
            try:
                user, _, password = self._cookie_file.read_text().strip().partition(":")
            except OSError as exc:
                raise ChainUnavailable(
                    f"cannot read bitcoind cookie {self._cookie_file}: {exc.strerror}"
                ) from exc
        elif self._user is not None:
            user, password = self._user, self._password or ""
        else:
            return None
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return f"Basic {token}"

    def call(self, method: str, *params: Any) -> Any:
        """Call ``method`` and return its ``result``; raise the matching domain error."""
        request_id = next(self._ids)
        body = json.dumps(
            {"jsonrpc": self._jsonrpc, "id": request_id, "method": method, "params": list(params)}
        ).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        authorization = self._authorization()
        if authorization is not None:
            headers["Authorization"] = authorization
        connection_class = (
            http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        )
        connection = connection_class(self._host, self._port, timeout=self._timeout_s)
        try:
            connection.request("POST", self._path, body=body, headers=headers)
            response = connection.getresponse()
            status, payload = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ChainUnavailable(f"cannot reach bitcoind at {self.endpoint}: {exc}") from exc
        finally:
            connection.close()
        log.debug("bitcoind %s %s -> HTTP %s", self.endpoint, method, status)
        if status in (401, 403):
            raise ChainUnavailable(
                f"bitcoind at {self.endpoint} refused the RPC credentials (HTTP {status})"
            )
        try:
            reply = json.loads(payload)
        except ValueError as exc:
            raise ChainUnavailable(
                f"bitcoind at {self.endpoint} answered HTTP {status} without JSON"
            ) from exc
        if not isinstance(reply, dict):
            raise ChainUnavailable(f"bitcoind at {self.endpoint} answered a non-object")
        error = reply.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            if code in _UNKNOWN_BLOCK_CODES and method in ("getblockhash", "getblockheader"):
                raise UnknownBlock(f"{message} ({method})")
            if code == RPC_DESERIALIZATION_ERROR and method == "submitblock":
                raise BlockRejected("block-decode-failed", message)
            if code in _TX_REFUSED_CODES and method == "sendrawtransaction":
                raise TransactionRejected(f"bitcoind refused the transaction: {message}")
            raise ChainUnavailable(f"bitcoind {method} failed with code {code}: {message}")
        if "result" not in reply:
            raise ChainUnavailable(f"bitcoind at {self.endpoint} answered without a result")
        if reply.get("id") != request_id:
            raise ChainUnavailable(f"bitcoind answered id {reply.get('id')!r}, not {request_id}")
        return reply["result"]

    # ----------------------------------------------------------------- chain port

    def tip_height(self) -> int:
        """Height of the best block (``getblockcount``)."""
        return int(self.call("getblockcount"))

    def block_hash(self, height: int) -> str:
        """Display-hex hash at ``height`` (``getblockhash``); ``UnknownBlock`` if out of range."""
        return str(self.call("getblockhash", height))

    def block_header(self, block_hash: str) -> bytes:
        """The 80 header bytes (``getblockheader hash false``); ``UnknownBlock`` if none."""
        raw = self.call("getblockheader", block_hash, False)
        try:
            header = bytes.fromhex(raw)
        except (TypeError, ValueError) as exc:
            raise ChainUnavailable("bitcoind returned a header that is not hex") from exc
        return header

    def block_template(self) -> BlockTemplate:
        """The next block's template (``getblocktemplate {"rules": ["segwit"]}``)."""
        answer = self.call("getblocktemplate", {"rules": ["segwit"]})
        try:
            return BlockTemplate(
                height=int(answer["height"]),
                previous_block_hash=str(answer["previousblockhash"]),
                bits=int(answer["bits"], 16),
                curtime=int(answer["curtime"]),
                version=int(answer["version"]),
                coinbase_value_sat=int(answer["coinbasevalue"]),
                transactions=tuple(str(tx["data"]) for tx in answer.get("transactions", ())),
                mintime=int(answer.get("mintime", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainUnavailable(f"bitcoind's block template is incomplete: {exc}") from exc

    def submit_block(self, raw_block: bytes) -> None:
        """``submitblock``: null means accepted, a string is bitcoind's rejection reason."""
        reason = self.call("submitblock", raw_block.hex())
        if reason is not None:
            raise BlockRejected(str(reason), f"bitcoind rejected the block: {reason}")

    def unspent(self, script_pubkey: bytes) -> list[Utxo]:
        """The treasury's coins (``scantxoutset start ["raw(<script>)"]``; no wallet needed)."""
        answer = self.call("scantxoutset", "start", [f"raw({script_pubkey.hex()})"])
        try:
            return [
                Utxo(str(u["txid"]), int(u["vout"]), int(Decimal(str(u["amount"])) * SAT_PER_BTC))
                for u in answer.get("unspents", ())
            ]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ChainUnavailable(f"bitcoind's scantxoutset answer is incomplete: {exc}") from exc

    def broadcast(self, raw_tx: bytes) -> str:
        """``sendrawtransaction``: the txid, or TransactionRejected with bitcoind's reason."""
        return str(self.call("sendrawtransaction", raw_tx.hex()))

    def network(self) -> Network:
        """Which network the node follows (``getblockchaininfo``'s ``chain``)."""
        return Network.from_name(str(self.call("getblockchaininfo")["chain"]))
