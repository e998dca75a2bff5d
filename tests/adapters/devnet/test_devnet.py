"""The devnet's parts on their own: provisioning, process supervision, the traffic loop."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.bootstrap import devnet
from owm_adapters.bootstrap.settings import (
    NODE_TEMPLATE,
    ConfigError,
    load_coordinator_settings,
    load_node_settings,
)
from owm_adapters.control_plane.tls import fingerprint_of
from owm_adapters.devnet import processes
from owm_adapters.devnet.layout import DevnetLayout, free_ports
from owm_adapters.devnet.traffic import SampleTask, TrafficLoop
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.storage import keystore
from owm_adapters.storage.sql import open_repositories, sqlite_url
from owm_core.access.api_keys import Plan, secret_sha256
from owm_core.nodes.tiers import Tier

NOW = 1_800_000_000


def _provision(tmp_path: Path, nodes: int = 3, tier: Tier = Tier.T1) -> tuple[DevnetLayout, object]:
    layout = DevnetLayout.at(tmp_path / "devnet")
    state = devnet.provision(layout, nodes, now=NOW, traffic_interval_s=15,
                             query_interval_s=60, tier=tier)
    return layout, state


def test_a_new_devnet_has_fresh_identities_configs_its_programs_accept_and_stake_channels(
    tmp_path,
):
    layout, state = _provision(tmp_path)
    coordinator = load_coordinator_settings(layout.coordinator_config)
    assert coordinator.coordinator.api_listen == f"127.0.0.1:{state.coordinator.api_port}"
    assert coordinator.coordinator.grpc_listen == f"127.0.0.1:{state.coordinator.grpc_port}"
    assert coordinator.coordinator.data_dir == str(layout.coordinator_dir)
    assert (coordinator.tasks.verification, coordinator.tasks.redundancy) == ("redundant", 3)
    assert coordinator.tasks.redundancy_floor == 2  # one slashed node leaves two to agree
    assert coordinator.knowledge.query_timeout_s == 20  # one busy machine runs every process
    # a query a minute from one API key: one caller's share of the query budget would stop it
    assert coordinator.funding.query_share_msat_per_caller == 0
    assert (coordinator.fl.enabled, coordinator.fl.min_participants) == (True, 3)
    assert coordinator.provenance.backend == "embedded"
    # the reference ots client reaches the embedded calendar and its chain there
    assert coordinator.provenance.calendar_listen == f"127.0.0.1:{state.coordinator.calendar_port}"
    assert state.calendar_url == f"http://127.0.0.1:{state.coordinator.calendar_port}"
    assert (coordinator.knowledge.enabled, coordinator.knowledge.demo_data) == (True, True)
    signing_key = keystore.load_identity(Path(coordinator.coordinator.signing_key_path))
    assert signing_key.public_key_hex == state.coordinator.public_key
    certificate = Path(coordinator.coordinator.tls_cert_path)  # mTLS, like a real network
    assert stat.S_IMODE(Path(coordinator.coordinator.tls_key_path).stat().st_mode) == 0o600
    assert fingerprint_of(certificate.read_bytes()) == state.coordinator.tls_fingerprint

    ledger = SimLedger(layout.ledger_file)
    treasury = state.coordinator.treasury_pubkey
    assert len({n.node_id for n in state.nodes}) == 3
    for node in state.nodes:
        settings_ = load_node_settings(layout.node_config(node.name))
        key_path = Path(settings_.node.identity_key)
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        assert keystore.load_identity(key_path).node_id == node.node_id
        assert settings_.node.data_dir == str(layout.node_dir(node.name))
        assert settings_.node.health_port == node.health_port
        assert settings_.coordinator.url == f"127.0.0.1:{state.coordinator.grpc_port}"
        assert settings_.coordinator.tls_fingerprint == state.coordinator.tls_fingerprint
        assert settings_.coordinator.public_key == state.coordinator.public_key
        assert settings_.lightning.node_uri == f"{node.ln_pubkey}@{node.ln_address}"
        assert settings_.lightning.treasury_uri.startswith(treasury + "@")
        assert settings_.coordinator.api_url == state.api_url  # new model versions come here
        assert settings_.coordinator.allow_private_targets  # the devnet runs on 127.0.0.1
        assert settings_.chain.local_chain == str(
            layout.coordinator_dir / "provenance" / "chain.sqlite3"
        )
        assert Path(settings_.chain.local_chain).exists()  # nodes open it from their start
        # The commented template of `owm-node init` survives, with the devnet's values.
        assert "# Your Lightning node's URI, where rewards are paid" in \
            layout.node_config(node.name).read_text()
        channels = {c.capacity_sat: c for c in ledger.channels_of(node.ln_pubkey, treasury)}
        stake, payout = channels[100_000], channels[50_000]
        assert (stake.local_balance_sat, stake.remote_balance_sat) == (100_000, 0)
        assert (payout.local_balance_sat, payout.remote_balance_sat) == (0, 50_000)
        assert ledger.lightning(node.ln_pubkey).node_pubkey() == node.ln_pubkey  # can invoice

    ports = [state.coordinator.grpc_port, state.coordinator.api_port,
             state.coordinator.metrics_port, *(n.health_port for n in state.nodes)]
    assert len(set(ports)) == len(ports) and 0 not in ports
    assert stat.S_IMODE(layout.state_file.stat().st_mode) == 0o600
    assert layout.load() == state
    repos = open_repositories(sqlite_url(layout.coordinator_dir))
    try:
        key = repos.api_keys.get_by_secret_sha256(secret_sha256(state.api_key))
        assert key is not None and key.plan is Plan.COMMERCIAL
    finally:
        repos.close()


def test_stake_channels_lock_the_minimum_of_the_machines_tier_and_payouts_never_count_as_stake(
    tmp_path,
):
    layout, state = _provision(tmp_path, nodes=1, tier=Tier.T2)
    node = state.nodes[0]
    assert (node.tier, node.stake_sat, node.payout_channel_sat) == ("t2", 500_000, 250_000)
    coordinator = load_coordinator_settings(layout.coordinator_config)
    assert (coordinator.tasks.redundancy, coordinator.fl.min_participants) == (1, 1)
    assert coordinator.tasks.redundancy_floor == 1


def test_a_directory_holds_one_devnet_until_it_is_reset(tmp_path):
    layout, state = _provision(tmp_path, nodes=1)
    with pytest.raises(ConfigError, match="already holds a devnet"):
        devnet.provision(layout, 1, now=NOW, traffic_interval_s=15, query_interval_s=60,
                         tier=Tier.T1)
    keep = layout.root / "my-notes.txt"
    keep.write_text("mine")
    devnet.remove_devnet(layout)
    assert layout.load() is None and keep.exists()
    fresh = devnet.provision(layout, 1, now=NOW, traffic_interval_s=15, query_interval_s=60,
                             tier=Tier.T1)
    assert fresh.nodes[0].node_id != state.nodes[0].node_id


def test_new_ports_rewrite_every_config_and_keep_the_identities(tmp_path):
    layout, state = _provision(tmp_path, nodes=2)
    moved = devnet.assign_ports(state)
    devnet.write_configs(layout, moved)
    assert [n.node_id for n in moved.nodes] == [n.node_id for n in state.nodes]
    for node in moved.nodes:
        assert load_node_settings(layout.node_config(node.name)).node.health_port == \
            node.health_port


def test_a_built_devnet_says_what_it_runs_and_a_second_build_reuses_its_identities(tmp_path):
    layout, state = _provision(tmp_path, nodes=2)
    built = devnet.build_devnet(layout, 2, traffic_interval_s=7, now=lambda: NOW)
    assert not built.provisioned
    assert [p.name for p in built.processes] == ["coordinator", "node-1", "node-2", "traffic"]
    assert built.processes[0].argv[-3:] == ("serve", "--config", str(layout.coordinator_config))
    assert built.processes[1].argv[-1] == str(layout.node_config("node-1"))
    assert "OWM_COORDINATOR_URL" not in built.environment
    assert [n.node_id for n in built.state.nodes] == [n.node_id for n in state.nodes]
    assert built.state.traffic_interval_s == 7 and layout.load() == built.state
    with pytest.raises(ConfigError, match="holds a devnet of 2 node"):
        devnet.build_devnet(layout, 3)


@settings(max_examples=30, deadline=None)
@given(port=st.integers(1, 65535), section=st.sampled_from(["node", "tasks"]))
def test_setting_a_key_changes_that_key_of_that_section_only(port, section):
    text = NODE_TEMPLATE.format(data_dir="/d", identity_key="/d/k")
    key = "health_port" if section == "node" else "max_concurrent"
    changed = devnet.set_toml_value(text, section, key, str(port))
    import tomllib

    before, after = tomllib.loads(text), tomllib.loads(changed)
    assert after[section][key] == port
    after[section][key] = before[section][key]
    assert after == before
    assert changed.count("\n#") == text.count("\n#")  # comments kept


def test_a_key_missing_from_a_section_is_added_to_that_section():
    text = NODE_TEMPLATE.format(data_dir="/d", identity_key="/d/k")
    changed = devnet.set_toml_value(text, "coordinator", "socks5_proxy", '"127.0.0.1:9050"')
    import tomllib

    assert tomllib.loads(changed)["coordinator"]["socks5_proxy"] == "127.0.0.1:9050"
    with pytest.raises(ConfigError):
        devnet.set_toml_value(text, "nope", "k", "1")


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(8)
    assert len(set(ports)) == 8
    import socket

    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


# --------------------------------------------------------------------------- processes


def _sleeper(layout: DevnetLayout, name: str, ignore_term: bool = False) -> int:
    code = ("import signal, sys, time\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
            + "print('re' + 'ady', flush=True)\ntime.sleep(60)\n")
    # The data directory as an argument marks the process as this devnet's.
    return processes.spawn(layout, name, [sys.executable, "-c", code, str(layout.root)],
                           processes.child_environment())


def test_spawned_processes_run_in_their_own_session_log_and_stop_idempotently(tmp_path):
    layout = DevnetLayout.at(tmp_path / "devnet")
    pids = {name: _sleeper(layout, name) for name in ("coordinator", "node-1", "traffic")}
    try:
        for pid in pids.values():
            assert os.getsid(pid) == pid
        deadline = time.monotonic() + 20
        while "ready" not in layout.log_file("node-1").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "ready" in layout.log_file("node-1").read_text()
        assert {p.name for p in processes.running(layout)} == set(pids)
        lines: list[str] = []
        stopped = processes.stop(layout, grace_s=10, say=lines.append)
        assert stopped == ["traffic", "node-1", "coordinator"]  # traffic, nodes, coordinator
        assert not any(processes.is_alive(pid) for pid in pids.values())
        assert not list(layout.run_dir.glob("*.pid"))
        assert processes.stop(layout) == []
    finally:
        for pid in pids.values():
            if processes.is_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    layout = DevnetLayout.at(tmp_path / "devnet")
    pid = _sleeper(layout, "node-1", ignore_term=True)
    try:
        deadline = time.monotonic() + 20
        while "ready" not in layout.log_file("node-1").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        lines: list[str] = []
        assert processes.stop(layout, grace_s=0.5, say=lines.append) == ["node-1"]
        assert not processes.is_alive(pid)
        assert any("killing it" in line for line in lines)
    finally:
        if processes.is_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_pid_file_naming_someone_elses_process_is_dropped_and_never_signalled(tmp_path):
    layout = DevnetLayout.at(tmp_path / "devnet")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        layout.run_dir.mkdir(parents=True)
        layout.pid_file("coordinator").write_text(f"{other.pid}\n")
        assert processes.running(layout) == []
        assert not layout.pid_file("coordinator").exists()
        assert processes.stop(layout) == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_zombie_counts_as_ended():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 20
    while processes.is_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes.is_alive(child.pid)  # exited, not yet reaped
    child.wait()


def test_children_do_not_inherit_variables_that_override_the_generated_configs():
    env = processes.child_environment({"OWM_COORDINATOR_URL": "x:1", "OWM_LOG_LEVEL": "DEBUG",
                                       "OWM_IDENTITY_KEY_PATH": "/k", "PATH": "/bin"})
    assert env == {"OWM_LOG_LEVEL": "DEBUG", "PATH": "/bin", "PYTHONUNBUFFERED": "1"}


# --------------------------------------------------------------------------- traffic


def test_the_traffic_loop_submits_distinct_sample_tasks_and_asks_queries_until_stopped():
    stop = threading.Event()
    submitted: list[SampleTask] = []
    records: list[dict[str, object]] = []

    def submit(task: SampleTask) -> None:
        if len(submitted) == 1:
            submitted.append(task)
            raise RuntimeError("coordinator restarting")
        submitted.append(task)
        if len(submitted) >= 5:
            stop.set()

    asked: list[str] = []

    def ask(question: str) -> tuple[int, object]:
        asked.append(question)
        if len(asked) == 1:
            return 503, {"detail": "not yet"}
        return 200, {"query_id": "q1", "answer": "It anchors model versions.",
                     "confidence": 0.8, "cost_sats": 3}

    loop = TrafficLoop(submit, ask, records.append, interval_s=0.01, query_interval_s=0.01)
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    thread.join(20)
    assert not thread.is_alive()
    assert len({t.task_id for t in submitted}) == len(submitted) == 5
    for task in submitted:
        assert (task.task_type, task.schema_id, task.schema_version) == \
            ("inference", "owm.inference.text", 1)
        assert isinstance(task.payload["prompt"], str) and task.max_price_msat == 10_000
    report = records[-1]
    assert report["tasks_submitted"] == 4 and report["task_errors"] == 1
    assert "coordinator restarting" in str(report["last_error"])
    assert report["queries_asked"] == len(asked) >= 2
    assert report["queries_answered"] == len(asked) - 1
    assert report["last_answer"]["answer"] == "It anchors model versions."  # type: ignore[index]
    # The latest answer to each sample question answered is kept, by question.
    answers = report["answers"]
    assert isinstance(answers, dict) and answers
    assert report["last_answer"] in answers.values()
    assert all(entry["query"] == question for question, entry in answers.items())


def test_a_new_devnet_runs_the_pool_and_every_node_mines_on_it_with_the_pools_authority_key(
    tmp_path: Path,
) -> None:
    from owm_core.pool.noise import PoolUrl
    from owm_core.pool.secp256k1 import xonly_public_key

    layout, state = _provision(tmp_path)
    coordinator = load_coordinator_settings(layout.coordinator_config)
    assert coordinator.pool.enabled
    # a regtest share is a whole block: FPPS must value it at sats the devnet's channels hold,
    # and the payout a block makes due must come within seconds
    assert coordinator.pool.fpps_block_reward_sat == devnet.POOL_BLOCK_REWARD_SAT  # type: ignore[attr-defined]
    hour_sat = devnet.POOL_BLOCK_REWARD_SAT * 60 * devnet.POOL_SHARES_PER_MINUTE
    channels = [node.payout_channel_sat for node in state.nodes]  # type: ignore[attr-defined]
    assert min(channels) > hour_sat  # an hour of mining fits a node's payout channel
    assert coordinator.pool.payout_sweep_s <= 15  # type: ignore[attr-defined]
    assert coordinator.pool.listen == f"127.0.0.1:{state.coordinator.pool_port}"  # type: ignore[attr-defined]
    authority = keystore.load_secret(layout.coordinator_dir / "pool" / "authority.key")
    for node in state.nodes:  # type: ignore[attr-defined]
        mining = load_node_settings(layout.node_config(node.name)).mining
        assert (mining.enabled, mining.worker) == (True, node.name)
        assert mining.max_shares_per_minute == devnet.POOL_SHARES_PER_MINUTE
        url = PoolUrl.parse(mining.pool_url)
        assert url.port == state.coordinator.pool_port  # type: ignore[attr-defined]
        assert url.authority_xonly == xonly_public_key(authority)
