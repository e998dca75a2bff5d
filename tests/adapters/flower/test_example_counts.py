"""The example count a Flower reply is weighed by: signed by its client and bounded by what the
run hands each client (SRS-SEC-05).

Clients here reply with a fixed update (every value ``value``) and a chosen ``num-examples``,
so each property runs one round in milliseconds without training.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.flower import serverapp
from owm_adapters.flower.clientapp import ARRAYS_KEY, app, simulated_identity
from owm_adapters.flower.grid import NODE_ID_BASE, InProcessGrid
from owm_adapters.flower.model import flatten
from owm_adapters.flower.signing import EXAMPLES_KEY, SIGNATURE_RECORD, sign_reply
from owm_adapters.flower.strategy import OwmStrategy
from owm_core.fl.aggregation import Rule
from owm_core.fl.participants import update_digest, update_statement
from owm_core.fl.reports import RoundReport
from tests.adapters.flower.flower_contract import ROUND_CONFIG

D = 8
HONEST = 1.0
BAD = -100.0
ASSIGNED = 64
NodeConfig = dict[str, bool | float | int | str]

fixed = ClientApp()


@fixed.train()
def reply_fixed(msg: Message, context: Context) -> Message:
    """Reply with every value ``value`` and ``num-examples`` ``claimed``, signed by the node."""
    config = context.node_config
    server_round = msg.content.config_records["config"]["server-round"]
    assert isinstance(server_round, int)
    content = RecordDict({
        ARRAYS_KEY: ArrayRecord([np.full(D, float(config["value"]), dtype=np.float32)]),
        "metrics": MetricRecord({EXAMPLES_KEY: int(config["claimed"]), "train-loss": 0.5}),
    })
    sign_reply(content, simulated_identity(int(config["partition-id"])), server_round, ARRAYS_KEY)
    return Message(content=content, reply_to=msg)


def one_round(
    nodes: list[NodeConfig],
    rule: Rule = Rule.FEDAVG,
    max_examples: int = ASSIGNED,
    tamper: Callable[[Message], None] | None = None,
) -> tuple[torch.Tensor | None, RoundReport]:
    """Run round 1 of ``rule`` over clients replying per ``nodes``; ``tamper`` changes the
    first client's reply after it signed. The new global model (None: unchanged) and report."""

    def change_first(sent: object, replies: list[Message]) -> list[Message]:
        if tamper is not None:
            tamper(next(r for r in replies if r.metadata.src_node_id == NODE_ID_BASE))
        return replies

    grid = InProcessGrid(fixed, nodes, tamper=change_first)
    strategy = OwmStrategy(rule=rule, f=0, seed=b"s", min_available_nodes=len(nodes),
                           wait_for_nodes_s=0, max_examples=max_examples)
    instructions = strategy.configure_train(
        1, ArrayRecord([np.zeros(D, dtype=np.float32)]), ConfigRecord(), grid
    )
    arrays, _ = strategy.aggregate_train(1, grid.send_and_receive(instructions))
    (report,) = strategy.reports
    return (None if arrays is None else flatten(arrays)), report


def clients(first: NodeConfig, honest_n: int) -> list[NodeConfig]:
    """Node 0 replies per ``first``, then ``honest_n`` honest nodes."""
    honest: list[NodeConfig] = [{"partition-id": i, "value": HONEST, "claimed": ASSIGNED}
                                for i in range(1, honest_n + 1)]
    return [{"partition-id": 0, **first}, *honest]


def set_count(count: object) -> Callable[[Message], None]:
    def change(reply: Message) -> None:
        next(iter(reply.content.metric_records.values()))[EXAMPLES_KEY] = count  # type: ignore[assignment]
    return change


