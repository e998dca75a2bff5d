"""OWM's Flower strategy on the in-process grid: contract, signatures, selection, signals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from flwr.app import ConfigRecord, Context, Message, RecordDict

from owm_adapters.flower import serverapp
from owm_adapters.flower.clientapp import ARRAYS_KEY, app, simulated_identity
from owm_adapters.flower.data import BlobSpec
from owm_adapters.flower.grid import NODE_ID_BASE, InProcessGrid
from owm_adapters.flower.model import flatten, initial_model, to_record, unflatten
from owm_adapters.flower.simulation import SimConfig, run_simulation
from owm_adapters.flower.strategy import OwmStrategy
from owm_core.fl.aggregation import Rule
from owm_core.fl.attacks import Attack
from owm_core.fl.participants import Candidate
from tests.adapters.flower.flower_contract import ROUND_CONFIG, check_one_signed_round


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_serverapp_completes_a_signed_round_in_process(tmp_path: Path):
    result_path = tmp_path / "result.json"
    grid = InProcessGrid(app, [{"partition-id": 0}, {"partition-id": 1}])
    context = Context(
        run_id=1,
        node_id=1,
        node_config={},
        state=RecordDict(),
        run_config={**ROUND_CONFIG, "seed": 0, "result-path": str(result_path)},
    )
    serverapp.app(grid, context)
    check_one_signed_round(json.loads(result_path.read_text()))


def run_rounds(strategy: OwmStrategy, grid: InProcessGrid, rounds: int = 1) -> None:
    strategy.start(
        grid=grid,
        initial_arrays=to_record(initial_model(BlobSpec(), 0)),
        num_rounds=rounds,
        train_config=ConfigRecord(),
    )


def tamper_with(handle: int, change):
    def tamper(sent: list[Message], replies: list[Message]) -> list[Message]:
        for reply in replies:
            if reply.metadata.src_node_id == handle and not reply.has_error():
                change(reply)
        return replies

    return tamper


def test_an_update_altered_after_signing_is_rejected_and_the_round_goes_on():
    def nudge(reply: Message) -> None:
        record = reply.content[ARRAYS_KEY]
        reply.content[ARRAYS_KEY] = unflatten(flatten(record) + 1e-3, record)

    grid = InProcessGrid(
        app, [{"partition-id": i} for i in range(6)], tamper=tamper_with(NODE_ID_BASE + 2, nudge)
    )
    strategy = OwmStrategy(rule=Rule.MEDIAN, f=1, seed=b"s", min_available_nodes=6)
    run_rounds(strategy, grid)
    (report,) = strategy.reports
    assert (report.participants, report.accepted) == (6, 5)
    assert "does not verify" in report.rejected[0]


def test_a_missing_signature_or_a_foreign_key_is_rejected():
    def strip(reply: Message) -> None:
        del reply.content["owm-signature"]

    grid = InProcessGrid(
        app, [{"partition-id": i} for i in range(6)], tamper=tamper_with(NODE_ID_BASE + 0, strip)
    )
    registered = {simulated_identity(i).public_key_hex for i in range(5)}
    strategy = OwmStrategy(
        rule=Rule.MEDIAN, f=1, seed=b"s", min_available_nodes=6, registered_keys=registered
    )
    run_rounds(strategy, grid)
    (report,) = strategy.reports
    assert report.accepted == 4
    assert sorted(r.split(": ", 1)[1] for r in report.rejected) == [
        "public key is not registered",
        "reply carries no signature record",
    ]


def test_a_signature_from_another_round_does_not_verify():
    kept: dict[str, RecordDict] = {}

    def replay(reply: Message) -> None:
        if "old" in kept:
            reply.__dict__["_content"] = kept["old"]
        else:
            kept["old"] = reply.content

    grid = InProcessGrid(
        app, [{"partition-id": i} for i in range(5)], tamper=tamper_with(NODE_ID_BASE + 1, replay)
    )
    strategy = OwmStrategy(rule=Rule.MEDIAN, f=1, seed=b"s", min_available_nodes=5)
    run_rounds(strategy, grid, rounds=2)
    assert [r.accepted for r in strategy.reports] == [5, 4]


def test_suspended_nodes_in_the_roster_are_not_invited():
    grid = InProcessGrid(app, [{"partition-id": i} for i in range(6)])
    roster = {NODE_ID_BASE + 3: Candidate(handle=NODE_ID_BASE + 3, suspended=True)}
    strategy = OwmStrategy(
        rule=Rule.TRIMMED_MEAN, f=1, seed=b"s", roster=roster, min_available_nodes=6
    )
    sent: list[int] = []
    original = grid.push_messages

    def spy(messages):
        batch = list(messages)
        sent.extend(m.metadata.dst_node_id for m in batch)
        return original(batch)

    grid.push_messages = spy  # type: ignore[method-assign]
    run_rounds(strategy, grid)
    assert NODE_ID_BASE + 3 not in sent
    assert strategy.reports[0].accepted == 5


def test_byzantine_clients_are_reported_for_slashing_with_their_node_ids():
    result = run_simulation(
        SimConfig(clients=20, byzantine=4, attack=Attack.SIGNFLIP, rule=Rule.KRUM, rounds=1)
    )
    (report,) = result.reports
    assert sorted(s.node_id for s in report.signals) == sorted(
        simulated_identity(i).node_id for i in range(4)
    )
