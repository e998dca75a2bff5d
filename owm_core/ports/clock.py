"""The clock port: the only way the domain learns the time.

``owm_core`` never reads a clock itself; use cases receive ``now`` (int POSIX seconds) from a
caller that asked a :class:`Clock`. Tests pass a fixed or stepping clock.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock and monotonic time."""

    def now(self) -> int:
        """Current wall-clock time as whole POSIX seconds (UTC)."""
        ...

    def monotonic_ms(self) -> int:
        """Milliseconds from an arbitrary fixed origin; never goes backwards (for latencies)."""
        ...
