"""``owm devnet up --nodes 3`` end to end, with real processes.

``owm devnet up`` runs as a user runs it — a separate process that returns once the network is
up — in a temporary data directory with a fast traffic loop. Then, step by step: the
three nodes registered with verified stakes; sample tasks were executed,
verified and paid over the embedded Lightning ledger, and ``owm devnet status`` shows the
earnings of every node; the devnet's GitHub stand-in played a sample contribution whose bounty
and reward were paid; an FL round trained ``owm-base`` and its version is anchored with
OpenTimestamps (confirmed); the sample query was answered. Then ``owm devnet
attack --node 2 --kind poison`` gets node 2's updates flagged by the robust aggregation and the
node slashed in the public log. The network then degrades gracefully: new tasks are still
verified and paid (on the two nodes left) and every sample question answered before the attack
is answered after the slash. ``owm devnet down`` must leave no process behind. Whatever
happens, the devnet is torn down (and anything left is killed).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

OWM = str(Path(sys.executable).parent / "owm")
PAID_WITHIN_S = 75
FL_WITHIN_S = 90


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OWM_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def owm(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OWM, "devnet", *args], capture_output=True, text=True, timeout=timeout,
                          env=_env())


def _ours(data_dir: Path) -> list[int]:
    """Pids of live processes whose command line names ``data_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if str(data_dir).encode() in cmdline and state not in {"Z", "X"}:
            found.append(int(entry.name))
    return found


