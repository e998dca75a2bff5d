"""A local ``clnrest`` (Core Lightning's REST plugin) over HTTPS, in front of a :class:`FakeCln`.

Behaves as clnrest does (ElementsProject/lightning ``plugins/rest-plugin/src/handlers.rs``
``post_rpc_method`` and ``shared.rs`` ``verify_rune``): ``POST /v1/<method>`` with the
parameters as a JSON body and the rune in the ``Rune`` header; the rune is checked like
lightningd's ``checkrune`` (``lightningd/runes.c``) before the method runs on the fake node.
Runes are real CLN runes, made and verified with the ``runes`` package (Rusty Russell's
reference implementation) from this server's master secret, each with a unique id first as
``createrune`` makes them. Answers: ``201`` + result; ``403`` ``{"code": 1501, "message": "Not
authorized: Missing rune"}``; ``401`` with checkrune's error (1501 not derived from master,
1502 not permitted); ``404`` -32601 for an unknown method; ``500`` with the RPC error otherwise.

TLS: clnrest serves ``server.pem`` signed by its ``ca.pem``; here one self-signed certificate
(the fake LND's helper) is both, written as ``ca.pem`` / ``server.pem`` / ``server-key.pem``
into the directory given, like clnrest's ``clnrest-certs`` directory.
"""

from __future__ import annotations

import json
import os
import ssl
import string
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
from runes import Alternative, MasterRune, Restriction, Rune

from tests.fakes.cln_server import ClnError, FakeCln
from tests.fakes.lnd_server import self_signed_certificate


@attrs.frozen
class RestCall:
    """One request clnrest received (the rune itself is not kept)."""

    method: str
    params: Any
    rune_sent: bool
    rune_id: str | None
    status: int


class FakeClnRest:
    """clnrest for one :class:`FakeCln`, on ``https://127.0.0.1:<free port>``."""

    def __init__(self, backend: FakeCln, certs_dir: Path, *, master_secret: bytes | None = None,
                 echo_rune_in_errors: bool = False) -> None:
        """``echo_rune_in_errors`` makes refusals quote the rune, as lightningd in developer
        mode quotes a bad parameter's token (common/json_command.c): for redaction tests."""
        self.backend = backend
        self.echo_rune_in_errors = echo_rune_in_errors
        self.master = MasterRune(master_secret or os.urandom(32))
        self.calls: list[RestCall] = []
        self._next_id = 0
        self._lock = threading.Lock()
        key_pem, cert_pem = self_signed_certificate()
        certs_dir.mkdir(parents=True, exist_ok=True)
        self.ca_file = certs_dir / "ca.pem"
        self.ca_file.write_bytes(cert_pem)
        (certs_dir / "server.pem").write_bytes(cert_pem)
        (certs_dir / "server-key.pem").write_bytes(key_pem)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(certs_dir / "server.pem", certs_dir / "server-key.pem")
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                status, answer = fake._post(self.path, self.headers.get("rune"),
                                            self.rfile.read(int(self.headers["Content-Length"]
                                                                or 0)))
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that refuses our certificate ends the handshake: expected, quiet.
                fake.connection_errors.append(repr(sys.exc_info()[1]))

        self.connection_errors: list[str] = []
        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # The handshake happens in the handler's thread, on the first read.
        self.server.socket = tls.wrap_socket(
            self.server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> FakeClnRest:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def create_rune(self, restrictions: Sequence[Sequence[str]] = ()) -> str:
        """Like ``lightning-cli createrune restrictions='[["method=close"], ...]'``: a new
        rune of this node (next unique id), one restriction per inner list of alternatives."""
        with self._lock:
            unique_id = self._next_id
            self._next_id += 1
        rune = self.master.copy()
        rune.add_restriction(Restriction.unique_id(unique_id))
        for alternatives in restrictions:
            rune.add_restriction(Restriction([Alternative.from_str(a) for a in alternatives]))
        return str(rune.to_base64())

    # -- clnrest ----------------------------------------------------------------------------

    def _post(self, path: str, rune: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        method = path.removeprefix("/v1/")
        params: Any = json.loads(body) if body.strip() else {}
        status, answer, rune_id = self._answer(method, params, rune)
        self.calls.append(RestCall(method, params, rune is not None, rune_id, status))
        return status, answer

    def _answer(self, method: str, params: Any, rune: str | None
                ) -> tuple[int, dict[str, Any], str | None]:
        if "/" in method or not method:
            return 404, {"code": -32601, "message": "Path not registered", "data": None}, None
        if rune is None:
            return 403, {"code": 1501, "message": "Not authorized: Missing rune",
                         "data": None}, None
        try:
            parsed = Rune.from_base64(rune)
        except Exception:
            return 401, {"code": -32602, "message": "rune: should be base64 string",
                         "data": None}, None
        if not self.master.is_rune_authorized(parsed):
            text = "Not authorized: Not derived from master"
            if self.echo_rune_in_errors:
                text += f": invalid token '{rune}'"
            return 401, {"code": 1501, "message": text, "data": None}, None
        met, why = parsed.are_restrictions_met(_checkrune_values(method, params))
        if not met:
            return 401, {"code": 1502, "message": f"Not permitted: {why}", "data": None}, None
        rune_id = parsed.restrictions[0].alternatives[0].value
        handler = getattr(self.backend, "rpc_" + method, None)
        if handler is None:
            return 404, {"code": -32601, "message": f"Unknown command '{method}'",
                         "data": None}, rune_id
        try:
            result = handler(**params) if isinstance(params, dict) else handler(*params)
        except ClnError as error:
            return 500, {"code": error.code, "message": error.message, "data": None}, rune_id
        except TypeError as error:
            return 500, {"code": -32602, "message": str(error), "data": None}, rune_id
        return 201, result, rune_id


def _checkrune_values(method: str, params: Any) -> dict[str, Any]:
    """The fields lightningd's checkrune tests restrictions against (``check_condition`` in
    lightningd/runes.c): method, pnum, time, ``pname<name>`` (also with punctuation removed)
    or ``parr<index>``; ``id`` is absent (clnrest passes no peer id)."""
    values: dict[str, Any] = {"method": method, "pnum": len(params), "time": int(time.time())}

    def plain(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | str):
            return json.dumps(value)
        return value

    if isinstance(params, dict):
        for name, value in params.items():
            values["pname" + name] = plain(value)
            stripped = "".join(c for c in name if c not in string.punctuation)
            values["pname" + stripped] = plain(value)
    else:
        for index, value in enumerate(params):
            values[f"parr{index}"] = plain(value)
    return values
