"""What ``owm devnet status`` reports, gathered from the running devnet (read-only).

Sources, each the one an operator would look at:

* the pid files (which processes run);
* the coordinator's public API with the devnet's API key: network totals, each node's status
  and earnings (``/v1/nodes/{id}/status``), model versions and their proof status, the
  slashing log, and — when the coordinator serves them — FL rounds (``/v1/fl/rounds``);
* each node's ``/health`` (state, tier, stake) and its own task log (credited work);
* the embedded Lightning ledger: what each node's Lightning node has actually received;
* ``traffic.json``, the traffic loop's account of its tasks and of the last sample query;
* the pool's public mining endpoints (``/v1/mining/stats``, each node's
  ``/v1/mining/nodes/{id}``) and the embedded regtest chain's height: shares, hashrate,
  blocks found and the FPPS payouts made over the embedded ledger (SRS-POOL-04/10).

Everything is returned as one JSON-ready dict (``owm devnet status --json`` prints it as is).
"""

from __future__ import annotations

from typing import Any

from owm_adapters.devnet.layout import DevnetLayout, DevnetState, NodeEntry, read_json
from owm_adapters.devnet.processes import http_json, process_names, running


def collect(layout: DevnetLayout, state: DevnetState) -> dict[str, Any]:
    """The devnet's status now (see the module docstring for where each part comes from)."""
    alive = {p.name: p.pid for p in running(layout, process_names(state))}
    api = state.api_url
    headers = {"Authorization": f"Bearer {state.api_key}"}
    code, stats = http_json(f"{api}/v1/network/stats", headers=headers)
    api_up = code == 200
    report: dict[str, Any] = {
        "data_dir": str(layout.root),
        "created_at": state.created_at,
        "api_url": f"{api}/v1",
        "dashboard_url": f"{api}/dashboard",
        "processes": {
            name: {"alive": name in alive, "pid": alive.get(name)}
            for name in process_names(state)
        },
        "api_reachable": api_up,
        "network": stats if api_up else None,
        "nodes": [_node(layout, state, node, headers, api_up) for node in state.nodes],
    }
    report["payments"] = {
        "paid_over_lightning_sat": sum(n["ln_received_sat"] or 0 for n in report["nodes"]),
        "credited_tasks": sum(n["credited_tasks"] for n in report["nodes"]),
        "pending_tasks": sum(n["pending_tasks"] for n in report["nodes"]),
    }
    report["model_versions"] = _listed(api, "/v1/model/versions", "versions", headers, api_up)
    report["fl_rounds"] = _listed(api, "/v1/fl/rounds", "rounds", headers, api_up)
    report["slashing_log"] = _listed(api, "/v1/network/slashing-log", "entries", headers,
                                     api_up)
    report["traffic"] = read_json(layout.traffic_file)
    report["mining"] = _mining(layout, state, headers, api_up)
    return report


def _mining(
    layout: DevnetLayout, state: DevnetState, headers: dict[str, str], api_up: bool
) -> dict[str, Any] | None:
    """The pool's figures, its FPPS payouts and each node's mining; None without a pool."""
    if not state.coordinator.pool_port:
        return None
    api = state.api_url
    stats = None
    miners: dict[str, Any] = {}
    if api_up:
        code, body = http_json(f"{api}/v1/mining/stats", headers=headers)
        stats = body if code == 200 and isinstance(body, dict) else None
        for node in state.nodes:
            code, body = http_json(f"{api}/v1/mining/nodes/{node.node_id}", headers=headers)
            if code == 200 and isinstance(body, dict):
                miners[node.name] = {k: v for k, v in body.items() if k != "recent_payouts"}
    return {
        "pool": stats,
        "fpps_payouts": sum(int(m.get("payouts") or 0) for m in miners.values()),
        "miners": miners,
        "chain_height": _chain_height(layout),
    }