@settings(max_examples=40, deadline=None)
@given(
    honest_n=st.integers(2, 5),
    claimed=st.integers(1, 10**9),
    rule=st.sampled_from([Rule.FEDAVG, Rule.MULTIKRUM]),
)
def test_a_client_claiming_a_huge_count_moves_the_aggregate_at_most_one_nth_of_the_way(
    honest_n: int, claimed: int, rule: Rule
) -> None:
    """A Byzantine client signs its own update with any count it likes: either the count is
    above what each client is handed and the update is rejected, or it weighs at most like one
    honest update, so the aggregate moves at most 1/n of the way to it (SRS-SEC-05)."""
    model, report = one_round(clients({"value": BAD, "claimed": claimed}, honest_n), rule)
    if claimed > ASSIGNED:
        assert report.accepted == honest_n
        assert f"{EXAMPLES_KEY}: must be at most {ASSIGNED}" in report.rejected[0]
    if model is None:  # too few updates left for Multi-Krum: the model stays where it was
        assert report.accepted < rule.min_clients(0)
        return
    pulled = float((model - HONEST).norm()) / float(torch.full((D,), BAD - HONEST).norm())
    assert pulled <= 1 / report.accepted + 1e-5


@settings(max_examples=40, deadline=None)
@given(changed=st.integers(1, 10**9).filter(lambda n: n != ASSIGNED))
def test_a_count_changed_after_signing_breaks_the_signature_and_the_update_is_rejected(
    changed: int,
) -> None:
    """Even under the loosest bound, only the count the client signed is weighed."""
    model, report = one_round(clients({"value": BAD, "claimed": ASSIGNED}, 3),
                              max_examples=10**9, tamper=set_count(changed))
    assert model is not None and bool(torch.allclose(model, torch.full((D,), HONEST)))
    assert (report.participants, report.accepted) == (4, 3)
    assert report.rejected[0].endswith(": signature does not verify")


def test_a_count_left_out_of_the_signature_is_rejected() -> None:
    """A v1 signature (round, node, weights) does not say how much the update weighs."""

    def sign_v1(reply: Message) -> None:
        identity = simulated_identity(0)
        digest = update_digest(flatten(reply.content.array_records[ARRAYS_KEY]))
        signature = identity.sign(update_statement(1, identity.node_id, digest))
        reply.content.config_records[SIGNATURE_RECORD]["signature"] = signature

    _, report = one_round(clients({"value": BAD, "claimed": ASSIGNED}, 3), tamper=sign_v1)
    assert report.accepted == 3
    assert report.rejected[0].endswith(f": signature does not cover {EXAMPLES_KEY}")


@pytest.mark.parametrize(
    ("count", "why"),
    [
        (None, "missing"),
        (64.0, "must be an integer"),
        (0, "must be at least 1"),
        (ASSIGNED + 1, f"must be at most {ASSIGNED}"),
    ],
)
def test_a_missing_fractional_zero_or_oversized_count_is_rejected(count: object, why: str) -> None:
    def change(reply: Message) -> None:
        metrics = next(iter(reply.content.metric_records.values()))
        if count is None:
            del metrics[EXAMPLES_KEY]
        else:
            set_count(count)(reply)

    _, report = one_round(clients({"value": BAD, "claimed": ASSIGNED}, 3), tamper=change)
    assert report.accepted == 3
    assert f": {EXAMPLES_KEY}: {why}" in report.rejected[0]


def test_the_serverapp_bounds_counts_by_the_partition_size_it_hands_each_client(
    tmp_path: Path,
) -> None:
    """End to end: a client that trains honestly but re-signs a count above TinyNet's blob
    partition (``per-client``) is rejected; the others' round goes on."""

    def inflate(sent: object, replies: list[Message]) -> list[Message]:
        for reply in replies:
            if reply.metadata.src_node_id == NODE_ID_BASE and not reply.has_error():
                set_count(ASSIGNED + 1)(reply)
                sign_reply(reply.content, simulated_identity(0), 1, ARRAYS_KEY)
        return replies

    result_path = tmp_path / "result.json"
    grid = InProcessGrid(app, [{"partition-id": i} for i in range(3)], tamper=inflate)
    config = {**ROUND_CONFIG, "min-nodes": 3, "seed": 0, "result-path": str(result_path)}
    serverapp.app(grid, Context(run_id=1, node_id=1, node_config={}, state=RecordDict(),
                                run_config=config))
    (round_1,) = json.loads(result_path.read_text())["rounds"]
    assert (round_1["participants"], round_1["accepted"]) == (3, 2)
    (refusal,) = round_1["rejected"]
    assert refusal == (f"node {NODE_ID_BASE}: {EXAMPLES_KEY}: must be at most {ASSIGNED} "
                       f"(the examples its task assigned), got {ASSIGNED + 1}")
