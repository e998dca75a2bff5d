"""The non-GPU resources of a Linux host: memory and the bandwidth estimate (SRS-NODE-03/04).

Owns :func:`parse_meminfo_total_mb` and :class:`LinuxHostProbe`, the
:class:`~owm_core.ports.gpu.HostProbe` of ``owm-node``.

Bandwidth is not measured here: :meth:`LinuxHostProbe.bandwidth_mbps` returns the figure the
operator configured — their estimate of the node's sustained network bandwidth in Mbit/s —
which the node publishes in its capability manifest (SRS-NODE-04) and which tiers compare
against their minimums. A wrong estimate is the operator's responsibility; measuring it would
need a peer to measure against.
"""

from __future__ import annotations

import os
import re

import attrs

from owm_core import fields

MEMINFO = "/proc/meminfo"
_MIB = 1024 * 1024
_MEM_TOTAL = re.compile(r"MemTotal:\s*([0-9]{1,15})\s*kB")


def parse_meminfo_total_mb(text: str) -> int | None:
    """``MemTotal`` of a ``/proc/meminfo`` text in MiB (its "kB" are KiB); None if absent."""
    for line in text.splitlines():
        matched = _MEM_TOTAL.fullmatch(line.strip())
        if matched is not None:
            return int(matched.group(1)) // 1024
    return None


@attrs.define
class LinuxHostProbe:
    """RAM from ``/proc/meminfo`` (else ``sysconf``); bandwidth from configuration.

    ``bandwidth_estimate_mbps`` is the operator's estimate in Mbit/s, not a measurement.
    """

    bandwidth_estimate_mbps: int = attrs.field(validator=fields.integer(minimum=0))
    meminfo_path: str = MEMINFO

    def ram_mb(self) -> int:
        """Total physical memory in MiB; 0 only if neither source can be read."""
        try:
            with open(self.meminfo_path, encoding="ascii", errors="replace") as handle:
                total = parse_meminfo_total_mb(handle.read())
        except OSError:
            total = None
        if total is not None:
            return total
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // _MIB
        except (ValueError, OSError):
            return 0

    def bandwidth_mbps(self) -> int:
        """The configured bandwidth estimate in Mbit/s (SRS-NODE-04)."""
        return self.bandwidth_estimate_mbps
