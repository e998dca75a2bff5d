"""The devnet's processes: started in the background, found again, stopped cleanly.

Each process (``coordinator``, ``node-1`` … ``node-N``, ``traffic``) runs in its own session
(so a Ctrl-C in the terminal that ran ``owm devnet up`` does not reach it, and a stop signal
reaches its whole process group), writes stdout and stderr to ``logs/NAME.log`` and is recorded
in ``run/NAME.pid``. A pid file is trusted only while that pid is alive, not a zombie, and its
command line still names this devnet's data directory — a recycled pid is never signalled.

Stopping sends SIGTERM (the daemons drain: nodes finish their running task, the coordinator
flushes heartbeats), waits, and sends SIGKILL to what is left; it is idempotent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from owm_adapters.devnet.layout import DevnetError, DevnetLayout, DevnetState

COORDINATOR = "coordinator"
TRAFFIC = "traffic"
#: Environment variables that would override a devnet's generated configuration.
_OVERRIDES = ("OWM_COORDINATOR_URL", "OWM_IDENTITY_KEY_PATH", "OWM_MODEL_CACHE_DIR")


_children: list[subprocess.Popen[bytes]] = []


class DevnetNotReady(DevnetError):
    """A devnet process exited or did not become ready in time."""

    code = "devnet-not-ready"


@attrs.frozen
class Running:
    """A devnet process found alive through its pid file."""

    name: str
    pid: int


def process_names(state: DevnetState) -> list[str]:
    """Every process of the devnet, in start order."""
    return [COORDINATOR, *(node.name for node in state.nodes), TRAFFIC]


@attrs.frozen
class DevnetProcess:
    """One process of a devnet: its name (``coordinator``, ``node-K``, ``traffic``; also its log
    and pid file) and its command line, the same program an operator runs."""

    name: str
    argv: tuple[str, ...]


def commands(layout: DevnetLayout, state: DevnetState) -> tuple[DevnetProcess, ...]:
    """Every process of the devnet in start order: the coordinator, the nodes, the traffic."""
    bin_dir = Path(sys.executable).parent
    coordinator = DevnetProcess(COORDINATOR, (
        *_program(bin_dir, "owm-coordinator", "owm_cli.coordinator"),
        "serve", "--config", str(layout.coordinator_config),
    ))
    nodes = tuple(
        DevnetProcess(node.name, (
            *_program(bin_dir, "owm-node", "owm_cli.node"),
            "start", "--config", str(layout.node_config(node.name)),
        ))
        for node in state.nodes
    )
    traffic = DevnetProcess(TRAFFIC, (
        *_program(bin_dir, "owm", "owm_cli.main"), "devnet", "traffic",
        "--data-dir", str(layout.root),
    ))
    return (coordinator, *nodes, traffic)


def _program(bin_dir: Path, script: str, module: str) -> list[str]:
    """The console script beside this interpreter, else the module's ``cli`` run by it."""
    path = bin_dir / script
    if path.exists():
        return [str(path)]
    return [sys.executable, "-c", f"from {module} import cli; cli()"]


def child_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of devnet processes: this one's, without variables that would
    override the generated configuration, with unbuffered Python output."""
    env = {k: v for k, v in (base if base is not None else os.environ).items()
           if k not in _OVERRIDES}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(layout: DevnetLayout, name: str, argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Start ``argv`` in the background in its own session; log and pid file under ``layout``."""
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = layout.log_file(name)
    with open(log_path, "ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        child = subprocess.Popen(  # noqa: S603 (our own programs, no shell)
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=layout.root,
            env=dict(env),
            start_new_session=True,
        )
    _children.append(child)  # reaped by subprocess's own clean-up while this process lives
    layout.pid_file(name).write_text(f"{child.pid}\n", encoding="ascii")
    return child.pid


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, which only waits to be reaped, counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    fields = stat.rpartition(")")[2].split()
    return not (fields and fields[0] in {"Z", "X"})