def poll(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


def _print_log_tails(logs: Path, lines: int = 40) -> None:
    """The end of every process's log, which pytest shows only when the test failed."""
    for log in sorted(logs.glob("*.log")):
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        print(f"--- last {len(tail)} lines of {log.name} ---", *tail, sep="\n")


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path / "devnet"
    try:
        started = owm("up", "--nodes", "3", "--data-dir", str(data_dir),
                      "--traffic-interval", "4", "--query-interval", "10", "--fl-interval", "10",
                      timeout=200)
        assert started.returncode == 0, started.stdout + started.stderr
        yield {"dir": data_dir, "up": started.stdout}
    finally:
        _print_log_tails(data_dir / "logs")
        owm("down", "--data-dir", str(data_dir), timeout=120)
        for pid in _ours(data_dir):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


def status(data_dir: Path) -> dict[str, Any]:
    result = owm("status", "--json", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_devnet_up_runs_the_whole_network_pays_every_node_and_down_leaves_nothing(devnet):
    data_dir: Path = devnet["dir"]
    out: str = devnet["up"]

    # Item 1: URLs and how to stop it are printed; a second `up` is refused in one line.
    api = re.search(r"API\s+(http://127\.0\.0\.1:\d+)/v1", out)
    dashboard = re.search(r"dashboard\s+(http://127\.0\.0\.1:\d+/dashboard)", out)
    assert api and dashboard, out
    assert f"owm devnet down --data-dir {data_dir}" in out
    again = owm("up", "--nodes", "3", "--data-dir", str(data_dir))
    assert again.returncode != 0
    assert len(again.stderr.strip().splitlines()) == 1 and "already up" in again.stderr

    # Item 2, step 1: nodes registered with verified stakes.
    report = status(data_dir)
    assert all(p["alive"] for p in report["processes"].values()), report["processes"]
    assert len(report["nodes"]) == 3
    for node in report["nodes"]:
        assert node["state"] == "serving", node
        assert node["coordinator_status"] == "online", node
        assert node["stake_status"] == "active" and node["stake_sat"] >= 100_000, node
    assert report["network"]["staked_sat"] == sum(n["stake_sat"] for n in report["nodes"])

    # Step 2: tasks paid over the embedded Lightning ledger, to every node.
    def all_paid() -> dict[str, Any] | None:
        current = status(data_dir)
        nodes = current["nodes"]
        if all((n["ln_received_sat"] or 0) > 0 and (n["earned_sat"] or 0) > 0 for n in nodes):
            return current
        return None

    report = poll(all_paid, PAID_WITHIN_S, "rewards paid to every node over the ledger")
    assert report["payments"]["paid_over_lightning_sat"] > 0
    assert report["traffic"]["tasks_submitted"] >= 1

    # Step 3: `owm devnet status` shows each node's earnings.
    text = owm("status", "--data-dir", str(data_dir))
    assert text.returncode == 0, text.stderr
    for node in report["nodes"]:
        row = next(line for line in text.stdout.splitlines()
                   if line.startswith(node["name"] + " "))
        assert node["node_id"][:13] in row and "serving" in row
        assert re.search(r"\s[1-9][\d,]* sat\s+[1-9][\d,]* sat\s", row), row
    assert "sat paid to nodes over the embedded Lightning ledger" in text.stdout

    # Step 3b: the devnet's GitHub stand-in played a sample contribution through the App: a
    # bounty and a contribution reward paid, announced with their payment hashes.
    def github_paid() -> dict[str, Any] | None:
        github = (status(data_dir)["traffic"] or {}).get("github") or {}
        comments = " ".join(github.get("comments", []))
        paid = "over Lightning, payment hash" in comments and "Contribution recorded" in comments
        return github if paid else None

    github = poll(github_paid, 120, "a sample bounty and contribution reward paid")
    assert github["deliveries_refused"] == 0, github
    shown = owm("status", "--data-dir", str(data_dir)).stdout
    assert "sample contribution(s) on owm-devnet/sample" in shown and "payment hash" in shown

    # Step 4: an FL round trained owm-base and its new version is anchored with OTS.
    def stamped() -> tuple[dict[str, Any], dict[str, Any]] | None:
        current = status(data_dir)
        versions = {v["id"]: v for v in current["model_versions"] or []}
        for fl_round in current["fl_rounds"] or []:
            version = versions.get(fl_round["version"] or "")
            if fl_round["state"] == "closed" and version and version["ots_status"] == "confirmed":
                return fl_round, version
        return None

    fl_round, version = poll(stamped, FL_WITHIN_S, "an FL round with a confirmed OTS stamp")
    assert fl_round["participants"] == 3 and fl_round["accuracy"] is not None
    assert version["sub_model"] == "owm-base" and version["ots_verified"] is True

    # Step 5: the sample query answered through the API by the conglomerate.
    def answered_questions() -> dict[str, Any] | None:
        answers = (status(data_dir)["traffic"] or {}).get("answers") or {}
        return {q: a for q, a in answers.items() if a.get("answered")} or None

    answered_before = poll(answered_questions, 120, "a sample question answered")
    for entry in answered_before.values():
        assert entry["answer"] and entry["status"] == 200 and entry["confidence"] > 0

    # Item 4: node 2 poisons its FL updates; robust aggregation flags them, and after three
    # signals the tier-1 node is slashed in the public, signed slashing log.
    attacked = owm("attack", "--node", "2", "--kind", "poison", "--data-dir", str(data_dir))
    assert attacked.returncode == 0, attacked.stderr
    poisoner = next(n["node_id"] for n in report["nodes"] if n["name"] == "node-2")

    def flagged() -> dict[str, Any] | None:
        rounds = status(data_dir)["fl_rounds"] or []
        return next((r for r in rounds if poisoner in (r.get("flagged") or [])), None)

    poisoned_round = poll(flagged, 2 * FL_WITHIN_S, "an FL round flagging the poisoned update")
    # Three participants allow a trimmed mean with f = 1: the poisoned coordinates are trimmed
    # away, so the model keeps its accuracy although the update was admitted.
    assert poisoned_round["state"] == "closed" and poisoned_round["accuracy"] is not None
    assert poisoned_round["accuracy"] >= 0.8 * fl_round["accuracy"], poisoned_round

    def slashed() -> dict[str, Any] | None:
        entries = status(data_dir)["slashing_log"] or []
        return next((e for e in entries if e.get("node_id") == poisoner), None)

    entry = poll(slashed, 2 * FL_WITHIN_S, "the poisoner's slashing decision in the public log")
    assert entry["reason"] in {"poisoned_update", "fake_proof"}
    stake = next(n for n in status(data_dir)["nodes"] if n["node_id"] == poisoner)
    assert stake["stake_status"] == "slashed", stake

    # Item 5: the network degrades gracefully. Two nodes are left of three: new tasks run on
    # both (the redundancy floor), are verified and paid, and every sample question answered
    # before the attack is answered again after the slash.
    slashed_at = time.time()
    at_slash = status(data_dir)
    errors_at_slash = at_slash["traffic"]["task_errors"]
    # Earnings are counted from the first task submitted after the slash, so that rewards of
    # work already in flight at the slash do not pass for new work.
    submitted = at_slash["traffic"]["tasks_submitted"]
    new_task = poll(
        lambda: (current := status(data_dir))["traffic"]["tasks_submitted"] > submitted and current,
        PAID_WITHIN_S, "a task submitted after the slash")
    earned = {n["node_id"]: n["earned_sat"] or 0 for n in new_task["nodes"]}

    def honest_paid_again() -> dict[str, Any] | None:
        current = status(data_dir)
        honest = [n for n in current["nodes"] if n["node_id"] != poisoner]
        if all((n["earned_sat"] or 0) > earned[n["node_id"]] for n in honest):
            return current
        return None

    poll(honest_paid_again, PAID_WITHIN_S, "new tasks paid to the two nodes left")

    def answered_again() -> dict[str, Any] | None:
        answers = status(data_dir)["traffic"].get("answers") or {}
        fresh = {q: answers.get(q) or {} for q in answered_before}
        if all(a.get("at", 0) > slashed_at and a.get("answered") for a in fresh.values()):
            return fresh
        return None

    fresh = poll(answered_again, 180, "each sample question answered again after the slash")
    for question, entry in fresh.items():
        assert entry["status"] == 200 and entry.get("answered") is True, (question, entry)
        assert entry["confidence"] > 0, (question, entry)
    assert status(data_dir)["traffic"]["task_errors"] == errors_at_slash  # none refused

    # The dashboard is served by the coordinator.
    with urllib.request.urlopen(dashboard.group(1), timeout=5) as reply:
        assert reply.status == 200 and b"hx-get" in reply.read()

    # Mining: every node mines on the devnet's Stratum V2 pool; `owm devnet status` shows the
    # shares, hashrate and blocks found on the regtest chain, and the FPPS payouts each block
    # made due, paid over the embedded ledger within seconds (the sweep runs every 10 s).
    def mined() -> dict[str, Any] | None:
        mining = status(data_dir)["mining"]
        pool = mining["pool"] or {}
        done = (pool.get("blocks_30d", 0) >= 1 and pool.get("miners_24h", 0) >= 1
                and pool.get("paid_sat_total", 0) >= 1 and mining["fpps_payouts"] >= 1)
        return mining if done else None

    mining = poll(mined, 120, "blocks mined on the devnet's pool and FPPS payouts made")
    assert mining["pool"]["shares_24h"] >= mining["pool"]["blocks_30d"] >= 1
    assert mining["pool"]["hashrate_1h_hps"] > 0
    assert mining["chain_height"] >= mining["pool"]["blocks_30d"]
    assert any(m["paid_sat"] > 0 for m in mining["miners"].values())
    printed = owm("status", "--data-dir", str(data_dir))
    assert "FPPS payout(s) over the embedded ledger" in printed.stdout, printed.stdout

    # `down` stops everything; again is harmless.
    pids = [p["pid"] for p in report["processes"].values() if p["pid"]]
    stopped = owm("down", "--data-dir", str(data_dir), timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert "5 process(es) stopped" in stopped.stdout
    assert _ours(data_dir) == []
    assert not any(Path(f"/proc/{pid}").exists() and pid in _ours(data_dir) for pid in pids)
    again = owm("down", "--data-dir", str(data_dir))
    assert again.returncode == 0 and "nothing is running" in again.stdout
