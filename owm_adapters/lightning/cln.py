"""Core Lightning: payments over its JSON-RPC unix socket (pyln-client), force closes over
clnrest with a close-only rune (SRS-LN-01, SRS-SEC-13).

RPCs on the socket: ``getinfo``; ``invoice``/``listinvoices`` (CLN's invoice list has no
creation time or expiry, so both are read from the BOLT11 string itself); ``pay`` with ``maxfee``
and ``retry_for``; ``listpays`` to look payments up (``pay`` is made idempotent by checking it
first: a complete or pending payment of the hash is returned, never repeated);
``keysend`` to pay a node without an invoice (its plugin draws the preimage, so an attempt
is keyed by its label ``owm-keysend-<sha256 of the caller's preimage>`` and found again by
``lookup_keysend`` through an unfiltered ``listpays``, asked only for keysend payouts; every
other lookup is ``listpays`` filtered by the payment hash); ``listpeerchannels`` for stake
checks and to find the channel to close;
``signmessage`` / ``checkmessage`` (with the expected pubkey) for proofs of node control.
Waiting for an invoice polls ``listinvoices``: ``waitinvoice`` cannot time out.

Credentials (SRS-SEC-13): CLN's ``lightning-rpc`` socket grants every method to whoever can
open it, so it is not an access-controlled credential. Force close therefore never goes over
the socket: :class:`ClnRestForceClose` calls ``close(id, unilateraltimeout=1)`` (a prompt
force close, SRS-STAKE-05) through CLN's REST plugin ``clnrest`` over HTTPS, authenticated
with a *rune* restricted to the ``close`` method (``lightning-cli createrune
restrictions='[["method=close"]]'``), which lightningd checks with ``checkrune`` before the
call. Without one, ``ClnLightning.force_close`` raises ``ForceCloseNotPermitted``. The rune is
never logged, put in an exception message or a repr (SRS-SEC-07).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import math
import os
import re
import ssl
import stat
import time
import urllib.parse
from typing import Any

import bolt11
from pyln.client import LightningRpc, RpcError

from owm_adapters.lightning.node_invoices import decode_bolt11
from owm_core.errors import (
    ChannelNotFound,
    ForceCloseNotPermitted,
    InvalidValue,
    InvoiceNotFound,
    LightningUnavailable,
)
from owm_core.payments.keysend import payment_hash_of
from owm_core.payments.lightning import (
    Channel,
    Invoice,
    InvoiceState,
    PaymentResult,
    PaymentStatus,
    require_channel_point,
    require_int,
    require_payment_hash,
    require_peer_pubkey,
)

log = logging.getLogger(__name__)

_INVOICE_STATES = {
    "unpaid": InvoiceState.OPEN,
    "paid": InvoiceState.SETTLED,
    "expired": InvoiceState.CANCELED,
}
_OPEN_CHANNEL_STATES = {"CHANNELD_NORMAL", "CHANNELD_AWAITING_SPLICE"}
_PAY_IN_PROGRESS = 200
_PAYMENT_FAILURE_CODES = range(201, 220)
_INVALID_PARAMS = -32602
_METHOD_NOT_FOUND = -32601
#: lightningd's rune errors (common/jsonrpc_errors.h): not derived from this node's master
#: secret, a restriction not met, blacklisted.
_RUNE_REFUSED = {1501, 1502, 1503}
_RUNE_TEXT = re.compile(r"[A-Za-z0-9_=-]+")
_MAX_REPLY_BYTES = 1 << 20
#: The settings that configure the force-close credential (owm_adapters.bootstrap.settings).
FORCE_CLOSE_SETTINGS = ("cln_rest_url", "cln_force_close_rune_file", "cln_rest_ca_file")


def _msat(value: Any) -> int:
    """CLN amounts: ints, pyln ``Millisatoshi`` objects, or legacy ``"123msat"`` strings."""
    if isinstance(value, str):
        return int(value.removesuffix("msat"))
    return int(value)


class ClnRestForceClose:
    """CLN's ``close`` method over clnrest (HTTPS) with a close-only rune (SRS-SEC-13).

    What clnrest expects, read in Core Lightning's source (ElementsProject/lightning,
    ``plugins/rest-plugin/src/handlers.rs`` ``post_rpc_method`` and ``shared.rs``
    ``verify_rune``; ``doc/developers-guide/app-development/rest.md``): ``POST
    /v1/<rpc method>`` with the method's parameters as a JSON object body and the rune in the
    ``Rune`` header (looked up case-insensitively as ``rune``); the example there is ``curl -X
    POST https://127.0.0.1:3010/v1/getinfo -H 'Rune: <node-rune>'``. clnrest asks lightningd's
    ``checkrune`` with the method and the parameters before calling it. Answers: ``201`` with
    the method's JSON result; ``403`` ``{"code": 1501, "message": "Not authorized: Missing
    rune"}``; ``401`` with checkrune's error (1501 "Not authorized: Not derived from master",
    1502 "Not permitted: …", 1503 blacklisted); ``404`` for an unknown method (-32601);
    ``500`` with the RPC error ``{"code", "message", "data"}`` otherwise. Its TLS identity
    (``plugins/rest-plugin/src/certs.rs``) is a ``server.pem`` signed by a generated
    ``ca.pem`` (names ``cln``, ``localhost`` and the ``clnrest-host`` IP): ``ca.pem`` is the
    trust root given here, and the host name is checked against it.

    Only ``https`` is accepted: the rune is a bearer credential and must not cross a
    connection in clear (clnrest's ``clnrest-protocol=http`` is refused). The rune itself is
    held privately; ``repr``, log lines and exception messages carry the URL only, and any
    echo of the rune in a server message is redacted (SRS-SEC-07).
    """

    def __init__(
        self, rest_url: str, rune: str, *, ca_pem: bytes, timeout_s: float = 60.0
    ) -> None:
        """Talk to clnrest at ``rest_url`` (``https://host:port``) trusting ``ca_pem`` only."""
        self.rest_url = _rest_base(rest_url)
        self.timeout_s = timeout_s
        self._rune = _checked_rune(rune)
        # Trust clnrest's CA and nothing else: no system roots (create_default_context would
        # load them for an empty ca_pem). PROTOCOL_TLS_CLIENT checks host names by default.
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        with contextlib.suppress(ssl.SSLError, UnicodeDecodeError, ValueError):
            self._tls.load_verify_locations(cadata=ca_pem.decode("ascii"))
        if not self._tls.cert_store_stats()["x509"]:
            raise InvalidValue("cln_rest_ca_file", "not a PEM certificate (clnrest's ca.pem)")

    @classmethod
    def from_files(
        cls,
        rest_url: str,
        *,
        rune_file: str | os.PathLike[str],
        ca_file: str | os.PathLike[str],
        timeout_s: float = 60.0,
    ) -> ClnRestForceClose:
        """Build from the rune file (mode 0600, read once, here) and clnrest's ``ca.pem``."""
        rune = _read_rune_file(rune_file)
        try:
            with open(ca_file, "rb") as handle:
                ca_pem = handle.read()
        except OSError as error:
            raise InvalidValue(
                "cln_rest_ca_file", f"cannot read {os.fspath(ca_file)!r}: {error.strerror}"
            ) from None
        return cls(rest_url, rune, ca_pem=ca_pem, timeout_s=timeout_s)

    def __repr__(self) -> str:
        return f"ClnRestForceClose({self.rest_url!r})"

    def close(self, channel: str) -> dict[str, Any]:
        """``close(id=channel, unilateraltimeout=1)``: CLN's reply, or a domain error.

        ``ForceCloseNotPermitted`` when clnrest refuses the rune, ``ChannelNotFound`` when CLN
        does not know the channel, ``LightningUnavailable`` for anything else.
        """
        parts = urllib.parse.urlsplit(self.rest_url)
        url = f"{self.rest_url}/v1/close"
        body = json.dumps({"id": channel, "unilateraltimeout": 1}).encode()
        headers = {"Rune": self._rune, "Content-Type": "application/json",
                   "Accept": "application/json"}
        # http.client, not urllib: no redirects (urllib would resend the Rune header to
        # wherever a 3xx points) and no proxies from the environment. Failures become domain
        # errors outside the except blocks, so no exception holding request data is chained.
        connection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port or 443, timeout=self.timeout_s, context=self._tls
        )
        status: int | None = None
        raw = b""
        failure = ""
        try:
            connection.request("POST", f"{parts.path}/v1/close", body=body, headers=headers)
            reply = connection.getresponse()
            status = reply.status
            raw = reply.read(_MAX_REPLY_BYTES)
        except (OSError, http.client.HTTPException) as error:
            failure = _transport_reason(error)
        finally:
            connection.close()
        if failure:
            raise self._unavailable(f"CLN REST close failed at {url}: {failure}")
        if status is None or not 200 <= status < 300:
            raise self._refusal(url, status, raw)
        try:
            result = json.loads(raw)
        except ValueError:
            result = None
        if not isinstance(result, dict):
            raise self._unavailable(f"CLN REST close at {url} answered no JSON object")
        return result

    def _refusal(self, url: str, status: int | None, raw: bytes) -> Exception:
        """The domain error for an HTTP error answer of clnrest (CLN-style ``{code, message}``)."""
        try:
            detail = json.loads(raw)
        except ValueError:
            detail = None
        code = detail.get("code") if isinstance(detail, dict) else None
        text = self._scrub(str(detail.get("message", ""))) if isinstance(detail, dict) else ""
        said = f"{code}: {text}" if code is not None else (text or "no CLN error")
        if status in {401, 403} or code in _RUNE_REFUSED:
            message = (
                f"CLN REST refused the force-close rune at {url}: HTTP {status}: {said} "
                "(it must be a rune of this node restricted to method=close; SRS-SEC-13)"
            )
            log.warning("%s", message)
            return ForceCloseNotPermitted(message)
        if code == _INVALID_PARAMS and "not found" in text.lower():
            message = f"CLN REST close at {url}: {said}"
            log.warning("%s", message)
            return ChannelNotFound(message)
        if status == 404 or code == _METHOD_NOT_FOUND:
            return self._unavailable(
                f"CLN REST close failed at {url}: HTTP {status}: {said} (is clnrest serving /v1?)"
            )
        return self._unavailable(f"CLN REST close failed at {url}: HTTP {status}: {said}")

    def _unavailable(self, message: str) -> LightningUnavailable:
        message = self._scrub(message)
        log.warning("%s", message)
        return LightningUnavailable(message)

    def _scrub(self, text: str) -> str:
        return text.replace(self._rune, "<redacted>")[:400]


def _rest_base(rest_url: str) -> str:
    """``rest_url`` without a trailing slash; only ``https://host[:port][/prefix]``."""
    try:
        parts = urllib.parse.urlsplit(rest_url.strip())
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise InvalidValue("cln_rest_url", "not a URL") from None
    if parts.scheme != "https":
        raise InvalidValue(
            "cln_rest_url",
            "must be an https:// URL (the rune is a bearer credential; clnrest speaks https)",
        )
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidValue("cln_rest_url", "must be https://host:port with no user, query or "
                           "fragment")
    return f"https://{parts.netloc}{parts.path.rstrip('/')}"


def _checked_rune(rune: str) -> str:
    """The rune, if it is base64url text restricted to ``method=close`` (SRS-SEC-13).

    A rune is ``base64url(authcode[32] ‖ restrictions)``; restrictions are separated by ``&``,
    alternatives by ``|``, ``\\`` escapes (lightning-createrune(7)). The check is local and only
    refuses an obviously over-powered rune (an admin rune by mistake); lightningd's checkrune
    remains the authority.
    """
    rune = rune.strip()
    if not _RUNE_TEXT.fullmatch(rune):
        raise InvalidValue("cln_force_close_rune_file", "does not hold a rune (base64url text)")
    restrictions = _rune_restrictions(rune)
    if restrictions is None:
        raise InvalidValue("cln_force_close_rune_file", "does not hold a valid rune")
    if ["method=close"] not in restrictions:
        raise InvalidValue(
            "cln_force_close_rune_file",
            "the rune is not restricted to the close method; create one with "
            "`lightning-cli createrune restrictions='[[\"method=close\"]]'` (SRS-SEC-13)",
        )
    return rune


def _rune_restrictions(rune: str) -> list[list[str]] | None:
    """The rune's restrictions as lists of alternatives (unescaped), or None if malformed."""
    try:
        raw = base64.urlsafe_b64decode(rune + "=" * (-len(rune) % 4))
        text = raw[32:].decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    if len(raw) < 32:
        return None
    restrictions: list[list[str]] = []
    alternatives: list[str] = []
    current = ""
    escaped = False
    for char in text:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            alternatives.append(current)
            current = ""
        elif char == "&":
            restrictions.append([*alternatives, current])
            alternatives, current = [], ""
        else:
            current += char
    if text:
        restrictions.append([*alternatives, current])
    return restrictions


def _read_rune_file(path: str | os.PathLike[str]) -> str:
    """The rune in ``path``; refused if unreadable, empty or readable by others (SRS-SEC-07)."""
    shown = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="ascii") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise InvalidValue("cln_force_close_rune_file", f"no rune file at {shown!r}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidValue(
            "cln_force_close_rune_file", f"cannot read {shown!r}: {type(error).__name__}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidValue(
            "cln_force_close_rune_file",
            f"{shown} is readable by other users; run `chmod 600 {shown}`",
        )
    if not text.strip():
        raise InvalidValue("cln_force_close_rune_file", f"{shown} is empty")
    return text.strip()


