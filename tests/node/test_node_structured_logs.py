"""With ``--log-format json`` the node daemon's records carry their facts as fields, not only
inside the message: registration and stake (``node_id``, ``tier``, ``stake``), each task it
accepts, runs, proves, rejects and is credited for (``task_id``, ``amount_msat``,
``model_version``, ``state``), and lost or regained coordinators, so a log pipeline can filter
on them (docs/configuration.md, "Logging"). Secrets stay out of every field (SRS-SEC-07)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from owm_adapters.node.context import EVENTS_LOGGER, note
from owm_adapters.node.task_log import TaskLog
from owm_adapters.node.watchers import PaymentWatcher
from owm_cli import node as node_cli
from owm_core.nodes.control_plane import ReplicaView
from tests.node.conftest import T1_STAKE_SAT, Network
from tests.node.test_daemon import Running, start, wait_for  # noqa: F401
from tests.node.test_task_log import received
from tests.services.test_structured_logs import json_lines  # noqa: F401

Entries = Callable[[], list[dict[str, Any]]]
Starter = Callable[..., Running]


def _one(entries: list[dict[str, Any]], words: str) -> dict[str, Any]:
    """The one node record whose message holds ``words`` (the in-process coordinator logs to
    the same stream)."""
    (entry,) = [e for e in entries
                if words in e["message"] and e["logger"].startswith("owm_adapters.node")]
    return entry


def _serving(network: Network, start: Starter, alias: str) -> Running:  # noqa: F811
    """A staked node daemon, started and serving."""
    node = start(network.node(alias))
    wait_for(lambda: node.daemon.state == "serving")
    return node


def test_a_node_s_registration_task_proof_and_credit_carry_their_facts_as_fields(
    network: Network, start: Starter, json_lines: Entries,  # noqa: F811
) -> None:
    node = _serving(network, start, "n-logs")
    network.submit("log-1", b'{"prompt": "hello"}')
    wait_for(lambda: node.daemon.log.earnings().credited_tasks == 1)
    assert node.halt() == 0
    entries = json_lines()
    node_id = node.daemon.identity.node_id
    row = node.daemon.log.get("log-1:0")
    assert row is not None

    registered = _one(entries, "registered  node")
    assert registered["logger"] == EVENTS_LOGGER and registered["level"] == "INFO"
    assert (registered["node_id"], registered["tier"], registered["stake"],
            registered["required_sats"]) == (node_id, "t1", "active", T1_STAKE_SAT)
    accepted = _one(entries, "accepted task log-1:0")
    assert (accepted["node_id"], accepted["task_id"], accepted["task_type"],
            accepted["amount_msat"]) == (node_id, "log-1:0", "inference", row.price_msat)
    assert "model_version" in accepted
    ran = _one(entries, "task log-1:0 ran in")
    assert ran["task_id"] == "log-1:0" and ran["output_hash"] == row.output_hash
    assert isinstance(ran["execution_ms"], int)
    proved = _one(entries, "task log-1:0 proved")
    assert (proved["node_id"], proved["task_id"], proved["amount_msat"]) == (
        node_id, "log-1:0", row.price_msat)
    assert (proved["state"], proved["payment_status"]) == (row.proof_state, row.payment_status)
    stopped = _one(entries, "stopped: 1 tasks credited")
    assert (stopped["credited_tasks"], stopped["amount_msat"]) == (1, row.price_msat)
    assert node.text().splitlines()[0].startswith("registered  node ")  # the lines, as before


def test_a_rejected_task_carries_the_field_and_reason_it_was_refused_for(
    network: Network, start: Starter, json_lines: Entries,  # noqa: F811
) -> None:
    node = _serving(network, start, "n-logs-bad")
    network.submit("log-bad", b'{"prompt": 42}')
    wait_for(lambda: any("rejected task" in e["message"] for e in json_lines()))
    rejected = _one(json_lines(), "rejected task log-bad:0")
    assert (rejected["level"], rejected["task_id"], rejected["field"], rejected["reason"]) == (
        "WARNING", "log-bad:0", "input.prompt", "must be a string")
    assert rejected["node_id"] == node.daemon.identity.node_id


def test_losing_and_regaining_the_coordinator_is_logged_once_each_with_the_node(
    network: Network, start: Starter, json_lines: Entries,  # noqa: F811
) -> None:
    node = _serving(network, start, "n-logs-net")
    ctx = node.daemon.ctx
    ctx.disconnected("connection refused")
    ctx.disconnected("connection refused")  # still down: no second record
    wait_for(lambda: any("reachable again" in e["message"] for e in json_lines()))
    lost = _one(json_lines(), "lost the coordinator")
    assert (lost["level"], lost["node_id"], lost["error"]) == (
        "WARNING", ctx.identity.node_id, "connection refused")
    back = _one(json_lines(), "reachable again")
    assert back["node_id"] == ctx.identity.node_id and back["via"] in {"heartbeat", "task feed"}


def test_a_field_named_like_a_secret_is_masked_and_no_key_reaches_a_line(
    network: Network, start: Starter, json_lines: Entries,  # noqa: F811
) -> None:
    preimage = "5e" * 32
    note(lambda _line: None, "paid", payment_hash="ab" * 32, preimage=preimage,
         macaroon="0201" + "ff" * 60)
    node = _serving(network, start, "n-logs-keys")
    assert node.halt() == 0
    paid = _one(json_lines(), "paid")
    assert (paid["payment_hash"], paid["preimage"], paid["macaroon"]) == (
        "ab" * 32, "[REDACTED]", "[REDACTED]")
    text = "\n".join(json.dumps(e) for e in json_lines())
    seed = bytes(node.daemon.identity._signing_key).hex()  # the node's private key
    assert preimage not in text and seed not in text and len(seed) == 64


def test_owm_node_start_prints_its_lines_in_text_mode_and_logs_them_only_in_json_mode(
    capsys: pytest.CaptureFixture[str], json_lines: Entries,  # noqa: F811
) -> None:
    with node_cli._operator_output("text") as say:
        note(say, "registered  node n-1", node_id="n-1")
    assert capsys.readouterr().out == "registered  node n-1\n"
    assert json_lines() == []  # not twice
    assert logging.getLogger(EVENTS_LOGGER).propagate  # held back only while it runs
    with node_cli._operator_output("json") as say:
        note(say, "registered  node n-2", node_id="n-2")
    assert capsys.readouterr().out == ""
    assert [(e["message"], e["node_id"]) for e in json_lines()] == [
        ("registered  node n-2", "n-2")]


def test_owm_node_takes_the_log_format_before_start() -> None:
    result = CliRunner().invoke(node_cli.cli, ["--log-format", "json", "start", "--help"])
    assert result.exit_code == 0, result.output


def test_a_proof_credited_after_verification_is_logged_with_its_task_and_amount(
    tmp_path: Path, json_lines: Entries,  # noqa: F811
) -> None:
    task_log = TaskLog.in_dir(tmp_path)
    received(task_log, "late-1:0")
    task_log.mark_executed("late-1:0", "cd" * 32, {"labels": [3]}, b"proof", 420, 1_500)
    task_log.mark_proved("late-1:0", "completed", "pending")  # awaiting verification
    view = ReplicaView("late-1:0", "settled", "n-late", 2_500)
    ctx = SimpleNamespace(identity=SimpleNamespace(node_id="n-late"),
                          control=SimpleNamespace(replicas=lambda _task_id: [view]))

    assert PaymentWatcher(ctx, task_log).refresh_payments() == 1  # type: ignore[arg-type]

    credited = _one(json_lines(), "task late-1:0 credited")
    assert (credited["node_id"], credited["task_id"], credited["state"],
            credited["payment_status"], credited["amount_msat"]) == (
        "n-late", "late-1:0", "settled", "credited", 2_500)
