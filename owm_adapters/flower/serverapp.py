"""The OWM ServerApp for Flower's deployment engine (``flwr run`` against a SuperLink).

Reads the run config (``num-server-rounds``, ``rule``, ``f``, ``min-nodes``, ``seed``,
``result-path``, ``model``, ``max-examples`` and the data keys of :mod:`.clientapp`), runs
:class:`~owm_adapters.flower.strategy.OwmStrategy` on the engine's grid — updates weighed by
their signed example counts, at most :func:`.trainable.max_examples` — with server-side
evaluation on the held-out set, logs one line per round and, when ``result-path`` is set,
writes the rounds' reports there as JSON (the deployment test reads it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from owm_adapters.flower import trainable
from owm_adapters.flower.strategy import OwmStrategy
from owm_core.fl.aggregation import Rule

log = logging.getLogger(__name__)

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the configured rounds with OWM's strategy and report them."""
    cfg = context.run_config
    seed = int(cfg.get("seed", 0))
    score, initial = trainable.central_scoring(cfg, seed)
    accuracies: dict[int, float] = {}

    def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        loss, acc = score(arrays)
        accuracies[server_round] = acc
        log.warning("owm round %d: accuracy %.4f", server_round, acc)
        return MetricRecord({"accuracy": acc, "loss": min(loss, 1e30)})

    strategy = OwmStrategy(
        rule=Rule(str(cfg.get("rule", "median"))),
        f=int(cfg.get("f", 0)),
        seed=seed.to_bytes(8, "big"),
        min_available_nodes=int(cfg.get("min-nodes", 2)),
        max_examples=trainable.max_examples(cfg),
    )
    strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=int(cfg.get("num-server-rounds", 1)),
        train_config=ConfigRecord(),
        evaluate_fn=central_evaluate,
    )
    result_path = str(cfg.get("result-path", ""))
    if result_path:
        Path(result_path).write_text(
            json.dumps(
                {
                    "accuracies": accuracies,
                    "rounds": [
                        {
                            "round": r.round_number,
                            "participants": r.participants,
                            "accepted": r.accepted,
                            "rejected": list(r.rejected),
                            "signals": len(r.signals),
                        }
                        for r in strategy.reports
                    ],
                }
            )
        )
