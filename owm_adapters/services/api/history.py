"""The coordinator's recent history, as the series the dashboard charts (read-only).

Reads what the store keeps by time — heartbeat counts per minute, the payment log, settled
payments, stake status changes, the slashing log, FL rounds — over the last
``BUCKETS × BUCKET_S`` seconds (three hours in five-minute buckets) ending now, and files it
into buckets with the pure rules of :mod:`owm_core.coordination.history`. Rendering is the
HTTP shell's business (:mod:`owm_server.http.dashboard`).
"""

from __future__ import annotations

import attrs

from owm_core.coordination.history import (
    Activity,
    Latency,
    PaymentFlow,
    RoundQuality,
    Window,
    activity,
    latency,
    payment_flow,
    round_quality,
    stake_events,
)
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories

BUCKET_S = 300
"""Width of one time bucket on the charts."""
BUCKETS = 36
"""Buckets per chart: three hours of five minutes."""
RECORDS_MAX = 100_000
"""Most records read per chart; more in the window and the chart says it is cut short."""
ROUNDS_MAX = 30
"""FL rounds on the round chart (the latest)."""
SLASHING_TAIL = 1_000
"""Slashing-log entries read from the end of the log (its newest)."""


@attrs.define(eq=False)
class History:
    """The dashboard's time series over one store and clock."""

    _store: Repositories = attrs.field(alias="repositories")
    _clock: Clock

    def window(self) -> Window:
        """The buckets that end with the one holding now."""
        return Window.ending_at(self._clock.now(), BUCKET_S, BUCKETS)

    def activity(self) -> tuple[Window, Activity]:
        """Online nodes (sent a heartbeat) and heartbeats received, per bucket."""
        window = self.window()
        return window, activity(window, self._store.heartbeat_activity.since(window.start))

    def payments(self) -> tuple[Window, PaymentFlow, bool]:
        """Succeeded and failed payment attempts and sat paid out, per bucket; and whether the
        log held more lines than were read."""
        window = self.window()
        lines = self._store.payments.attempts_since(window.start, RECORDS_MAX)
        return window, payment_flow(window, lines), len(lines) >= RECORDS_MAX

    def latency(self) -> tuple[Window, Latency, bool]:
        """Median and longest owed-to-paid time of the payments settled in each bucket; and
        whether more settled than were read."""
        window = self.window()
        settled = self._store.payments.settled_since(window.start, RECORDS_MAX)
        return window, latency(window, settled), len(settled) >= RECORDS_MAX

    def stake(self) -> tuple[Window, dict[str, tuple[int, ...]]]:
        """Stakes that became active, degraded or suspended, and slashings, per bucket."""
        window = self.window()
        log = self._store.slashing_log
        head = log.latest()
        start = 0 if head is None else max(0, head.index + 1 - SLASHING_TAIL)
        changes = self._store.stakes.changes(window.start, RECORDS_MAX)
        return window, stake_events(window, changes, log.entries(start, SLASHING_TAIL))

    def rounds(self) -> RoundQuality:
        """The latest FL rounds' held-out accuracy and flagged updates, by round number."""
        return round_quality(self._store.fl_rounds.rounds(ROUNDS_MAX))
