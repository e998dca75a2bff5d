"""The contract every engine running OWM's Flower App must satisfy (in-process and deployed).

``run_round`` runs the ServerApp of :mod:`owm_adapters.flower.serverapp` for one round on two
nodes with the given engine and returns the result JSON the ServerApp writes.
"""

from __future__ import annotations

from typing import Any

ROUND_CONFIG: dict[str, Any] = {"num-server-rounds": 1, "rule": "median", "f": 0, "min-nodes": 2}


def check_one_signed_round(result: dict[str, Any]) -> None:
    """Both nodes' signed updates were accepted, aggregated, and the model learned."""
    (round_1,) = result["rounds"]
    assert round_1["round"] == 1
    assert round_1["participants"] == 2
    assert round_1["accepted"] == 2
    assert round_1["rejected"] == []
    assert round_1["signals"] == 0
    accuracies = {int(k): v for k, v in result["accuracies"].items()}
    assert accuracies[1] > accuracies[0] + 0.1
