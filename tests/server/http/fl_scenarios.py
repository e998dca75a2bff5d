"""The FL operations' own statuses for ``test_documented_statuses`` (one scenario each): an
FL service on the world's coordinator with one round whose replicas the world's nodes hold;
202/404/409 for uploads, 200/404 for weights, 503 without an FL service. The service stays
attached (and ``probe.ids["id"]`` names its published version) for the generic probes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from owm_adapters.bootstrap.coordinator import replicas_per_task
from owm_adapters.provenance.embedded import EmbeddedProvenance
from owm_adapters.services.fl_rounds import FlConfig, FlRoundService
from owm_core.fl.updates import sign_update
from owm_core.market import tasks as market
from owm_core.market.tasks import Match, NodeOffer
from owm_core.nodes.tiers import Tier

WEIGHTS = [0.01] * 2762


def _unavailable(probe: Any, body: Any = None) -> None:
    w = probe.world
    fl = w.services.fl
    w.serve(fl=None)
    probe.send(headers=w.api_key(), body=body)
    w.serve(fl=fl)


def _attach(probe: Any) -> tuple[FlRoundService, Any]:
    """The world's FL service with one open round; its first replica held by ``me``."""
    w = probe.world
    fl = w.services.fl
    if fl is None or not fl.repositories.fl_rounds.rounds():
        root = Path(w.ledger.path).parent / "fl"
        coordinator = w.services.coordinator
        provenance = EmbeddedProvenance(root / "provenance")
        provenance.stop()  # no calendar thread outlives the test
        fl = FlRoundService(
            coordinator.market, provenance, root / "weights",
            FlConfig(interval_s=0, min_participants=1), upload_url="http://127.0.0.1:1/u",
            store=coordinator.repositories, clock=coordinator.clock,
            replicas_per_task=replicas_per_task(coordinator.config.verification),
            trainers=lambda: 3,
        )
        coordinator.market.advertised_api_url = lambda: "http://127.0.0.1:1"
        w.serve(fl=fl)
        fl_round = fl.maybe_start()
        assert fl_round is not None
        replicas, _ = w.services.coordinator.task(fl_round.task_ids[0])
        offer = NodeOffer(node_id=probe.ids["me"].node_id, capabilities={"fl_training"},
                          tier=Tier.T1, has_gpu=False, vram_mb=0, ram_mb=1, ask_msat=1,
                          reliability_ppm=1_000_000)  # fmt: skip
        w.repos.tasks.save(market.assign(replicas[0], Match(offer, 1), w.clock.now(), 600),
                           expected_state=replicas[0].state)  # fmt: skip
    fl_round = fl.repositories.fl_rounds.rounds()[-1]
    return fl, fl_round


def _body(probe: Any, fl_round: Any, weights: list[float], round_number: int | None = None
          ) -> dict[str, Any]:  # fmt: skip
    replicas, _ = probe.world.services.coordinator.task(fl_round.task_ids[0])
    return sign_update(
        probe.ids["me"].identity, round_number=round_number or fl_round.number,
        sub_model=fl_round.sub_model, task_id=replicas[0].task_id, num_examples=1, loss=0.0,
        weights=weights,
    )


def upload(probe: Any) -> None:
    _fl, fl_round = _attach(probe)
    _unavailable(probe, _body(probe, fl_round, WEIGHTS))
    probe.send(body=_body(probe, fl_round, WEIGHTS))  # 202
    probe.send(body=_body(probe, fl_round, [0.02] * 2762))  # 409: another update
    probe.send(body=_body(probe, fl_round, WEIGHTS, round_number=fl_round.number + 50))  # 404


def rounds(probe: Any) -> None:
    _attach(probe)
    _unavailable(probe)


def weights(probe: Any) -> None:
    fl, fl_round = _attach(probe)
    if not fl.repositories.fl_rounds.updates(fl_round.number):
        fl.accept_update(_body(probe, fl_round, WEIGHTS))
    closed = fl.close_round(fl_round.number)
    assert closed.version_id is not None
    probe.ids["id"] = closed.version_id
    _unavailable(probe)
    probe.send(headers=probe.world.api_key())  # 200
    probe.send(url=probe.url(id="owm-base@owm-v9.9.9"), headers=probe.world.api_key())  # 404


FL_SCENARIOS: dict[str, Callable[[Any], None]] = {
    "uploadFlUpdate": upload,
    "listFlRounds": rounds,
    "getModelVersionWeights": weights,
}
