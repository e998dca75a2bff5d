"""The hardware probe port: what a node has to offer (SRS-NODE-03).

Adapters read ``nvidia-smi`` / ``rocm-smi`` output and the operating system's memory figures;
the domain classifies the result into a tier with :func:`owm_core.nodes.tiers.classify`.
"""

from __future__ import annotations

from typing import Protocol

from owm_core.nodes.hardware import GpuDevice


class GpuProbe(Protocol):
    """Finds the GPUs of this machine."""

    def devices(self) -> list[GpuDevice]:
        """All usable GPUs; an empty list on a CPU-only machine (never an error for 'no GPU')."""
        ...


class HostProbe(Protocol):
    """Reads the non-GPU resources of this machine."""

    def ram_mb(self) -> int:
        """Total physical memory in MiB."""
        ...

    def bandwidth_mbps(self) -> int:
        """Configured or measured network bandwidth estimate in Mbit/s (SRS-NODE-04)."""
        ...
