"""Anomaly scores turn outlying FL updates into slashing signals with evidence."""

from __future__ import annotations

import pytest
import torch

from owm_core.errors import InvalidValue
from owm_core.fl import aggregation as agg
from owm_core.fl.anomaly import AnomalyThresholds, score_updates, slashing_signals
from owm_core.fl.participants import update_digest, update_statement
from owm_core.identity.keys import Identity
from owm_core.stake.slashing import SlashingReason

NOW = 1_700_000_000


def round_of(n: int, evil: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    reference = torch.randn(2000, generator=g)
    step = 0.05 * torch.randn(2000, generator=g)
    updates = reference + step + 0.01 * torch.randn(n, 2000, generator=g)
    updates[:evil] = reference - 10 * step  # sign-flipped and boosted
    return reference, updates


def identities(n: int) -> list[Identity]:
    return [Identity.from_seed(bytes([i + 1]) * 32) for i in range(n)]


def test_an_honest_round_flags_nobody():
    reference, updates = round_of(20, 0)
    result = agg.aggregate(updates, agg.Rule.MULTIKRUM, 4)
    scores = score_updates(
        updates, result.update, reference=reference, krum_scores=result.krum_scores
    )
    assert not any(s.flagged for s in scores)
    assert max(s.distance_ratio for s in scores) < 2.0


def test_poisoned_updates_are_flagged_on_every_score():
    reference, updates = round_of(20, 4)
    result = agg.aggregate(updates, agg.Rule.KRUM, 4)
    scores = score_updates(
        updates, result.update, reference=reference, krum_scores=result.krum_scores
    )
    assert [s.index for s in scores if s.flagged] == [0, 1, 2, 3]
    assert set(scores[0].reasons) == {"distance", "norm", "krum"}


def test_each_flagged_client_yields_one_poisoned_update_signal_with_its_signed_evidence():
    reference, updates = round_of(12, 2)
    people = identities(12)
    statements = [
        update_statement(3, p.node_id, update_digest(u))
        for p, u in zip(people, updates, strict=True)
    ]
    result = agg.aggregate(updates, agg.Rule.MEDIAN, 2)
    scores = score_updates(updates, result.update, reference=reference)
    signals = slashing_signals(
        scores,
        [p.node_id for p in people],
        [s.hex() for s in statements],
        reporter="owm-coordinator",
        now=NOW,
    )
    assert [s.node_id for s in signals] == [people[0].node_id, people[1].node_id]
    assert all(s.reason is SlashingReason.POISONED_UPDATE and s.at == NOW for s in signals)
    assert signals[0].evidence_hash == statements[0].hex()
    people[0].verify(statements[0], people[0].sign(statements[0]))


def test_thresholds_decide_what_counts_as_an_outlier():
    reference, updates = round_of(12, 0)
    centre = updates.mean(dim=0)
    updates[0] = centre + 2.5 * (updates[0] - centre)  # noisier than the rest, not malicious
    result = agg.aggregate(updates, agg.Rule.MEDIAN, 2)
    loose = score_updates(updates, result.update, reference=reference)
    strict = score_updates(
        updates,
        result.update,
        reference=reference,
        thresholds=AnomalyThresholds(distance_ratio=1.5),
    )
    assert not loose[0].flagged
    assert strict[0].flagged


def test_identical_updates_score_zero_without_dividing_by_zero():
    updates = torch.ones(5, 10)
    scores = score_updates(updates, torch.ones(10), reference=torch.ones(10))
    assert all(s.distance_ratio == 0 and s.norm_ratio == 0 and not s.flagged for s in scores)


def test_thresholds_below_one_are_refused():
    with pytest.raises(InvalidValue):
        AnomalyThresholds(distance_ratio=0.5)