def _transport_reason(reason: object) -> str:
    """A short reason for a transport failure (no request data: it holds the rune)."""
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS verification failed: {reason.verify_message}"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {reason.reason or type(reason).__name__}"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return type(reason).__name__


class ClnLightning:
    """The Lightning port over one Core Lightning node's JSON-RPC socket."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        force_closer: ClnRestForceClose | None = None,
        poll_interval_s: float = 0.1,
    ) -> None:
        """Talk to ``socket_path`` (``<lightning-dir>/<network>/lightning-rpc``); force close
        only through ``force_closer`` (clnrest with a close-only rune, SRS-SEC-13)."""
        self.socket_path = os.fspath(socket_path)
        self.poll_interval_s = poll_interval_s
        self._rpc = LightningRpc(self.socket_path, logger=log)
        self._force_closer = force_closer

    def __repr__(self) -> str:
        return f"ClnLightning({self.socket_path!r}, force_close={self._force_closer is not None})"

    def _call(self, method: str, **params: Any) -> Any:
        """One JSON-RPC call; connection problems become ``LightningUnavailable``.

        ``RpcError`` is passed through for the caller to interpret; its ``str`` includes the
        payload, so messages are built from ``error.error`` only.
        """
        try:
            return self._rpc.call(method, params)
        except RpcError:
            raise
        except (OSError, ValueError, TypeError) as error:
            reason = error.strerror if isinstance(error, OSError) else type(error).__name__
            message = f"CLN {method} failed at {self.socket_path}: {reason}"
            log.warning("%s", message)
            raise LightningUnavailable(message) from None

    def _failure(self, method: str, error: RpcError) -> LightningUnavailable:
        code, text = _rpc_error(error)
        message = f"CLN {method} failed at {self.socket_path}: {code}: {text}"
        log.warning("%s", message)
        return LightningUnavailable(message)

    def _listed(self, method: str, key: str, payment_hash: str) -> list[dict[str, Any]]:
        """The ``key`` list that ``method`` answers for ``payment_hash`` (checked first)."""
        require_payment_hash(payment_hash)
        try:
            rows: list[dict[str, Any]] = self._call(method, payment_hash=payment_hash)[key]
        except RpcError as error:
            raise self._failure(method, error) from None
        return rows

    def _info(self) -> dict[str, Any]:
        try:
            return dict(self._call("getinfo"))
        except RpcError as error:
            raise self._failure("getinfo", error) from None

    def node_pubkey(self) -> str:
        """This node's identity: a 33-byte compressed public key as lower-case hex."""
        return str(self._info()["id"])

    def node_uri(self) -> str | None:
        """``pubkey@host:port`` where peers reach this node, or None if it announces none."""
        info = self._info()
        for address in info.get("address", []):
            return f"{info['id']}@{address['address']}:{address['port']}"
        return None

    def create_invoice(self, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        """Issue a BOLT11 invoice for ``amount_msat`` payable for ``expiry_s`` seconds."""
        require_int("amount_msat", amount_msat, minimum=1)
        require_int("expiry_s", expiry_s, minimum=1)
        label = f"owm-{os.urandom(12).hex()}"
        try:
            created = self._call(
                "invoice", amount_msat=amount_msat, label=label, description=memo,
                expiry=expiry_s,
            )
        except RpcError as error:
            code, text = _rpc_error(error)
            if code == _INVALID_PARAMS:
                raise InvalidValue("invoice", text) from None
            raise self._failure("invoice", error) from None
        return self.lookup_invoice(str(created["payment_hash"]))

    def lookup_invoice(self, payment_hash: str) -> Invoice:
        """The invoice with this hash in its current state; ``InvoiceNotFound`` if unknown."""
        found = self._listed("listinvoices", "invoices", payment_hash)
        if not found:
            raise InvoiceNotFound(f"no invoice with payment hash {payment_hash}")
        return _invoice(found[0])

    def wait_invoice(self, payment_hash: str, timeout_s: float) -> Invoice:
        """Block until the invoice leaves OPEN or ``timeout_s`` passes; return its state then."""
        deadline = time.monotonic() + timeout_s
        while True:
            invoice = self.lookup_invoice(payment_hash)
            left = deadline - time.monotonic()
            if invoice.state is not InvoiceState.OPEN or left <= 0:
                return invoice
            time.sleep(min(self.poll_interval_s, left))

    def pay(self, bolt11: str, max_fee_msat: int, timeout_s: float) -> PaymentResult:
        """Pay an invoice at most once per payment hash, routing fees capped at max_fee_msat."""
        require_int("max_fee_msat", max_fee_msat, minimum=0)
        payment_hash = decode_bolt11(bolt11).payment_hash
        pays = self._listed("listpays", "pays", payment_hash)
        earlier = _pay_result(pays, payment_hash) if pays else None
        if earlier is not None and earlier.status is not PaymentStatus.FAILED:
            return earlier
        try:
            paid = self._call(
                "pay", bolt11=bolt11, maxfee=max_fee_msat,
                retry_for=max(1, math.ceil(timeout_s)),
            )
        except RpcError as error:
            code, text = _rpc_error(error)
            if code == _PAY_IN_PROGRESS:
                return self.lookup_payment(payment_hash) or PaymentResult(
                    payment_hash=payment_hash, status=PaymentStatus.IN_FLIGHT
                )
            if code in _PAYMENT_FAILURE_CODES:
                return PaymentResult(
                    payment_hash=payment_hash,
                    status=PaymentStatus.FAILED,
                    failure_reason=f"{code}: {text}",
                )
            if code == _INVALID_PARAMS:
                raise InvalidValue("bolt11", text) from None
            raise self._failure("pay", error) from None
        amount = _msat(paid["amount_msat"])
        return PaymentResult(
            payment_hash=payment_hash,
            status=PaymentStatus.SUCCEEDED,
            amount_msat=amount,
            fee_msat=_msat(paid["amount_sent_msat"]) - amount,
            preimage=str(paid["payment_preimage"]),
        )

    def keysend(
        self, dest_pubkey: str, amount_msat: int, preimage: str, max_fee_msat: int,
        timeout_s: float,
    ) -> PaymentResult:
        """Pay ``dest_pubkey`` without an invoice with CLN's ``keysend`` (module docstring).

        CLN's keysend plugin draws the preimage itself (``plugins/keysend.c``); the caller's
        ``preimage`` only fixes the key ``sha256(preimage)``, carried in the payment's label
        ``owm-keysend-<key>``. An earlier complete or pending payment with that label is
        returned, never repeated; the result is reported under the key.
        """
        require_peer_pubkey(dest_pubkey)
        require_int("amount_msat", amount_msat, minimum=1)
        require_int("max_fee_msat", max_fee_msat, minimum=0)
        key = payment_hash_of(preimage)
        earlier = self.lookup_keysend(key)
        if earlier is not None and earlier.status is not PaymentStatus.FAILED:
            return earlier
        try:
            paid = self._call(
                "keysend", destination=dest_pubkey, amount_msat=amount_msat,
                label=_keysend_label(key), maxfee=max_fee_msat,
                retry_for=max(1, math.ceil(timeout_s)),
            )
        except RpcError as error:
            code, text = _rpc_error(error)
            if code == _PAY_IN_PROGRESS:
                return PaymentResult(payment_hash=key, status=PaymentStatus.IN_FLIGHT)
            if code in _PAYMENT_FAILURE_CODES:
                return PaymentResult(payment_hash=key, status=PaymentStatus.FAILED,
                                     failure_reason=f"{code}: {text}")
            if code == _INVALID_PARAMS:
                raise InvalidValue("keysend", text) from None
            raise self._failure("keysend", error) from None
        amount = _msat(paid["amount_msat"])
        return PaymentResult(
            payment_hash=key, status=PaymentStatus.SUCCEEDED, amount_msat=amount,
            fee_msat=max(0, _msat(paid["amount_sent_msat"]) - amount),
            preimage=str(paid["payment_preimage"]),
        )

    def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        """The latest outgoing payment for this hash (``listpays`` filtered by it), or None if
        none was ever attempted. A keysend attempt is not found here (CLN paid it under a hash
        of its own): :meth:`lookup_keysend` finds it."""
        pays = self._listed("listpays", "pays", payment_hash)
        return _pay_result(pays, payment_hash) if pays else None

    def lookup_keysend(self, key: str) -> PaymentResult | None:
        """The keysend payments labelled ``owm-keysend-<key>``, as one result under ``key``;
        None if there are none. ``listpays`` has no label filter, so this reads every pay of
        the node: the dispatcher asks it of keysend payouts only."""
        require_payment_hash(key)
        try:
            pays = self._call("listpays")["pays"]
        except RpcError as error:
            raise self._failure("listpays", error) from None
        label = _keysend_label(key)
        mine = [p for p in pays if p.get("label") == label]
        return _pay_result(mine, key) if mine else None

    def _open_channels(self, peer_pubkey: str | None) -> list[dict[str, Any]]:
        try:
            params: dict[str, Any] = {} if peer_pubkey is None else {"id": peer_pubkey}
            channels = self._call("listpeerchannels", **params)["channels"]
        except RpcError as error:
            raise self._failure("listpeerchannels", error) from None
        return [c for c in channels if c.get("state") in _OPEN_CHANNEL_STATES]

    def channels_with(self, peer_pubkey: str) -> list[Channel]:
        """This node's open channels with ``peer_pubkey`` (stake checks, SRS-STAKE-01/02)."""
        require_peer_pubkey(peer_pubkey)
        return [
            _channel(c) for c in self._open_channels(peer_pubkey)
            if c.get("peer_id") == peer_pubkey
        ]

    def sign_message(self, message: str) -> str:
        """Sign ``message`` with this node's identity key (``signmessage``); zbase32."""
        try:
            return str(self._call("signmessage", message=message)["zbase"])
        except RpcError as error:
            raise self._failure("signmessage", error) from None

    def verify_message(self, message: str, signature: str, pubkey: str) -> bool:
        """True when ``signature`` over ``message`` was made by ``pubkey`` (``checkmessage``).

        The pubkey is passed, so CLN checks that key rather than its gossip; CLN answers a
        mismatch or an unparsable signature with an error, which is False here.
        """
        try:
            checked = self._call("checkmessage", message=message, zbase=signature, pubkey=pubkey)
        except RpcError as error:
            code, text = _rpc_error(error)
            log.info("CLN checkmessage refused the signature: %s: %s", code, text)
            return False
        return bool(checked.get("verified")) and str(checked.get("pubkey")) == pubkey.lower()

    def force_close(self, channel_point: str) -> str:
        """Unilaterally close a channel with the force-close rune over clnrest; return the txid.

        The channel is looked up on the payment socket (a read); only the ``close`` itself
        needs, and gets, the rune (SRS-SEC-13, SRS-STAKE-05).
        """
        if self._force_closer is None:
            raise ForceCloseNotPermitted(
                "this CLN adapter holds no force-close rune: set lightning."
                + ", lightning.".join(FORCE_CLOSE_SETTINGS)
                + " (clnrest + a rune restricted to method=close, SRS-SEC-13)"
            )
        require_channel_point(channel_point)
        matches = [
            c for c in self._open_channels(None)
            if f"{c.get('funding_txid')}:{c.get('funding_outnum')}" == channel_point
        ]
        if not matches:
            raise ChannelNotFound(f"no open channel {channel_point} on this node")
        channel = matches[0]
        target = channel.get("short_channel_id") or channel["channel_id"]
        closed = self._force_closer.close(str(target))
        txid = closed.get("txid") or (closed.get("txids") or [None])[0]
        if not txid:
            raise LightningUnavailable(f"CLN close at {self.socket_path} returned no txid")
        return str(txid)


def _keysend_label(key: str) -> str:
    """The label of every keysend attempt of the payout keyed ``key`` (a payment hash)."""
    return f"owm-keysend-{key}"


def _pay_result(pays: list[dict[str, Any]], payment_hash: str) -> PaymentResult:
    """One result for the ``listpays`` rows of one payment: complete over pending over failed."""
    rank = {"complete": 2, "pending": 1, "failed": 0}
    best = max(pays, key=lambda p: rank.get(p.get("status", "failed"), 0))
    status = best.get("status")
    if status == "complete":
        amount = _msat(best.get("amount_msat", 0))
        return PaymentResult(
            payment_hash=payment_hash,
            status=PaymentStatus.SUCCEEDED,
            amount_msat=amount,
            fee_msat=max(0, _msat(best.get("amount_sent_msat", amount)) - amount),
            preimage=str(best["preimage"]),
        )
    if status == "pending":
        return PaymentResult(payment_hash=payment_hash, status=PaymentStatus.IN_FLIGHT)
    return PaymentResult(
        payment_hash=payment_hash, status=PaymentStatus.FAILED,
        failure_reason="payment failed",
    )


def _rpc_error(error: RpcError) -> tuple[int | None, str]:
    detail = error.error
    if isinstance(detail, dict):
        return detail.get("code"), str(detail.get("message", ""))[:300]
    return None, str(detail)[:300]


def _invoice(row: dict[str, Any]) -> Invoice:
    decoded = bolt11.decode(row["bolt11"])
    paid_at = row.get("paid_at")
    return Invoice(
        bolt11=row["bolt11"],
        payment_hash=row["payment_hash"],
        amount_msat=_msat(row["amount_msat"]),
        expiry_s=int(decoded.expiry),
        created_at=int(decoded.date),
        state=_INVOICE_STATES.get(row["status"], InvoiceState.OPEN),
        memo=row.get("description", ""),
        amount_paid_msat=_msat(row.get("amount_received_msat", 0)),
        settled_at=None if paid_at is None else int(paid_at),
    )


def _channel(row: dict[str, Any]) -> Channel:
    total = _msat(row["total_msat"])
    to_us = _msat(row["to_us_msat"])
    return Channel(
        channel_id=str(row.get("short_channel_id") or row["channel_id"]),
        channel_point=f"{row['funding_txid']}:{row['funding_outnum']}",
        peer_pubkey=row["peer_id"],
        capacity_sat=total // 1000,
        local_balance_sat=to_us // 1000,
        remote_balance_sat=(total - to_us) // 1000,
        active=row.get("state") == "CHANNELD_NORMAL" and bool(row.get("peer_connected", True)),
        confirmations=None,
    )
