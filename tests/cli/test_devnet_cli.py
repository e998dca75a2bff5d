"""``owm devnet``'s commands that need no running network: attack, down, status, refusals."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from click.testing import CliRunner

from owm_adapters.bootstrap.devnet import provision
from owm_adapters.devnet import processes
from owm_adapters.devnet.layout import DevnetLayout
from owm_cli.devnet import devnet, render_status
from owm_cli.main import cli
from owm_core.nodes.tiers import Tier


def _devnet(tmp_path: Path, nodes: int = 3) -> DevnetLayout:
    layout = DevnetLayout.at(tmp_path / "devnet")
    provision(layout, nodes, now=1_800_000_000, traffic_interval_s=15,
                        query_interval_s=60, tier=Tier.T1)
    return layout


def test_owm_lists_devnet_among_its_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "devnet" in result.output
    result = CliRunner().invoke(cli, ["devnet", "--help"])
    assert result.exit_code == 0
    for command in ("up", "down", "status", "attack"):
        assert command in result.output


def test_attack_writes_the_nodes_attack_file_and_none_removes_it(tmp_path):
    layout = _devnet(tmp_path)
    runner = CliRunner()
    result = runner.invoke(devnet, ["attack", "--node", "2", "--kind", "poison",
                                    "--data-dir", str(layout.root)])
    assert result.exit_code == 0, result.output
    attack_file = layout.node_dir("node-2") / "attack"
    assert attack_file.read_text().strip() == "poison"
    assert "poisoned FL updates" in result.output and "slashing log" in result.output
    assert not (layout.node_dir("node-1") / "attack").exists()
    result = runner.invoke(devnet, ["attack", "--node", "2", "--kind", "none",
                                    "--data-dir", str(layout.root)])
    assert result.exit_code == 0 and not attack_file.exists()


def test_attack_on_a_node_that_does_not_exist_is_a_one_line_error(tmp_path):
    layout = _devnet(tmp_path, nodes=2)
    result = CliRunner().invoke(devnet, ["attack", "--node", "3", "--data-dir", str(layout.root)])
    assert result.exit_code != 0
    assert result.output.strip() == "error: --node must be between 1 and 2, got 3"


def test_commands_on_a_directory_without_a_devnet_say_how_to_start_one(tmp_path):
    runner = CliRunner()
    for args in (["status"], ["attack", "--node", "1"]):
        result = runner.invoke(devnet, [*args, "--data-dir", str(tmp_path / "empty")])
        assert result.exit_code != 0
        assert "no devnet in" in result.output and "owm devnet up" in result.output
    result = runner.invoke(devnet, ["down", "--data-dir", str(tmp_path / "empty")])
    assert result.exit_code == 0 and "nothing is running" in result.output


def test_up_while_the_devnet_runs_is_refused_in_one_line(tmp_path):
    layout = _devnet(tmp_path, nodes=1)
    pid = processes.spawn(
        layout, "coordinator",
        [sys.executable, "-c", "import time; time.sleep(60)", str(layout.root)],
        processes.child_environment(),
    )
    try:
        result = CliRunner().invoke(devnet, ["up", "--nodes", "1", "--data-dir",
                                             str(layout.root)])
        assert result.exit_code != 0
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "already up (coordinator)" in lines[0]
        assert "--restart" in lines[0]
    finally:
        os.killpg(pid, signal.SIGKILL)


def _report() -> dict:
    """A report as :func:`probe.collect` returns it."""
    return {
        "data_dir": "/d", "api_url": "http://127.0.0.1:1/v1",
        "dashboard_url": "http://127.0.0.1:1/dashboard", "api_reachable": True,
        "processes": {"coordinator": {"alive": True, "pid": 1},
                      "node-1": {"alive": True, "pid": 2}, "traffic": {"alive": False}},
        "network": {"nodes_total": 1, "by_status": {"online": 1, "offline": 0},
                    "staked_sat": 100_000, "total_tasks_completed": 4,
                    "total_sats_earned": 20},
        "nodes": [{"name": "node-1", "node_id": "n" + "ab" * 20, "state": "serving",
                   "coordinator_status": "online",
                   "tier": "t1", "stake_status": "active", "stake_sat": 100_000,
                   "tasks_completed": 4, "earned_sat": 20, "credited_tasks": 4,
                   "ln_received_sat": 12, "attack": "poison"}],
        "payments": {"paid_over_lightning_sat": 12, "credited_tasks": 4, "pending_tasks": 1},
        "fl_rounds": [{"round": 3, "sub_model": "owm-base", "state": "open"},
                      {"round": 2, "sub_model": "owm-base", "state": "closed",
                       "participants": 3, "rejected": ["nX: outlier"], "flagged": ["nX"],
                       "accuracy": 0.912,
                       "version": "owm-base@owm-v0.2.0"}],
        "model_versions": [{"id": "owm-base@v2", "ots_status": "confirmed"}],
        "slashing_log": [],
        "traffic": {"tasks_submitted": 5, "queries_asked": 2, "queries_answered": 1,
                    "last_answer": {"query": "Q?", "answer": "A.", "confidence": 0.7}},
        "mining": {"pool": {"hashrate_1h_hps": 14_316_557, "hashrate_24h_hps": 596_523,
                            "miners_24h": 1, "shares_24h": 12, "blocks_30d": 12,
                            "paid_sat_total": 480, "at": 1},
                   "fpps_payouts": 3, "chain_height": 31,
                   "miners": {"node-1": {"miner_id": "n" + "ab" * 20, "shares_24h": 12,
                                         "hashrate_1h_hps": 14_316_557,
                                         "hashrate_24h_hps": 596_523, "blocks_30d": 12,
                                         "paid_sat": 480, "payouts": 3}}},
    }


def test_status_shows_earnings_per_node_and_what_the_network_did():
    text = "\n".join(render_status(_report()))
    assert "coordinator up, node-1 up, traffic DOWN  (2/3 running)" in text
    assert "1 node(s) (online 1), 100,000 sat staked, 4 tasks completed, 20 sat earned" in text
    row = next(line for line in text.splitlines() if line.startswith("node-1"))
    assert row.split() == ["node-1", "nabababababab", "serving", "online", "t1", "active",
                           "100,000",
                           "sat", "4", "20", "sat", "12", "sat", "poison"]
    assert "12 sat paid to nodes over the embedded Lightning ledger" in text
    assert "FL rounds   2 (1 closed, 1 open)" in text
    assert ("latest closed: round 2 of owm-base, 3 update(s), 1 rejected, 1 flagged, "
            "accuracy 91.2 %, "
            "version owm-base@owm-v0.2.0") in text
    assert "versions    1; newest: owm-base@v2 (confirmed)" in text
    assert "query       'Q?' → 'A.' (confidence 0.7)" in text
    assert ("mining      1 miner(s), 12 share(s) in 24 h, 14.3 MH/s (1 h), 12 block(s) found, "
            "regtest height 31; 480 sat paid in 3 FPPS payout(s) over the embedded ledger") in text
    assert "            node-1: 12 share(s), 14.3 MH/s, 12 block(s), 480 sat in 3 payout(s)" in text


def test_status_with_json_prints_the_report_the_text_is_rendered_from(tmp_path, monkeypatch):
    from owm_adapters.devnet import probe

    layout = _devnet(tmp_path, nodes=1)
    monkeypatch.setattr(probe, "collect", lambda _layout, _state: _report())
    args = ["status", "--data-dir", str(layout.root)]
    as_json = CliRunner().invoke(devnet, [*args, "--json"])
    text = CliRunner().invoke(devnet, args)
    assert as_json.exit_code == 0 and text.exit_code == 0, (as_json.output, text.output)
    report = json.loads(as_json.stdout)
    assert report == _report()
    assert text.stdout.splitlines() == render_status(report)
