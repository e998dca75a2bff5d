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


class OffsetClock:
    """A devnet's governance clock: ``base``'s time plus the whole seconds in ``offset_file``
    (read on every call; missing or empty means 0), so ``owm devnet gov-time`` can move past
    comment periods of days without touching any other clock (docs/devnet.md)."""

    def __init__(self, base: SystemClock, offset_file: str) -> None:
        self._base = base
        self._path = offset_file

    def offset_s(self) -> int:
        """The offset in seconds (0 when the file is missing or holds no integer)."""
        try:
            with open(self._path, encoding="ascii") as handle:
                return int(handle.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def now(self) -> int:
        """The base clock's time plus the offset."""
        return self._base.now() + self.offset_s()

    def monotonic_ms(self) -> int:
        """The base clock's monotonic milliseconds (offsets never apply to durations)."""
        return self._base.monotonic_ms()
