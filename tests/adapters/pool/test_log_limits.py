"""A flood cannot multiply log lines, and no occurrence is lost from their counts
(SRS-SEC-15, SRS-SEC-16)."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from owm_adapters.pool.log_limits import LogThrottle

EVERY_S = 10.0

occurrences = st.lists(
    st.tuples(st.sampled_from(["stale", "duplicate", "bad-mac"]), st.floats(0.0, 60.0)),
    max_size=200,
)


@given(occurrences)
def test_lines_stand_for_every_occurrence_and_come_at_most_once_per_interval_per_kind(
    flood: list[tuple[str, float]],
) -> None:
    now = [0.0]
    throttle = LogThrottle(EVERY_S, lambda: now[0])
    written: dict[str, list[tuple[float, int]]] = {}
    elapsed = 0.0
    for kind, step in flood:
        elapsed += step
        now[0] = elapsed
        count = throttle.due(kind)
        if count:
            written.setdefault(kind, []).append((elapsed, count))
    for kind, lines in written.items():
        times = [at for at, _ in lines]
        assert all(b - a >= EVERY_S for a, b in itertools.pairwise(times))
        assert len(lines) <= 1 + math.floor(elapsed / EVERY_S)
        assert sum(count for _, count in lines) <= sum(1 for k, _ in flood if k == kind)
    for kind in {k for k, _ in flood}:
        assert kind in written, "the first occurrence of a kind is always written"
    now[0] = elapsed + 2 * EVERY_S
    for kind in written:
        # the next occurrence after a quiet interval is written and carries the ones held back
        held_back = sum(1 for k, _ in flood if k == kind) - sum(c for _, c in written[kind])
        assert throttle.due(kind) == held_back + 1
