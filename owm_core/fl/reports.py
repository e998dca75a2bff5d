"""What one federated-learning round produced, as an FL engine reports it (SRS-COORD-03).

The :class:`~owm_core.ports.fl_engine.FlEngine` port returns one :class:`RoundReport` per
round: how many replies came, which updates OWM's rules accepted and aggregated, and the
anomaly scores and slashing signals the round raised (SRS-SEC-05).
"""

from __future__ import annotations

import attrs

from owm_core.fl.aggregation import Rule
from owm_core.fl.anomaly import AnomalyScore
from owm_core.stake.slashing import SlashingSignal


@attrs.frozen(eq=False)
class RoundReport:
    """What one finished round produced, as the engine reports it.

    ``participants``: replies received; ``accepted``: updates that passed verification and
    were aggregated; ``rejected``: one reason per refused reply; ``scores``/``signals``: from
    :mod:`owm_core.fl.anomaly` (empty when the round was skipped for too few updates);
    ``metrics``: the clients' aggregated training metrics.
    """

    round_number: int
    rule: Rule
    participants: int
    accepted: int
    rejected: tuple[str, ...]
    scores: tuple[AnomalyScore, ...]
    signals: tuple[SlashingSignal, ...]
    metrics: dict[str, float]