def _belongs(layout: DevnetLayout, pid: int) -> bool:
    """Whether ``pid``'s command line names this devnet's data directory."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return sys.platform != "linux"  # no /proc to check: trust the pid file
    return str(layout.root).encode() in cmdline


def running(layout: DevnetLayout, names: Sequence[str] | None = None) -> list[Running]:
    """The devnet processes alive now; stale pid files are removed on the way."""
    if names is None:
        names = sorted(p.stem for p in layout.run_dir.glob("*.pid")) if layout.run_dir.is_dir() \
            else []
    found = []
    for name in names:
        path = layout.pid_file(name)
        try:
            pid = int(path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            continue
        if is_alive(pid) and _belongs(layout, pid):
            found.append(Running(name, pid))
        else:
            path.unlink(missing_ok=True)
    return found


def stop(
    layout: DevnetLayout,
    order: Sequence[Sequence[str]] | None = None,
    *,
    grace_s: float = 30.0,
    say: Callable[[str], None] = lambda _line: None,
) -> list[str]:
    """Stop the devnet's processes, group by group (SIGTERM, wait, SIGKILL); return the names.

    ``order`` lists groups stopped one after the other (default: traffic, then the nodes —
    which drain — then the coordinator, then anything else with a pid file).
    """
    alive = {p.name: p for p in running(layout)}
    if order is None:
        nodes = sorted(n for n in alive if n.startswith("node-"))
        order = [[TRAFFIC], nodes, [COORDINATOR]]
    groups = [[alive[n] for n in group if n in alive] for group in order]
    listed = {p.name for group in groups for p in group}
    groups.append([p for name, p in sorted(alive.items()) if name not in listed])
    stopped = []
    for group in groups:
        if not group:
            continue
        for process in group:
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in group:
            while is_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if is_alive(process.pid):
                say(f"{process.name} did not stop within {grace_s:.0f} s; killing it")
                _signal_group(process.pid, signal.SIGKILL)
                kill_deadline = time.monotonic() + 10
                while is_alive(process.pid) and time.monotonic() < kill_deadline:
                    time.sleep(0.05)
            layout.pid_file(process.name).unlink(missing_ok=True)
            stopped.append(process.name)
            say(f"stopped {process.name} (pid {process.pid})")
    return stopped


def _signal_group(pid: int, signum: int) -> None:
    """Signal the process group a devnet process leads (it started its own session)."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, signum)


def log_tail(layout: DevnetLayout, name: str, lines: int = 15) -> str:
    """The last lines of a process's log (for error messages)."""
    try:
        text = layout.log_file(name).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def wait_until(
    layout: DevnetLayout,
    name: str,
    pid: int,
    check: Callable[[], Any],
    timeout_s: float,
    what: str,
) -> Any:
    """Poll ``check`` until it returns something truthy; fail if ``pid`` dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if not is_alive(pid):
            raise DevnetNotReady(
                f"{name} exited before {what}; its log ({layout.log_file(name)}) ends with:\n"
                + log_tail(layout, name)
            )
        if time.monotonic() > deadline:
            raise DevnetNotReady(
                f"{name} did not report {what} within {timeout_s:.0f} s; its log "
                f"({layout.log_file(name)}) ends with:\n" + log_tail(layout, name)
            )
        time.sleep(0.2)


def http_json(url: str, *, headers: Mapping[str, str] | None = None, timeout_s: float = 3.0,
              body: Any = None, method: str | None = None,
              raw_body: bytes | None = None) -> tuple[int, Any]:
    """``(status, JSON body)`` of a request to a devnet process; ``(0, None)`` when unreachable.

    Error statuses are returned, not raised (a node's /health answers 503 while not serving).
    ``raw_body`` is sent byte for byte (a signed webhook delivery) instead of ``body``.
    """
    data = raw_body if raw_body is not None else (
        None if body is None else json.dumps(body).encode()
    )
    request = urllib.request.Request(  # noqa: S310 (loopback URLs of the devnet)
        url, data=data, headers=dict(headers or {}), method=method
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:  # noqa: S310
            return reply.status, _decode(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _decode(exc.read())
    except (OSError, ValueError):
        return 0, None


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
