"""``owm-node status``: what this node knows about itself, and what its coordinator says.

Local facts come from owm.toml and the data directory (identity, configured coordinator and
its pinned TLS fingerprint, the task log's earnings); the registration and stake state is asked
from the coordinator's StakeStatus RPC within a short timeout (SRS-NODE-11/12). An unreachable
or unconfigured coordinator is part of the report, not a failure: the command still answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from owm_adapters.bootstrap.node import (
    client_tls,
    coordinator_public_key,
    coordinator_url,
    load_node_identity,
)
from owm_adapters.bootstrap.settings import ConfigError, NodeSettings
from owm_adapters.clock import SystemClock
from owm_adapters.node.task_log import LOG_FILE, TaskLog
from owm_adapters.storage import keystore
from owm_core.errors import DomainError
from owm_core.nodes.control_plane import ControlPlaneUnavailable
from owm_core.ports.control_plane import ControlPlane

STATUS_TIMEOUT_S = 3.0


def node_status(
    settings: NodeSettings, control: ControlPlane | None = None,
    timeout_s: float = STATUS_TIMEOUT_S,
) -> dict[str, Any]:
    """The report of ``owm-node status`` as plain data (rendered as text or JSON)."""
    key_path = keystore.default_key_path(settings.node.identity_key)
    report: dict[str, Any] = {
        "identity": {"key_path": str(key_path), "node_id": None, "public_key": None},
        "coordinator": {
            "url": coordinator_url(settings),
            "tls_fingerprint": settings.coordinator.tls_fingerprint or None,
            "public_key": settings.coordinator.public_key or None,
            "reachable": None, "problem": None, "stake": None,
        },
        "earnings": _earnings(settings),
    }
    if not Path(key_path).exists():
        report["coordinator"]["problem"] = "no identity yet (run `owm-node init`)"
        return report
    identity = load_node_identity(settings)
    report["identity"].update(node_id=identity.node_id, public_key=identity.public_key_hex)
    link = report["coordinator"]
    try:
        if control is None:
            from owm_adapters.control_plane.grpc_client import GrpcControlPlane

            tls = client_tls(settings, identity, SystemClock().now())
            control = GrpcControlPlane(link["url"], settings.coordinator.socks5_proxy,
                                       timeout_s, tls=tls,
                                       coordinator_public_key=coordinator_public_key(settings))
        link["stake"] = attrs.asdict(control.stake_status(identity.public_key_hex))
        link["reachable"] = True
    except ConfigError as exc:
        link["problem"] = exc.message
    except ControlPlaneUnavailable as exc:
        link["reachable"] = False
        link["problem"] = f"coordinator unreachable: {exc.message}"
    except DomainError as exc:
        link["reachable"] = True
        link["problem"] = f"coordinator refused: {exc.message}"
    finally:
        close = getattr(control, "close", None)
        if close is not None:
            close()
    return report


def _earnings(settings: NodeSettings) -> dict[str, int]:
    path = Path(settings.node.data_dir).expanduser() / LOG_FILE
    if not path.exists():
        return {"credited_msat": 0, "pending_msat": 0, "credited_tasks": 0, "pending_tasks": 0}
    task_log = TaskLog(path)
    try:
        e = task_log.earnings()
    finally:
        task_log.close()
    return {"credited_msat": e.credited_msat, "pending_msat": e.pending_msat,
            "credited_tasks": e.credited_tasks, "pending_tasks": e.pending_tasks}
