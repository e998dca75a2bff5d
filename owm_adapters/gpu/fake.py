"""Fixed answers for the hardware ports: the embedded twins of the real probes.

Owns :class:`FixedGpuProbe` and :class:`FixedHostProbe`, used by simulations, tests and any
node that is told its hardware instead of probing it. They pass the same contract suite as
:class:`~owm_adapters.gpu.system.SystemGpuProbe` and
:class:`~owm_adapters.gpu.host.LinuxHostProbe` (``tests/adapters/gpu/test_gpu.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from owm_adapters.gpu.tool import ProbeProblem
from owm_core import fields
from owm_core.nodes.hardware import GpuDevice


def _devices(value: Any) -> tuple[GpuDevice, ...]:
    return tuple(value)


@attrs.define
class FixedGpuProbe:
    """Reports the GPUs it was given; ``FixedGpuProbe()`` is a CPU-only machine."""

    fixed: Sequence[GpuDevice] = attrs.field(default=(), converter=_devices)
    problems: list[ProbeProblem] = attrs.field(factory=list)

    def devices(self) -> list[GpuDevice]:
        """The configured GPUs, in order."""
        return list(self.fixed)


@attrs.frozen
class FixedHostProbe:
    """Reports the memory and bandwidth it was given."""

    ram: int = attrs.field(validator=fields.integer(minimum=0))
    bandwidth: int = attrs.field(validator=fields.integer(minimum=0))

    def ram_mb(self) -> int:
        """The configured memory in MiB."""
        return self.ram

    def bandwidth_mbps(self) -> int:
        """The configured bandwidth in Mbit/s."""
        return self.bandwidth