def _chain_height(layout: DevnetLayout) -> int | None:
    """The embedded regtest chain's height (the pool's blocks and the calendar's grow it)."""
    from owm_adapters.chain.local_chain import LocalChain
    from owm_adapters.provenance.embedded import CHAIN_FILE

    path = layout.coordinator_dir / "provenance" / CHAIN_FILE
    if not path.exists():
        return None
    try:
        return LocalChain(path).tip_height()
    except Exception:  # being created right now: no height to show yet
        return None


def _listed(api: str, path: str, key: str, headers: dict[str, str], api_up: bool) -> Any:
    """A list endpoint's items, or None when the coordinator does not serve it (yet)."""
    if not api_up:
        return None
    code, body = http_json(f"{api}{path}", headers=headers)
    if code != 200 or not isinstance(body, dict):
        return None
    items = body.get(key)
    return items if isinstance(items, list) else None


def _node(
    layout: DevnetLayout, state: DevnetState, node: NodeEntry, headers: dict[str, str],
    api_up: bool,
) -> dict[str, Any]:
    code, health = http_json(f"http://127.0.0.1:{node.health_port}/health", timeout_s=2)
    health = health if isinstance(health, dict) else None
    coordinator_view = None
    if api_up:
        code, body = http_json(f"{state.api_url}/v1/nodes/{node.node_id}/status",
                               headers=headers)
        coordinator_view = body if code == 200 and isinstance(body, dict) else None
    stake = (health or {}).get("stake") or {}
    log = _task_log(layout, node)
    attack_file = layout.node_dir(node.name) / "attack"
    try:
        attack = attack_file.read_text(encoding="utf-8").strip() or "none"
    except OSError:
        attack = "none"
    return {
        "name": node.name,
        "node_id": node.node_id,
        "state": (health or {}).get("state"),
        "tier": (health or {}).get("tier") or node.tier,
        "coordinator_status": (coordinator_view or {}).get("status"),
        # The coordinator's record is authoritative (a slashed node may not know it yet).
        "stake_status": (coordinator_view or {}).get("stake_status") or stake.get("status"),
        "stake_sat": stake.get("capacity_sat", node.stake_sat),
        "tasks_completed": (coordinator_view or {}).get("total_tasks_completed"),
        "earned_sat": (coordinator_view or {}).get("total_sats_earned"),
        "credited_msat": log["credited_msat"],
        "credited_tasks": log["credited_tasks"],
        "pending_tasks": log["pending_tasks"],
        "ln_received_sat": _received_sat(layout, state, node),
        "attack": attack,
        "health_url": f"http://127.0.0.1:{node.health_port}/health",
    }


def _task_log(layout: DevnetLayout, node: NodeEntry) -> dict[str, int]:
    """The node's own account of its work (what ``owm-node earnings`` prints)."""
    from owm_adapters.node.task_log import LOG_FILE, TaskLog

    empty = {"credited_msat": 0, "credited_tasks": 0, "pending_tasks": 0}
    path = layout.node_dir(node.name) / LOG_FILE
    if not path.exists():
        return empty
    try:
        task_log = TaskLog(path)
    except Exception:  # being created by the daemon right now: nothing to count yet
        return empty
    try:
        earnings = task_log.earnings()
    finally:
        task_log.close()
    return {
        "credited_msat": earnings.credited_msat,
        "credited_tasks": earnings.credited_tasks,
        "pending_tasks": earnings.pending_tasks,
    }


def _received_sat(layout: DevnetLayout, state: DevnetState, node: NodeEntry) -> int | None:
    """What the node's Lightning node received over its payout channel in the embedded ledger.

    The treasury funded that channel, so the node's side started at 0: all of it came in as
    reward payments (the stake channel holds no treasury balance to pay with).
    """
    from owm_adapters.lightning.embedded import SimLedger

    if not layout.ledger_file.exists():
        return None
    channels = SimLedger(layout.ledger_file).channels_of(
        node.ln_pubkey, state.coordinator.treasury_pubkey
    )
    payout = [c for c in channels if c.capacity_sat == node.payout_channel_sat]
    if not payout:
        return None
    return sum(c.local_balance_sat for c in payout)

