"""With ``--log-format json`` the coordinator's own records carry their facts as fields, not
only inside the message: a payment's task, node, amount and state, an FL round's number,
accuracy, flagged updates and version, the node an update came from, so a log pipeline can
filter on them (docs/configuration.md, "Logging")."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from owm_adapters.bootstrap import logs
from tests.services.fl_world import build_fl_world
from tests.services.test_payouts import PRICE_MSAT, World, settle, world  # noqa: F401


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Logging as ``owm-coordinator --log-format json`` sets it up, into a buffer; returns the
    entries written so far. The handler is removed afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    logs.configure("INFO", "json", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for handler in root.handlers:
        if handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)


def _one(entries: list[dict[str, Any]], words: str) -> dict[str, Any]:
    (entry,) = [e for e in entries if words in e["message"]]
    return entry


def test_payment_records_carry_task_node_amount_and_state_as_fields(
    world: World, json_lines: Callable[[], list[dict[str, Any]]],  # noqa: F811
) -> None:
    world.dispatcher.on_settlement(settle("t-log"))
    world.dispatcher.sweep()
    entries = json_lines()
    (payment,) = world.repositories.payments.for_task("t-log")
    enqueued = _one(entries, "enqueued")
    assert (enqueued["task_id"], enqueued["node_id"], enqueued["amount_msat"]) == (
        "t-log", "node-n1", PRICE_MSAT)
    assert enqueued["payment_hash"] == payment.payment_hash
    settled = _one(entries, "succeeded")
    assert (settled["task_id"], settled["node_id"], settled["amount_msat"], settled["state"],
            settled["attempt"]) == ("t-log", "node-n1", PRICE_MSAT, "succeeded", 1)


def test_fl_round_records_carry_the_round_its_nodes_accuracy_and_version_as_fields(
    tmp_path: Path, json_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    fl = build_fl_world(tmp_path)
    fl_round = fl.honest_round(nodes=3)
    closed = fl.fl.close_round(fl_round.number)
    entries = json_lines()
    started = _one(entries, "started from")
    assert started["round"] == fl_round.number and started["sub_model"]
    accepted = [e for e in entries if "accepted" in e["message"]]
    assert len(accepted) == 3 and {e["round"] for e in accepted} == {fl_round.number}
    assert {e["node_id"] for e in accepted} == {n.node_id for n in fl.nodes[:3]}
    done = _one(entries, "closed")
    assert done["round"] == fl_round.number and done["updates"] == 3
    assert done["accuracy_ppm"] == closed.accuracy_ppm and done["flagged"] == 0
    assert done["version"] == str(closed.version_id)
