"""The real clock behind :class:`owm_core.ports.clock.Clock`."""

from __future__ import annotations

import time


class SystemClock:
    """Wall-clock seconds from ``time.time`` and monotonic milliseconds from ``time.monotonic``."""

    def now(self) -> int:
        """Current wall-clock time as whole POSIX seconds (UTC)."""
        return int(time.time())

    def monotonic_ms(self) -> int:
        """Milliseconds from an arbitrary fixed origin; never goes backwards."""
        return time.monotonic_ns() // 1_000_000
