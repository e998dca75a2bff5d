"""The coordinator's history in time buckets: what the dashboard's charts plot.

Pure rules over stored records: a :class:`Window` of equal buckets ending with the bucket that
holds ``now``, and one function per chart that files records into it — heartbeats and online
nodes, payments and earnings, payment latency, stake changes and slashing events — and the FL
rounds in round order. Records outside the window are ignored; a bucket with nothing in it is
0 for counts and None (no value, not zero) for latencies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue
from owm_core.fl.rounds import FlRound
from owm_core.nodes.activity import HeartbeatCount
from owm_core.payments.records import AttemptOutcome, PaymentAttempt, RewardPayment
from owm_core.stake.changes import StakeChange
from owm_core.stake.channel import StakeStatus
from owm_core.stake.slashing import SlashingLogEntry, SlashingLogRecord

STAKE_STATUSES = (StakeStatus.ACTIVE, StakeStatus.DEGRADED, StakeStatus.SUSPENDED)
"""Stake changes the stake chart counts (slashing comes from the public log)."""


@attrs.frozen
class Window:
    """``count`` buckets of ``width_s`` seconds from ``start`` (the last holds "now")."""

    start: int = attrs.field(validator=fields.timestamp())
    width_s: int = attrs.field(validator=fields.integer(minimum=1))
    count: int = attrs.field(validator=fields.integer(minimum=1, maximum=10_000))

    @classmethod
    def ending_at(cls, now: int, width_s: int, count: int) -> Window:
        """The ``count`` buckets, aligned on ``width_s``, whose last one holds ``now``."""
        if width_s < 1 or now < 0:
            raise InvalidValue("width_s", "buckets need a width ≥ 1 s and a time ≥ 0")
        last = now - now % width_s
        return cls(max(0, last - (count - 1) * width_s), width_s, count)

    @property
    def end(self) -> int:
        """The first second after the window."""
        return self.start + self.width_s * self.count

    def starts(self) -> list[int]:
        """Each bucket's first second."""
        return [self.start + i * self.width_s for i in range(self.count)]

    def index(self, at: int) -> int | None:
        """The bucket holding ``at``, or None outside the window."""
        if at < self.start or at >= self.end:
            return None
        return (at - self.start) // self.width_s


@attrs.frozen
class Activity:
    """Per bucket: nodes that sent at least one heartbeat, and heartbeats received."""

    online: tuple[int, ...]
    heartbeats: tuple[int, ...]


def activity(window: Window, counts: Iterable[HeartbeatCount]) -> Activity:
    """Online nodes (distinct senders) and heartbeats per bucket."""
    senders: list[set[str]] = [set() for _ in range(window.count)]
    beats = [0] * window.count
    for c in counts:
        i = window.index(c.minute)
        if i is not None:
            senders[i].add(c.node_id)
            beats[i] += c.count
    return Activity(tuple(len(s) for s in senders), tuple(beats))


@attrs.frozen
class PaymentFlow:
    """Per bucket: payment attempts that succeeded, that failed, and the sat they paid out."""

    succeeded: tuple[int, ...]
    failed: tuple[int, ...]
    earned_sat: tuple[int, ...]


def payment_flow(window: Window, attempts: Iterable[PaymentAttempt]) -> PaymentFlow:
    """Succeeded and failed attempts, and what the succeeded ones paid (whole sat, rounded
    down), per bucket of the payment log (SRS-LN-05)."""
    ok, failed, earned_msat = [0] * window.count, [0] * window.count, [0] * window.count
    for a in attempts:
        i = window.index(a.at)
        if i is None:
            continue
        if a.outcome is AttemptOutcome.SUCCEEDED:
            ok[i] += 1
            earned_msat[i] += a.amount_msat
        elif a.outcome is AttemptOutcome.FAILED:
            failed[i] += 1
    return PaymentFlow(tuple(ok), tuple(failed), tuple(m // 1000 for m in earned_msat))


@attrs.frozen
class Latency:
    """Per bucket of settlement: the median and the longest wait, in seconds, from a reward
    being owed (its outbox record) to its payment arriving; None where nothing settled."""

    median_s: tuple[int | None, ...]
    max_s: tuple[int | None, ...]


def _median(values: Sequence[int]) -> int:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) // 2


def latency(window: Window, settled: Iterable[RewardPayment]) -> Latency:
    """Owed-to-paid time of each settled payment, filed by when it settled (``updated_at``)."""
    waits: list[list[int]] = [[] for _ in range(window.count)]
    for p in settled:
        i = window.index(p.updated_at)
        if i is not None and p.settled:
            waits[i].append(p.updated_at - p.created_at)
    return Latency(
        tuple(_median(w) if w else None for w in waits),
        tuple(max(w) if w else None for w in waits),
    )


def stake_events(
    window: Window, changes: Iterable[StakeChange], slashed: Iterable[SlashingLogRecord]
) -> dict[str, tuple[int, ...]]:
    """Per bucket: stakes that became active, degraded or suspended, and slashings (the
    log's slashing entries; a reversal is not a slashing)."""
    counts = {s.value: [0] * window.count for s in STAKE_STATUSES}
    counts["slashed"] = [0] * window.count
    for change in changes:
        i = window.index(change.at)
        if i is not None and change.status in STAKE_STATUSES:
            counts[change.status.value][i] += 1
    for entry in slashed:
        i = window.index(entry.at)
        if i is not None and isinstance(entry, SlashingLogEntry):
            counts["slashed"][i] += 1
    return {name: tuple(values) for name, values in counts.items()}


@attrs.frozen
class RoundQuality:
    """FL rounds in round order: their numbers, held-out accuracy (percent, None when not
    measured) and how many updates the anomaly check flagged."""

    numbers: tuple[int, ...]
    accuracy_pct: tuple[float | None, ...]
    flagged: tuple[int, ...]


def round_quality(rounds: Iterable[FlRound]) -> RoundQuality:
    """The rounds' accuracy and flagged updates, oldest round first."""
    ordered = sorted(rounds, key=lambda r: r.number)
    return RoundQuality(
        tuple(r.number for r in ordered),
        tuple(None if r.accuracy_ppm is None else r.accuracy_ppm / 10_000 for r in ordered),
        tuple(len(r.flagged) for r in ordered),
    )
