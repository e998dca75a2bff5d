"""Run OWM's Flower App on Flower's deployment engine on this machine (loopback only).

:class:`LocalFederation` starts one ``flower-superlink`` and N ``flower-supernode`` processes
(``--insecure``, runtime dependency installation disabled: the app's code is the installed
``owm`` package), then submits :data:`APP_DIR` with ``flwr run`` through a SuperLink connection
written to a private ``FLWR_HOME``. Every process is started in its own session and stopped
(SIGTERM, then SIGKILL) by :meth:`LocalFederation.close`. Across machines the same commands
apply with TLS certificates instead of ``--insecure``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

APP_DIR = Path(__file__).parent / "app"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class LocalFederation:
    """A SuperLink and ``supernodes`` SuperNodes on loopback, under ``workdir``."""

    def __init__(self, workdir: Path, supernodes: int = 2) -> None:
        self.workdir = workdir
        self.supernodes = supernodes
        self.port = free_port()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.flwr_home = workdir / "flwr-home"
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        (self.flwr_home / "config.toml").write_text(
            '[superlink]\ndefault = "owm-local"\n\n'
            f'[superlink.owm-local]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "FLWR_HOME": str(self.flwr_home),
            "PYTHONUNBUFFERED": "1",
            # The SuperLink and SuperNodes start flower-superexec and flwr-* by name.
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        }

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(  # noqa: S603 (argv of the venv's own Flower executables)
            args,
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(proc)
        return proc

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the SuperLink, wait for its port, then start the SuperNodes."""
        self._spawn(
            "superlink",
            [
                _bin("flower-superlink"),
                "--insecure",
                "--disable-runtime-dependency-installation",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
        )
        deadline = time.monotonic() + timeout_s
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"flower-superlink did not listen on {self.port}")
            time.sleep(0.2)
        for i in range(self.supernodes):
            self._spawn(
                f"supernode-{i}",
                [
                    _bin("flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{self.port}",
                    "--port",
                    str(free_port()),
                    "--node-config",
                    f"partition-id={i}",
                ],
            )

    def run_app(self, run_config: dict[str, Any], timeout_s: float = 50.0) -> dict[str, Any]:
        """``flwr run`` the app with ``run_config`` overrides; return its result JSON."""
        result_path = self.workdir / "result.json"
        overrides = {**run_config, "result-path": str(result_path)}
        config_arg = " ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items())
        submit = subprocess.run(  # noqa: S603 (argv of the venv's own flwr executable)
            [_bin("flwr"), "run", str(APP_DIR), "owm-local", "--run-config", config_arg],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        if submit.returncode != 0:
            raise RuntimeError(f"flwr run failed: {submit.stdout!r} {submit.stderr!r}")
        deadline = time.monotonic() + timeout_s
        while not result_path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the FL run did not finish in time:\n" + self.logs())
            time.sleep(0.25)
        time.sleep(0.1)
        return dict(json.loads(result_path.read_text()))

    def logs(self) -> str:
        """The processes' logs (for failure messages)."""
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.workdir.glob("*.log"))
        )

    def close(self) -> None:
        """Stop every process this federation started, and their descendants.

        Flower detaches ``flower-superexec`` into a session of its own, so process groups
        are not enough: descendants are found through ``/proc`` before anything is stopped.
        """
        roots = [p.pid for p in self.processes if p.poll() is None]
        pids = _descendants(roots) + roots
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)
        for pid in pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.processes.clear()

    def __enter__(self) -> LocalFederation:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def _descendants(roots: list[int]) -> list[int]:
    """Every live descendant of ``roots`` (Linux ``/proc``), deepest last."""
    tree = _children()
    found: list[int] = []
    todo = list(roots)
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return status != "Z"
