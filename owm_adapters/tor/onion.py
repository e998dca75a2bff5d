"""The coordinator's Tor v3 onion service, through the ``tor`` binary's control port (``stem``;
SRS-COORD-07/08/09).

:class:`OnionService` connects to a running tor (its ``ControlSocket`` or ``ControlPort``, cookie
or no authentication: Debian's ``tor`` package) or, with ``launch``, starts ``tor`` itself with a
``DataDirectory`` and ``ControlSocket`` of its own under the coordinator's data directory.
Then it asks for the hidden service with ``SETCONF HiddenServiceDir`` / ``HiddenServicePort``
(stem's ``create_hidden_service``): tor keeps the service's ed25519 key in that directory, so the
``.onion`` address stays the same across restarts, and writes ``<dir>/hostname``, which is read
and logged at start (SRS-COORD-09). The virtual port (9002 by default) forwards to the local-only
port the coordinator's gRPC server listens on (SRS-COORD-08).

``disable_network`` (``DisableNetwork 1``) lets tests run tor offline: the service, its key and
hostname are created before any network bootstrap, but nobody can reach it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from owm_adapters.files import private_directory
from owm_core.errors import DomainError

log = logging.getLogger(__name__)

HOSTNAME_WAIT_S = 30.0


class TorUnavailable(DomainError):
    """tor could not be reached, started or asked for the onion service."""

    code = "tor-unavailable"


class OnionService:
    """The :class:`owm_core.ports.tor.OnionService` port: the onion service forwarding
    ``virtual_port`` to ``target_host`` and the local port given to :meth:`start`."""

    def __init__(
        self,
        hidden_service_dir: Path,
        target_host: str = "127.0.0.1",
        *,
        virtual_port: int = 9002,
        control_socket: str = "",
        control_port: str = "",
        launch: bool = False,
        tor_binary: str = "tor",
        data_dir: Path | None = None,
        disable_network: bool = False,
    ) -> None:
        self.hidden_service_dir = hidden_service_dir
        self.target_host = target_host.strip("[]")
        self.target_port: int | None = None
        self.virtual_port = virtual_port
        self.control_socket = control_socket
        self.control_port = control_port
        self.launch = launch
        self.tor_binary = tor_binary
        self.data_dir = data_dir
        self.disable_network = disable_network
        self.hostname: str | None = None
        self._process: Any = None
        self._controller: Any = None

    @property
    def address(self) -> str:
        """``<hostname>:<virtual port>``, what nodes dial through Tor (after :meth:`start`)."""
        if self.hostname is None:
            raise TorUnavailable("the onion service is not started")
        return f"{self.hostname}:{self.virtual_port}"

    def _launch(self) -> str:
        import stem.process

        if self.data_dir is None:
            raise TorUnavailable("launching tor needs a data directory")
        private_directory(self.data_dir)
        socket_path = str(self.data_dir / "control")
        config = {
            "DataDirectory": str(self.data_dir), "ControlSocket": socket_path,
            "CookieAuthentication": "1", "SocksPort": "0", "Log": "notice stdout",
            "DisableNetwork": "1" if self.disable_network else "0",
        }
        try:
            self._process = stem.process.launch_tor_with_config(
                config=config, tor_cmd=self.tor_binary, completion_percent=0,
                take_ownership=True, timeout=60,
            )
        except OSError as exc:
            raise TorUnavailable(f"cannot start {self.tor_binary}: {exc}") from None
        return socket_path

    def _connect(self, socket_path: str) -> Any:
        import stem
        import stem.connection
        import stem.control

        try:
            if socket_path:
                controller = stem.control.Controller.from_socket_file(socket_path)
            else:
                host, _, port = (self.control_port or "127.0.0.1:9051").rpartition(":")
                controller = stem.control.Controller.from_port(address=host, port=int(port))
            controller.authenticate()
        except (stem.SocketError, stem.connection.AuthenticationFailure, ValueError) as exc:
            where = socket_path or self.control_port or "127.0.0.1:9051"
            raise TorUnavailable(f"cannot use tor's control port at {where}: {exc}") from None
        return controller

    def start(self, local_port: int) -> str:
        """Reach (or launch) tor, publish ``target_host:local_port`` as the service, read and
        log its hostname; the hostname."""
        import stem

        if not 0 < local_port < 65536:
            raise TorUnavailable(f"the onion service's local port must be 1 to 65535, got "
                                 f"{local_port}")
        self.target_port = local_port
        socket_path = self._launch() if self.launch else self.control_socket
        self._controller = self._connect(socket_path)
        private_directory(self.hidden_service_dir)
        try:
            self._controller.create_hidden_service(
                str(self.hidden_service_dir), self.virtual_port,
                target_address=self.target_host, target_port=local_port,
            )
        except stem.ControllerError as exc:
            self.stop()
            raise TorUnavailable(f"tor refused the onion service: {exc}") from None
        self.hostname = self._read_hostname()
        log.info("onion service %s:%d -> %s:%d (hostname read from %s)", self.hostname,
                    self.virtual_port, self.target_host, local_port,
                    self.hidden_service_dir / "hostname")
        return self.hostname

    def _read_hostname(self) -> str:
        path = self.hidden_service_dir / "hostname"
        deadline = time.monotonic() + HOSTNAME_WAIT_S
        while True:
            try:
                hostname = path.read_text(encoding="ascii").strip()
            except OSError:
                hostname = ""
            if hostname.endswith(".onion") and len(hostname) == 62:
                return hostname
            if time.monotonic() > deadline:
                self.stop()
                raise TorUnavailable(f"tor wrote no v3 hostname to {path}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Drop the service from tor's configuration and stop a tor this object launched."""
        controller, self._controller = self._controller, None
        if controller is not None:
            try:
                controller.remove_hidden_service(str(self.hidden_service_dir))
            except Exception:  # tor gone already: nothing to remove
                log.debug("could not remove the onion service from tor", exc_info=True)
            controller.close()
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
